//! `moat keys`: mint, hash, list, revoke and rotate API keys in the key store. A new key is
//! printed once, to stdout, and nothing else secret is printed anywhere; the store keeps
//! only its argon2id hash. Writes are atomic (temporary file + rename, mode 0600) and keep
//! the rest of the file, comments included. The pepper, when used, comes from
//! `MOAT_KEY_PEPPER` (or the file named by `MOAT_KEY_PEPPER_FILE`), as `serve` reads it.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::auth::api_key::hash_key;
use crate::auth::keystore::{self, KeyStore, NewRecord, valid_id};
use crate::config::Secret;

/// The pepper from the environment, if set and not empty.
/// Read exactly as `serve` expands `${MOAT_KEY_PEPPER}`, so both hash with the same pepper.
pub fn pepper() -> Result<Option<Secret>, String> {
    let value = crate::config::env_or_file("MOAT_KEY_PEPPER")?;
    Ok(value.filter(|v| !v.is_empty()).map(Secret::from))
}

fn read_store(path: &Path) -> Result<(String, KeyStore), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let store = if text.trim().is_empty() {
        KeyStore::default()
    } else {
        KeyStore::parse(&text).map_err(|p| format!("{}: {}", path.display(), p.join("; ")))?
    };
    Ok((text, store))
}

/// Checks the edited text still loads, then writes it atomically.
fn write_store(path: &Path, text: &str) -> Result<KeyStore, String> {
    let store = KeyStore::parse(text).map_err(|p| {
        format!(
            "{}: the edit would break the store ({}); nothing written",
            path.display(),
            p.join("; ")
        )
    })?;
    keystore::write_atomically(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(store)
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
    let (text, store) = read_store(path)?;
    if store.records.contains_key(id) {
        return Err(format!(
            "key id `{id}` already exists in {}",
            path.display()
        ));
    }
    let key = keystore::new_key(id);
    let hash = hash_key(&key, pepper()?.as_ref())?;
    let record = NewRecord {
        id,
        hash: &hash,
        scopes,
        owner,
        expires_at: expires,
        extra: Vec::new(),
    };
    write_store(path, &keystore::append_record(&text, &record))?;
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
    let (text, _) = read_store(path)?;
    let edited = keystore::set_field(&text, id, "disabled", "true")?;
    write_store(path, &edited).map(drop)
}

/// `moat keys rotate ID --grace D`: a new key (new id) with the old record's scopes,
/// restrictions and owner; the old one expires at the end of the grace period.
pub fn rotate(
    path: &Path,
    id: &str,
    grace: Duration,
    new_id: Option<&str>,
) -> Result<(String, String), String> {
    let (text, store) = read_store(path)?;
    let old = store
        .records
        .get(id)
        .ok_or_else(|| format!("no key with id `{id}`"))?;
    let new_id = match new_id {
        Some(new_id) => new_id.to_owned(),
        None => next_id(id, &store),
    };
    if !valid_id(&new_id) || store.records.contains_key(&new_id) {
        return Err(format!("`{new_id}` is not a free key id"));
    }
    let key = keystore::new_key(&new_id);
    let hash = hash_key(&key, pepper()?.as_ref())?;
    let mut extra = Vec::new();
    if let Some(cidrs) = &old.allowed_cidrs {
        let cidrs: Vec<String> = cidrs.iter().map(|c| format!("\"{c}\"")).collect();
        extra.push(format!("allowed_cidrs: [{}]", cidrs.join(", ")));
    }
    if let Some(operations) = &old.operations {
        let operations: Vec<String> = operations
            .iter()
            .map(|o| serde_json::Value::from(o.as_str()).to_string())
            .collect();
        extra.push(format!("operations: [{}]", operations.join(", ")));
    }
    if let Some(limit) = old.rate_limit {
        extra.push(format!(
            "rate_limit: {{per_second: {}, burst: {}}}",
            limit.per_second, limit.burst
        ));
    }
    let expires = old
        .expires_at
        .map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let record = NewRecord {
        id: &new_id,
        hash: &hash,
        scopes: &old.scopes,
        owner: old.owner.as_deref(),
        expires_at: expires.as_deref(),
        extra,
    };
    let appended = keystore::append_record(&text, &record);
    let end_of_grace = humantime::format_rfc3339_seconds(SystemTime::now() + grace).to_string();
    let edited = keystore::set_field(&appended, id, "expires_at", &end_of_grace)?;
    write_store(path, &edited)?;
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
