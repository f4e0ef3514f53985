//! `moat keys`: mint, hash, list, revoke and rotate API keys in the key store. A new key is
//! printed once, to stdout, and nothing else secret is printed anywhere; the store keeps
//! only its argon2id hash. Writes are atomic (temporary file + rename, mode 0600) and keep
//! the rest of the file, comments included, where its layout allows (see `store_edit`). The pepper, when used, comes from
//! `MOAT_KEY_PEPPER` (or the file named by `MOAT_KEY_PEPPER_FILE`), as `serve` reads it.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::auth::api_key::hash_key;
use serde_json::{Map, Value};

use crate::auth::keystore::{self, KeyStore, valid_id};
use crate::auth::store_edit::StoreText;
use crate::config::Secret;

/// The pepper from the environment, if set and not empty.
/// Read exactly as `serve` expands `${MOAT_KEY_PEPPER}`, so both hash with the same pepper.
pub fn pepper() -> Result<Option<Secret>, String> {
    let value = crate::config::env_or_file("MOAT_KEY_PEPPER")?;
    Ok(value.filter(|v| !v.is_empty()).map(Secret::from))
}

/// The store at `path` as `serve` would load it, and its text ready for editing. A missing
/// file is an empty store (the first `moat keys new` creates it).
fn read_store(path: &Path) -> Result<(StoreText, KeyStore), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let store =
        KeyStore::parse(&text).map_err(|p| format!("{}: {}", path.display(), p.join("; ")))?;
    let editable = StoreText::parse(text).map_err(|p| format!("{}: {p}", path.display()))?;
    Ok((editable, store))
}

/// Checks the edited store still loads, then writes it atomically (mode 0600).
fn write_store(path: &Path, edited: StoreText) -> Result<KeyStore, String> {
    let (text, rewritten) = edited.into_text();
    let store = KeyStore::parse(&text).map_err(|p| {
        format!(
            "{}: the edit would break the store ({}); nothing written",
            path.display(),
            p.join("; ")
        )
    })?;
    keystore::write_atomically(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    if rewritten {
        eprintln!(
            "{}: rewritten as block YAML (its layout allowed no line edit; comments in it are gone)",
            path.display()
        );
    }
    Ok(store)
}

/// A new record: the fields `moat keys new` sets, in JSON form for the store's text.
fn new_record(
    id: &str,
    hash: &str,
    scopes: &[String],
    owner: Option<&str>,
    expires_at: Option<&str>,
) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("id".to_owned(), Value::from(id));
    record.insert("hash".to_owned(), Value::from(hash));
    record.insert("scopes".to_owned(), Value::from(scopes.to_vec()));
    if let Some(owner) = owner {
        record.insert("owner".to_owned(), Value::from(owner));
    }
    if let Some(expires_at) = expires_at {
        record.insert("expires_at".to_owned(), Value::from(expires_at));
    }
    record
}

/// `moat keys new`: returns the key, to be printed once.
pub fn new(
    path: &Path,
    id: &str,
    scopes: &[String],
    expires: Option<&str>,
    owner: Option<&str>,
) -> Result<String, String> {
    if !valid_id(id) {
        return Err(format!(
            "`{id}` is not a key id: 1–63 of [a-z0-9-], starting with a letter or digit"
        ));
    }
    if let Some(expires) = expires {
        humantime::parse_rfc3339_weak(expires).map_err(|_| {
            format!("`{expires}` is not an RFC 3339 time like 2027-06-01T00:00:00Z")
        })?;
    }
    let (mut text, store) = read_store(path)?;
    if store.records.contains_key(id) {
        return Err(format!(
            "key id `{id}` already exists in {}",
            path.display()
        ));
    }
    let key = keystore::new_key(id);
    let hash = hash_key(&key, pepper()?.as_ref())?;
    text.append(new_record(id, &hash, scopes, owner, expires));
    write_store(path, text)?;
    Ok(key)
}

/// `moat keys hash`: a key on stdin → its PHC hash.
pub fn hash_stdin() -> Result<String, String> {
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .map_err(|e| format!("cannot read the key from stdin: {e}"))?;
    let key = key.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        return Err("no key on stdin".to_owned());
    }
    hash_key(key, pepper()?.as_ref())
}

/// `moat keys list`: one line per key, hashes shortened.
pub fn list(path: &Path) -> Result<String, String> {
    let (_, store) = read_store(path)?;
    let mut ids: Vec<&String> = store.records.keys().collect();
    ids.sort();
    let now = SystemTime::now();
    let mut out = format!(
        "{:<24} {:<16} {:<10} {:<22} {:<28} hash\n",
        "id", "owner", "state", "expires_at", "scopes"
    );
    for id in ids {
        let record = &store.records[id];
        let state = match record.admits_any_address(now) {
            Ok(()) => "active",
            Err(restriction) => restriction,
        };
        let expires = record
            .expires_at
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "-".to_owned());
        out.push_str(&format!(
            "{:<24} {:<16} {:<10} {:<22} {:<28} {}…\n",
            record.id,
            record.owner.as_deref().unwrap_or("-"),
            state,
            expires,
            record.scopes.join(","),
            record.hash.chars().take(24).collect::<String>()
        ));
    }
    Ok(out)
}

/// `moat keys revoke ID`: `disabled: true`.
pub fn revoke(path: &Path, id: &str) -> Result<(), String> {
    let (mut text, _) = read_store(path)?;
    text.set(id, "disabled", Value::Bool(true))?;
    write_store(path, text).map(drop)
}

/// `moat keys rotate ID --grace D`: a new key (new id) with the old record's scopes,
/// restrictions and owner; the old one expires at the end of the grace period.
pub fn rotate(
    path: &Path,
    id: &str,
    grace: Duration,
    new_id: Option<&str>,
) -> Result<(String, String), String> {
    let (mut text, store) = read_store(path)?;
    if !store.records.contains_key(id) {
        return Err(format!("no key with id `{id}`"));
    }
    let new_id = match new_id {
        Some(new_id) => new_id.to_owned(),
        None => next_id(id, &store),
    };
    if !valid_id(&new_id) || store.records.contains_key(&new_id) {
        return Err(format!("`{new_id}` is not a free key id"));
    }
    let key = keystore::new_key(&new_id);
    let hash = hash_key(&key, pepper()?.as_ref())?;
    // Everything the old record says (scopes, owner, restrictions, limits, expiry) carries
    // over as written; only the id and hash are new, and the new key starts enabled.
    let mut record = text
        .record(id)
        .cloned()
        .ok_or_else(|| format!("no key with id `{id}`"))?;
    record.insert("id".to_owned(), Value::from(new_id.as_str()));
    record.insert("hash".to_owned(), Value::from(hash));
    record.remove("disabled");
    text.append(record);
    // The grace period can shorten the old key's life, never extend it.
    let end_of_grace = SystemTime::now() + grace;
    if store.records[id]
        .expires_at
        .is_none_or(|expires| expires > end_of_grace)
    {
        let end_of_grace = humantime::format_rfc3339_seconds(end_of_grace).to_string();
        text.set(id, "expires_at", Value::from(end_of_grace))?;
    }
    write_store(path, text)?;
    Ok((new_id, key))
}

/// `batch` → `batch-r2`, `batch-r2` → `batch-r3`.
fn next_id(id: &str, store: &KeyStore) -> String {
    let (base, mut n) = match id.rsplit_once("-r") {
        Some((base, n)) if n.parse::<u32>().is_ok() => (base, n.parse::<u32>().unwrap_or(1)),
        _ => (id, 1),
    };
    loop {
        n += 1;
        let candidate = format!("{base}-r{n}");
        if !store.records.contains_key(&candidate) {
            return candidate;
        }
    }
}
