//! `moat keys`: mint, hash, list, revoke and rotate API keys in the key store. A new key is
//! printed once, to stdout, and nothing else secret is printed anywhere; the store keeps
//! only its argon2id hash. Writes are atomic (temporary file + rename, mode 0600) and keep
//! the rest of the file, comments included, where its layout allows (see `store_edit`).
//!
//! The store and the pepper come from the config, read as `serve` reads it (dotenv,
//! encrypted dotenv, `VAR_FILE`), so a minted key verifies under `serve`: a pepper kept in
//! `.env` is the pepper both use.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::auth::api_key::hash_key;
use crate::auth::keystore::{self, KeyRecord, KeyStore, valid_id};
use crate::auth::store_edit::StoreText;
use crate::config::{Config, SchemeConfig, Secret, choose_scheme, mentions_placeholder};

/// The store `moat keys` works on, and the pepper its hashes take.
#[derive(Debug)]
pub struct Target {
    pub store: PathBuf,
    pub pepper: Option<Secret>,
}

/// Where the operator pointed `moat keys`.
#[derive(Debug, Default)]
pub struct Choice<'a> {
    /// `--config`, or `MOAT_CONFIG`: a config that must load.
    pub config: Option<&'a Path>,
    /// `--scheme`: which `api_key` scheme, when the config binds several.
    pub scheme: Option<&'a str>,
    /// `--store` (or `MOAT_KEY_STORE`): this file, whatever the config says.
    pub store: Option<&'a Path>,
}

const DEFAULT_CONFIG: &str = "config/moat.yaml";
const DEFAULT_STORE: &str = "config/keys.yaml";

impl Target {
    /// The scheme's store and pepper from the config. Without a config file (none given
    /// and none at `config/moat.yaml`), `--store` or `config/keys.yaml` with the pepper from
    /// `MOAT_KEY_PEPPER` / `MOAT_KEY_PEPPER_FILE`.
    pub fn resolve(choice: &Choice<'_>) -> Result<Target, String> {
        let config_path = choice.config.unwrap_or(Path::new(DEFAULT_CONFIG));
        if choice.config.is_none() && !config_path.exists() {
            if let Some(scheme) = choice.scheme {
                return Err(format!(
                    "--scheme {scheme}: no config at {DEFAULT_CONFIG}; give --config"
                ));
            }
            return Ok(Target {
                store: choice.store.unwrap_or(Path::new(DEFAULT_STORE)).to_owned(),
                pepper: env_pepper()?,
            });
        }
        // Lenient: an unset JWT secret must not stop minting a key; only what the chosen
        // scheme needs has to resolve.
        let (config, problems) = Config::load_leniently(config_path);
        let Some(config) = config else {
            if let (None, Some(store)) = (choice.config, choice.store) {
                // The default config is broken, but the operator named the store itself.
                return Ok(Target {
                    store: store.to_owned(),
                    pepper: env_pepper()?,
                });
            }
            return Err(format!(
                "{}: {}\n(or give --store PATH to edit a store directly)",
                config_path.display(),
                problems.join("; ")
            ));
        };
        let schemes = config.auth.schemes_of(|scheme| match scheme {
            SchemeConfig::ApiKey(key) => Some(key),
            SchemeConfig::Jwt(_) => None,
        });
        let chosen = match (choice.scheme, choice.store) {
            // A store named by path: the scheme that reads it, if any, gives the pepper.
            (None, Some(store)) => schemes
                .iter()
                .find(|(_, key)| same_file(&key.store, store))
                .copied(),
            (wanted, _) => Some(choose_scheme(&schemes, wanted, "api_key").map_err(|e| {
                format!(
                    "{}: {e} (or give --store PATH to edit a store directly)",
                    config_path.display()
                )
            })?),
        };
        let Some((name, scheme)) = chosen else {
            // A store the config does not name: the pepper can only come from the environment.
            return Ok(Target {
                store: choice.store.unwrap_or(Path::new(DEFAULT_STORE)).to_owned(),
                pepper: env_pepper()?,
            });
        };
        let unresolved = scheme
            .pepper
            .as_ref()
            .is_some_and(|p| mentions_placeholder(p.expose()))
            || mentions_placeholder(&scheme.store.to_string_lossy());
        if unresolved {
            return Err(format!(
                "{}: auth.schemes.{name} uses a variable that is not set: {}",
                config_path.display(),
                problems.join("; ")
            ));
        }
        Ok(Target {
            store: choice.store.unwrap_or(&scheme.store).to_owned(),
            pepper: scheme.pepper.clone().filter(|p| !p.expose().is_empty()),
        })
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    absolute(a) == absolute(b)
}

/// The pepper from the environment, if set and not empty, read exactly as `serve` expands
/// `${MOAT_KEY_PEPPER}`.
fn env_pepper() -> Result<Option<Secret>, String> {
    let value = crate::config::env_or_file("MOAT_KEY_PEPPER")?;
    Ok(value.filter(|v| !v.is_empty()).map(Secret::from))
}

/// The store at `path` as `serve` would load it, and its text ready for editing. A missing
/// file is an empty store (the first `moat keys new` creates it).
fn read_store(path: &Path) -> Result<(StoreText, KeyStore), String> {
    let text = match path.try_exists() {
        Ok(false) => String::new(),
        _ => crate::input::read_to_string(path, crate::input::Kind::KeyStore)?,
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

/// What `moat keys new` writes into a record besides its id and hash.
#[derive(Debug, Default)]
pub struct NewKey<'a> {
    pub scopes: &'a [String],
    pub owner: Option<&'a str>,
    /// RFC 3339.
    pub expires: Option<&'a str>,
    /// RFC 3339.
    pub not_before: Option<&'a str>,
    /// operationIds or `METHOD /template`.
    pub operations: &'a [String],
    /// CIDRs (or addresses) the client must come from.
    pub allowed_cidrs: &'a [String],
    /// `PER_SECOND/BURST` or `PER_SECOND`.
    pub rate_limit: Option<&'a str>,
    /// `REQUESTS/PERIOD`.
    pub quota: Option<&'a str>,
    /// LLM operations: the models the key may name.
    pub models: &'a [String],
    pub max_tokens: Option<u64>,
    pub max_concurrent_streams: Option<u32>,
    /// `TOKENS/PERIOD`.
    pub token_budget: Option<&'a str>,
    pub tokens_per_minute: Option<u64>,
}

impl NewKey<'_> {
    /// The record's fields, each checked as the loader will check it.
    fn fields(&self) -> Result<Map<String, Value>, String> {
        let mut record = Map::new();
        record.insert("scopes".to_owned(), Value::from(self.scopes.to_vec()));
        if let Some(owner) = self.owner {
            record.insert("owner".to_owned(), Value::from(owner));
        }
        for (field, time) in [
            ("expires_at", self.expires),
            ("not_before", self.not_before),
        ] {
            if let Some(time) = time {
                humantime::parse_rfc3339_weak(time).map_err(|_| {
                    format!("`{time}` is not an RFC 3339 time like 2027-06-01T00:00:00Z")
                })?;
                record.insert(field.to_owned(), Value::from(time));
            }
        }
        if !self.operations.is_empty() {
            record.insert(
                "operations".to_owned(),
                Value::from(self.operations.to_vec()),
            );
        }
        if !self.allowed_cidrs.is_empty() {
            let cidrs = self
                .allowed_cidrs
                .iter()
                .map(|cidr| {
                    cidr.parse::<IpNet>()
                        .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
                        .map(|net| Value::from(net.to_string()))
                        .map_err(|_| {
                            format!("`{cidr}` is not a CIDR like 10.0.0.0/8 or an address")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            record.insert("allowed_cidrs".to_owned(), Value::Array(cidrs));
        }
        if let Some(limit) = self.rate_limit {
            record.insert("rate_limit".to_owned(), rate_limit(limit)?);
        }
        if let Some(quota) = self.quota {
            record.insert(
                "quota".to_owned(),
                per_period(quota, "--quota", "requests")?,
            );
        }
        if !self.models.is_empty() {
            record.insert("models".to_owned(), Value::from(self.models.to_vec()));
        }
        for (field, value) in [
            ("max_tokens", self.max_tokens),
            (
                "max_concurrent_streams",
                self.max_concurrent_streams.map(u64::from),
            ),
            ("tokens_per_minute", self.tokens_per_minute),
        ] {
            match value {
                Some(0) => {
                    return Err(format!(
                        "`--{}` must be at least 1",
                        field.replace('_', "-")
                    ));
                }
                Some(n) => {
                    record.insert(field.to_owned(), Value::from(n));
                }
                None => {}
            }
        }
        if let Some(budget) = self.token_budget {
            record.insert(
                "token_budget".to_owned(),
                per_period(budget, "--token-budget", "tokens")?,
            );
        }
        Ok(record)
    }
}

/// `50/100` → `{per_second: 50, burst: 100}`; `50` → burst 50.
fn rate_limit(text: &str) -> Result<Value, String> {
    let (rate, burst) = text.split_once('/').unwrap_or((text, text));
    let number = |n: &str| n.trim().parse::<u32>().ok().filter(|n| *n > 0);
    match (number(rate), number(burst)) {
        (Some(per_second), Some(burst)) => {
            Ok(serde_json::json!({"per_second": per_second, "burst": burst}))
        }
        _ => Err(format!(
            "`--rate-limit {text}`: write PER_SECOND/BURST (e.g. 50/100), both at least 1"
        )),
    }
}

/// `10000/day` → `{requests: 10000, per: day}` (`what` = `requests`; `tokens` for
/// `--token-budget`).
fn per_period(text: &str, flag: &str, what: &str) -> Result<Value, String> {
    let parsed = text.split_once('/').and_then(|(count, per)| {
        let count = count.trim().parse::<u64>().ok().filter(|n| *n > 0)?;
        let per = per.trim();
        ["minute", "hour", "day", "month"]
            .contains(&per)
            .then_some((count, per))
    });
    match parsed {
        Some((count, per)) => Ok(serde_json::json!({what: count, "per": per})),
        None => Err(format!(
            "`{flag} {text}`: write {}/PERIOD (e.g. 10000/day), PERIOD one of minute, hour, day, month",
            what.to_uppercase()
        )),
    }
}

/// `moat keys new`: returns the key, to be printed once.
pub fn new(target: &Target, id: &str, key: &NewKey<'_>) -> Result<String, String> {
    if !valid_id(id) {
        return Err(format!(
            "`{id}` is not a key id: 1–63 of [a-z0-9-], starting with a letter or digit"
        ));
    }
    let fields = key.fields()?;
    let (mut text, store) = read_store(&target.store)?;
    if store.records.contains_key(id) {
        return Err(format!(
            "key id `{id}` already exists in {}",
            target.store.display()
        ));
    }
    let secret = keystore::new_key(id);
    let mut record = Map::new();
    record.insert("id".to_owned(), Value::from(id));
    record.insert(
        "hash".to_owned(),
        Value::from(hash_key(&secret, target.pepper.as_ref())?),
    );
    record.extend(fields);
    text.append(record);
    write_store(&target.store, text)?;
    Ok(secret)
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

/// `moat keys list`: one line per key with its state and restrictions, hashes shortened.
pub fn list(path: &Path) -> Result<String, String> {
    if !path.exists() {
        return Err(format!(
            "no key store at {}; `moat keys new --id ID` creates it",
            path.display()
        ));
    }
    let (_, store) = read_store(path)?;
    let mut ids: Vec<&String> = store.records.keys().collect();
    ids.sort();
    let now = SystemTime::now();
    let mut out = format!(
        "{:<24} {:<16} {:<9} {:<21} {:<24} {:<26} restrictions\n",
        "id", "owner", "state", "expires_at", "scopes", "hashed with"
    );
    for id in ids {
        let record = &store.records[id];
        let state = match record.admits_any_address(now) {
            Ok(()) => "active",
            Err(restriction) => restriction,
        };
        out.push_str(&format!(
            "{:<24} {:<16} {:<9} {:<21} {:<24} {:<26} {}\n",
            record.id,
            record.owner.as_deref().unwrap_or("-"),
            state,
            record
                .expires_at
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_else(|| "-".to_owned()),
            if record.scopes.is_empty() {
                "-".to_owned()
            } else {
                record.scopes.join(",")
            },
            hashed_with(&record.hash),
            restrictions(record),
        ));
    }
    if store.records.is_empty() {
        out.push_str("(no keys yet: `moat keys new --id ID --scopes a,b`)\n");
    }
    Ok(out)
}

/// The algorithm and cost of a PHC hash (`argon2id m=19456,t=2,p=1`): what an operator
/// checks after raising the cost, and nothing of the salt or hash itself.
fn hashed_with(phc: &str) -> String {
    let mut fields = phc.split('$').skip(1);
    let algorithm = fields.next().unwrap_or("?");
    let params = fields.find(|f| f.contains("m=")).unwrap_or("");
    format!("{algorithm} {params}").trim_end().to_owned()
}

fn restrictions(record: &KeyRecord) -> String {
    let mut parts = Vec::new();
    if let Some(at) = record.not_before {
        parts.push(format!(
            "not_before={}",
            humantime::format_rfc3339_seconds(at)
        ));
    }
    if let Some(operations) = &record.operations {
        parts.push(format!("operations={}", operations.join(",")));
    }
    if let Some(cidrs) = &record.allowed_cidrs {
        let cidrs: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
        parts.push(format!("cidrs={}", cidrs.join(",")));
    }
    if let Some(limit) = record.rate_limit {
        parts.push(format!("rate={}/s burst={}", limit.per_second, limit.burst));
    }
    if let Some(quota) = record.quota {
        parts.push(format!("quota={}/{}", quota.requests, quota.per.as_str()));
    }
    if let Some(models) = &record.models {
        parts.push(format!("models={}", models.join(",")));
    }
    if let Some(max_tokens) = record.max_tokens {
        parts.push(format!("max_tokens={max_tokens}"));
    }
    if let Some(streams) = record.max_concurrent_streams {
        parts.push(format!("streams={streams}"));
    }
    if let Some(budget) = record.token_budget {
        parts.push(format!("tokens={}/{}", budget.tokens, budget.per.as_str()));
    }
    if let Some(per_minute) = record.tokens_per_minute {
        parts.push(format!("tokens={per_minute}/minute"));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `moat keys revoke ID`: `disabled: true`.
pub fn revoke(path: &Path, id: &str) -> Result<(), String> {
    let (mut text, _) = read_store(path)?;
    text.set(id, "disabled", Value::Bool(true))?;
    write_store(path, text).map(drop)
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
    let (mut text, store) = read_store(&target.store)?;
    let Some(old) = store.records.get(id) else {
        return Err(format!("no key with id `{id}`"));
    };
    let now = SystemTime::now();
    match old.admits_any_address(now) {
        Ok(()) => {}
        Err(state) => eprintln!(
            "warning: `{id}` is {state}; its replacement gets its scopes and restrictions, but \
             rotating does not make `{id}` valid again"
        ),
    }
    let new_id = match new_id {
        Some(new_id) => new_id.to_owned(),
        None => next_id(id, &store),
    };
    if !valid_id(&new_id) || store.records.contains_key(&new_id) {
        return Err(format!("`{new_id}` is not a free key id"));
    }
    if let Some(expires) = expires {
        humantime::parse_rfc3339_weak(expires).map_err(|_| {
            format!("`{expires}` is not an RFC 3339 time like 2027-06-01T00:00:00Z")
        })?;
    }
    let key = keystore::new_key(&new_id);
    let hash = hash_key(&key, target.pepper.as_ref())?;
    // Scopes, owner, restrictions and limits carry over as written; the id, hash and life
    // of the key are its own.
    let mut record = text
        .record(id)
        .cloned()
        .ok_or_else(|| format!("no key with id `{id}`"))?;
    record.insert("id".to_owned(), Value::from(new_id.as_str()));
    record.insert("hash".to_owned(), Value::from(hash));
    for field in ["disabled", "expires_at", "not_before"] {
        record.remove(field);
    }
    if let Some(expires) = expires {
        record.insert("expires_at".to_owned(), Value::from(expires));
    }
    text.append(record);
    let end_of_grace = now + grace;
    if old.expires_at.is_none_or(|at| at > end_of_grace) {
        let end_of_grace = humantime::format_rfc3339_seconds(end_of_grace).to_string();
        text.set(id, "expires_at", Value::from(end_of_grace))?;
    }
    write_store(&target.store, text)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_written_per_second_slash_burst() {
        assert_eq!(
            rate_limit("50/100").unwrap(),
            serde_json::json!({"per_second": 50, "burst": 100})
        );
        assert_eq!(
            rate_limit("5").unwrap(),
            serde_json::json!({"per_second": 5, "burst": 5})
        );
        for bad in ["0/1", "x", "5/", "-1/2"] {
            assert!(rate_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_key_fields_are_checked_as_the_loader_checks_them() {
        let key = NewKey {
            allowed_cidrs: &["10.0.0.0/8".into(), "::1".into()],
            ..NewKey::default()
        };
        assert_eq!(
            key.fields().unwrap()["allowed_cidrs"],
            serde_json::json!(["10.0.0.0/8", "::1/128"])
        );
        let bad = NewKey {
            allowed_cidrs: &["10.0.0.0/33".into()],
            ..NewKey::default()
        };
        assert!(bad.fields().is_err());
        let bad_time = NewKey {
            not_before: Some("tomorrow"),
            ..NewKey::default()
        };
        assert!(bad_time.fields().is_err());
    }
}
