//! The edits `moat keys` makes to a store: a new key, a revoked one, a rotation — and the
//! hash of a key given on stdin.

use std::io::Read;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::opened::Opened;
use super::record::{NewKey, check_rfc3339};
use super::target::Target;
use crate::auth::api_key::hash_key;
use crate::auth::keystore::{self, KeyRecord, KeyStore, valid_id};
use crate::config::KeySource;

/// `moat keys new`: returns the key, to be printed once.
pub fn new(target: &Target, id: &str, key: &NewKey<'_>) -> Result<String, String> {
    if !valid_id(id) {
        return Err(format!(
            "`{id}` is not a key id: 1–63 of [a-z0-9-], starting with a letter or digit"
        ));
    }
    let fields = key.fields()?;
    let mut opened = Opened::open(&target.store)?;
    if opened.store.records.contains_key(id) {
        return Err(format!("key id `{id}` already exists in {}", target.store));
    }
    let secret = keystore::new_key(id);
    let hash = hash_key(&secret, target.pepper.as_ref())?;
    opened.append(record(id, hash, fields));
    opened.save()?;
    Ok(secret)
}

/// A record as `moat keys new` writes it: its id and hash first, then its fields.
fn record(id: &str, hash: String, fields: Map<String, Value>) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("id".to_owned(), Value::from(id));
    record.insert("hash".to_owned(), Value::from(hash));
    record.extend(fields);
    record
}

/// `moat keys hash`: a key on stdin → its PHC hash.
pub fn hash_stdin(target: &Target) -> Result<String, String> {
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .map_err(|e| format!("cannot read the key from stdin: {e}"))?;
    let key = key.trim_end_matches(['\n', '\r']);
    if key.is_empty() {
        return Err("no key on stdin".to_owned());
    }
    hash_key(key, target.pepper.as_ref())
}

/// `moat keys revoke ID`: `disabled: true`.
pub fn revoke(store: &KeySource, id: &str) -> Result<(), String> {
    let mut opened = Opened::open(store)?;
    opened.set(id, "disabled", Value::Bool(true))?;
    opened.save()
}

/// `moat keys rotate ID --grace D`: a new key (new id) with the old record's scopes,
/// restrictions and owner; the old one expires at the end of the grace period — or keeps
/// its earlier expiry: rotation never extends a key's life. The new key has no expiry
/// unless `expires` is given.
pub fn rotate(
    target: &Target,
    id: &str,
    grace: Duration,
    new_id: Option<&str>,
    expires: Option<&str>,
) -> Result<(String, String), String> {
    let mut opened = Opened::open(&target.store)?;
    let store = std::mem::take(&mut opened.store);
    let Some(old) = store.records.get(id) else {
        return Err(format!("no key with id `{id}`"));
    };
    let now = SystemTime::now();
    warn_if_not_active(id, old, now);
    let new_id = replacement_id(id, new_id, &store)?;
    if let Some(expires) = expires {
        check_rfc3339(expires)?;
    }
    let key = keystore::new_key(&new_id);
    let hash = hash_key(&key, target.pepper.as_ref())?;
    let record = replacement(&opened, id, &new_id, hash, expires)?;
    opened.append(record);
    expire_by(&mut opened, id, old, now + grace)?;
    opened.save()?;
    Ok((new_id, key))
}

/// Rotating a key that is already out of use is allowed, but not what it may look like.
fn warn_if_not_active(id: &str, old: &KeyRecord, now: SystemTime) {
    if let Err(state) = old.admits_any_address(now) {
        eprintln!(
            "warning: `{id}` is {state}; its replacement gets its scopes and restrictions, but \
             rotating does not make `{id}` valid again"
        );
    }
}

/// The replacement's id: the one asked for, or the next free `ID-rN`.
fn replacement_id(id: &str, asked: Option<&str>, store: &KeyStore) -> Result<String, String> {
    let new_id = match asked {
        Some(new_id) => new_id.to_owned(),
        None => next_id(id, store),
    };
    if !valid_id(&new_id) || store.records.contains_key(&new_id) {
        return Err(format!("`{new_id}` is not a free key id"));
    }
    Ok(new_id)
}

/// The old record as written, with the new id and hash. Scopes, owner, restrictions and
/// limits carry over as written; the id, hash and life of the key are its own.
fn replacement(
    opened: &Opened,
    id: &str,
    new_id: &str,
    hash: String,
    expires: Option<&str>,
) -> Result<Map<String, Value>, String> {
    let mut record = opened
        .record(id)
        .ok_or_else(|| format!("no key with id `{id}`"))?;
    record.insert("id".to_owned(), Value::from(new_id));
    record.insert("hash".to_owned(), Value::from(hash));
    // The replacement is a moat key: nothing of a legacy key's lookup carries over.
    for field in [
        "disabled",
        "expires_at",
        "not_before",
        "legacy_sha256",
        "legacy_tag",
    ] {
        record.remove(field);
    }
    if let Some(expires) = expires {
        record.insert("expires_at".to_owned(), Value::from(expires));
    }
    Ok(record)
}

/// Sets the old key's expiry to the end of the grace period, unless it expires sooner.
fn expire_by(
    opened: &mut Opened,
    id: &str,
    old: &KeyRecord,
    end_of_grace: SystemTime,
) -> Result<(), String> {
    if old.expires_at.is_none_or(|at| at > end_of_grace) {
        let end_of_grace = humantime::format_rfc3339_seconds(end_of_grace).to_string();
        opened.set(id, "expires_at", Value::from(end_of_grace))?;
    }
    Ok(())
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
