//! `moat keys import` and `moat keys export`: records moved between stores — a file into
//! Redis and back, or between files — with their ids, hashes and rules as they are. An
//! import adds the records the target lacks and leaves the ones it holds identically;
//! a record whose id the target holds *differently* stops it before anything is written
//! (a revocation made in the target must not be undone by re-running an old import). So
//! running one twice is the same as running it once.

use std::path::Path;

use serde_json::{Map, Value};

use super::foreign::{self, Gateway};
use super::opened::Opened;
use crate::auth::keystore::{self, KeyRecord, KeyStore};
use crate::auth::store_edit::{StoreText, store_text};
use crate::config::KeySource;

/// What an import did.
#[derive(Debug, PartialEq, Eq)]
pub struct Imported {
    pub added: usize,
    pub unchanged: usize,
}

/// `moat keys import FILE`: the records of the moat store at `source` into `target` — or,
/// `from` another gateway, its keys as legacy records with `scopes`.
pub fn import(
    target: &KeySource,
    source: &Path,
    from: Option<Gateway>,
    scopes: &[String],
) -> Result<Imported, String> {
    let records = match from {
        None if !scopes.is_empty() => {
            return Err("--scopes is for --from: a moat store's records carry their own".into());
        }
        None => file_records(source)?,
        Some(gateway) => {
            let text = crate::input::read_to_string(source, crate::input::Kind::KeyStore)?;
            foreign::records(&text, gateway, scopes)
                .map_err(|problem| format!("{}: {problem}", source.display()))?
        }
    };
    let mut opened = Opened::open(target)?;
    let mut added = Vec::new();
    let mut unchanged = 0;
    let mut differing = Vec::new();
    for record in records {
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        match opened.store.records.get(id) {
            None => added.push(record),
            Some(held) if **held == parsed(&record)? => unchanged += 1,
            Some(_) => differing.push(id.to_owned()),
        }
    }
    if !differing.is_empty() {
        differing.sort();
        return Err(format!(
            "{} holds {} of these ids with another record ({}); nothing written — rotate or \
             revoke them there, or leave them out of {}",
            target,
            differing.len(),
            differing.join(", "),
            source.display()
        ));
    }
    let imported = Imported {
        added: added.len(),
        unchanged,
    };
    if !added.is_empty() {
        opened.append_all(added);
        opened.save()?;
    }
    Ok(imported)
}

/// `moat keys export FILE`: `source`'s records as a moat store file (JSON when the name
/// ends in `.json`, else block YAML), written atomically over whatever was there.
pub fn export(source: &KeySource, destination: &Path) -> Result<usize, String> {
    let records = Opened::open(source)?.all_records();
    let count = records.len();
    let json = destination.extension().is_some_and(|e| e == "json");
    let text = store_text(records, json);
    KeyStore::parse(&text).map_err(|p| format!("the export would not load: {}", p.join("; ")))?;
    keystore::write_atomically(destination, &text)
        .map_err(|e| format!("{}: {e}", destination.display()))?;
    Ok(count)
}

/// The records of a moat store file, checked as `serve` loads them.
fn file_records(path: &Path) -> Result<Vec<Map<String, Value>>, String> {
    let text = crate::input::read_to_string(path, crate::input::Kind::KeyStore)?;
    KeyStore::parse(&text).map_err(|p| format!("{}: {}", path.display(), p.join("; ")))?;
    let parsed = StoreText::parse(text).map_err(|p| format!("{}: {p}", path.display()))?;
    Ok(parsed.all_records().cloned().collect())
}

fn parsed(record: &Map<String, Value>) -> Result<KeyRecord, String> {
    serde_json::from_value(Value::Object(record.clone())).map_err(|e| e.to_string())
}
