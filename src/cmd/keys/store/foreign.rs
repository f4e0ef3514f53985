//! Key stores of other gateways read as moat records marked `legacy_sha256` (see
//! `api_key::legacy`): each gateway kept an unsalted SHA-256 of every key, which is all
//! moat needs to verify a key once and re-hash it with argon2id. What is read of each:
//!
//! - `litellm`: rows of `LiteLLM_VerificationToken` as JSON (`select json_agg(t) from
//!   "LiteLLM_VerificationToken" t`, or `/key/list?return_full_object=true`'s `keys`):
//!   `token` (the SHA-256 in hex), `key_alias` → id, `user_id` → owner, `models`,
//!   `expires`, `blocked` → disabled, `rpm_limit` → a per-minute quota, `tpm_limit` →
//!   `tokens_per_minute`.
//! - `unkey`: exported keys: `hash` (hex or base64), `name` or `id` → id, `ownerId` /
//!   `externalId` → owner, `expires` (ms or RFC 3339), `enabled: false` → disabled.
//! - `agentgateway`: `key: sha256:<hex>` entries with their `metadata` (`id`/`name` → id).
//!
//! Each takes a JSON or YAML list, or a mapping whose `keys` is one. Anything else a
//! gateway kept (budgets, spend, teams) has no moat meaning and is left out.

use std::collections::HashSet;

use base64::Engine;
use serde_json::{Map, Value};

use crate::auth::keystore::{hex, valid_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Gateway {
    Litellm,
    Unkey,
    Agentgateway,
}

/// The moat records of `text` (a `gateway` export), each with `scopes`.
pub fn records(
    text: &str,
    gateway: Gateway,
    scopes: &[String],
) -> Result<Vec<Map<String, Value>>, String> {
    let document: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let rows = match &document {
        Value::Array(rows) => rows,
        Value::Object(object) => object
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("expected a list of keys, or a mapping with a `keys` list")?,
        _ => return Err("expected a list of keys, or a mapping with a `keys` list".to_owned()),
    };
    let mut taken = HashSet::new();
    let mut records = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let row = row
            .as_object()
            .ok_or_else(|| format!("key {n}: not a mapping"))?;
        let mut record = match gateway {
            Gateway::Litellm => litellm(row),
            Gateway::Unkey => unkey(row),
            Gateway::Agentgateway => agentgateway(row),
        }
        .map_err(|problem| format!("key {n}: {problem}"))?;
        let id = unique_id(record.id_hint.as_deref(), &record.sha, &mut taken);
        record.fields.insert("id".to_owned(), Value::from(id));
        record
            .fields
            .insert("legacy_sha256".to_owned(), Value::from(record.sha));
        if !scopes.is_empty() {
            record
                .fields
                .insert("scopes".to_owned(), Value::from(scopes.to_vec()));
        }
        records.push(record.fields);
    }
    Ok(records)
}

/// One row read: its SHA-256 (hex), what to name it, and its other moat fields.
struct Row {
    sha: String,
    id_hint: Option<String>,
    fields: Map<String, Value>,
}

fn litellm(row: &Map<String, Value>) -> Result<Row, String> {
    let sha = hex_sha(text(row, "token").ok_or("no `token`")?)?;
    let mut fields = Map::new();
    if let Some(owner) = text(row, "user_id") {
        fields.insert("owner".to_owned(), Value::from(owner));
    }
    let models: Vec<&str> = list(row, "models");
    if !models.is_empty() && !models.contains(&"all-proxy-models") {
        fields.insert("models".to_owned(), Value::from(models));
    }
    if let Some(expires) = text(row, "expires") {
        fields.insert("expires_at".to_owned(), Value::from(rfc3339(expires)?));
    }
    if row.get("blocked").and_then(Value::as_bool) == Some(true) {
        fields.insert("disabled".to_owned(), Value::Bool(true));
    }
    if let Some(rpm) = row.get("rpm_limit").and_then(Value::as_u64) {
        let quota = serde_json::json!({"requests": rpm, "per": "minute"});
        fields.insert("quota".to_owned(), quota);
    }
    if let Some(tpm) = row.get("tpm_limit").and_then(Value::as_u64) {
        fields.insert("tokens_per_minute".to_owned(), Value::from(tpm));
    }
    Ok(Row {
        sha,
        id_hint: text(row, "key_alias").map(str::to_owned),
        fields,
    })
}

fn unkey(row: &Map<String, Value>) -> Result<Row, String> {
    let sha = hex_sha(text(row, "hash").ok_or("no `hash`")?)?;
    let mut fields = Map::new();
    if let Some(owner) = text(row, "ownerId").or_else(|| text(row, "externalId")) {
        fields.insert("owner".to_owned(), Value::from(owner));
    }
    match row.get("expires") {
        Some(Value::Number(ms)) => {
            let ms = ms.as_u64().ok_or("`expires` is not a time")?;
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            let at = humantime::format_rfc3339_seconds(at).to_string();
            fields.insert("expires_at".to_owned(), Value::from(at));
        }
        Some(Value::String(at)) => {
            fields.insert("expires_at".to_owned(), Value::from(rfc3339(at)?));
        }
        _ => {}
    }
    if row.get("enabled").and_then(Value::as_bool) == Some(false) {
        fields.insert("disabled".to_owned(), Value::Bool(true));
    }
    let id_hint = text(row, "name")
        .or_else(|| text(row, "id"))
        .map(str::to_owned);
    Ok(Row {
        sha,
        id_hint,
        fields,
    })
}

fn agentgateway(row: &Map<String, Value>) -> Result<Row, String> {
    let key = text(row, "key").ok_or("no `key`")?;
    let hex = key
        .strip_prefix("sha256:")
        .ok_or("`key` is not `sha256:<hex>` (a plaintext key is not imported)")?;
    let sha = hex_sha(hex)?;
    let metadata = row.get("metadata").and_then(Value::as_object);
    let id_hint = metadata
        .and_then(|m| text(m, "id").or_else(|| text(m, "name")))
        .map(str::to_owned);
    Ok(Row {
        sha,
        id_hint,
        fields: Map::new(),
    })
}

fn text<'a>(row: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    row.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn list<'a>(row: &'a Map<String, Value>, name: &str) -> Vec<&'a str> {
    row.get(name)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A SHA-256 as 64 lower-case hex digits, from hex or (Unkey) base64.
fn hex_sha(text: &str) -> Result<String, String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(text.to_ascii_lowercase());
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|engine| engine.decode(text).ok().filter(|bytes| bytes.len() == 32))
        .map(|bytes| hex(&bytes))
        .ok_or_else(|| {
            "the hash is not a SHA-256 (64 hex digits, or 32 bytes in base64)".to_owned()
        })
}

/// A gateway's timestamp (`2027-01-01T00:00:00.000Z`, `2027-01-01 00:00:00+00`) as RFC 3339.
fn rfc3339(text: &str) -> Result<String, String> {
    let trimmed = text
        .trim_end_matches("+00:00")
        .trim_end_matches("+00")
        .trim_end_matches('Z');
    humantime::parse_rfc3339_weak(trimmed)
        .map(|at| humantime::format_rfc3339_seconds(at).to_string())
        .map_err(|_| format!("`{text}` is not a UTC time moat reads"))
}

/// A valid key id from the gateway's name for the key, else from its hash; never one taken.
fn unique_id(hint: Option<&str>, sha: &str, taken: &mut HashSet<String>) -> String {
    let slug: String = hint
        .unwrap_or_default()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let mut base: String = slug.chars().take(56).collect();
    if !valid_id(&base) {
        base = format!("legacy-{}", &sha[..12]);
    }
    let mut id = base.clone();
    let mut n = 1;
    while !taken.insert(id.clone()) {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_litellm_row_becomes_a_legacy_record() {
        let text = format!(
            r#"[{{"token": "{SHA}", "key_alias": "Team A / prod", "user_id": "ann", "models": ["gpt-4o"], "expires": "2030-01-01T00:00:00.000Z", "blocked": null, "rpm_limit": 60, "tpm_limit": 1000, "spend": 1.5}}]"#
        );
        let records = records(&text, Gateway::Litellm, &["chat".to_owned()]).unwrap();
        let record = Value::Object(records[0].clone());
        assert_eq!(record["id"], "team-a-prod");
        assert_eq!(record["legacy_sha256"], SHA);
        assert_eq!(record["expires_at"], "2030-01-01T00:00:00Z");
        assert_eq!(
            record["quota"],
            serde_json::json!({"requests": 60, "per": "minute"})
        );
        assert_eq!(record["scopes"], serde_json::json!(["chat"]));
        assert!(record.get("spend").is_none());
    }

    #[test]
    fn unkey_hashes_in_base64_and_agentgateway_prefixes_read_as_hex() {
        let base64 = base64::engine::general_purpose::STANDARD.encode(
            (0..32)
                .map(|i| u8::from_str_radix(&SHA[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        );
        let text = format!(
            r#"{{"keys": [{{"id": "key_1", "hash": "{base64}", "enabled": false, "expires": 1893456000000}}]}}"#
        );
        let record = Value::Object(records(&text, Gateway::Unkey, &[]).unwrap().remove(0));
        assert_eq!(
            (&record["legacy_sha256"], &record["disabled"]),
            (&Value::from(SHA), &Value::Bool(true))
        );
        assert_eq!(record["id"], "key-1");
        let text = format!("- key: \"sha256:{SHA}\"\n- key: \"sha256:{SHA}\"\n");
        let both = records(&text, Gateway::Agentgateway, &[]).unwrap();
        assert_eq!(
            (&both[0]["id"], &both[1]["id"]),
            (
                &Value::from("legacy-9f86d081884c"),
                &Value::from("legacy-9f86d081884c-2")
            )
        );
        let plain = records("- key: sk-plaintext\n", Gateway::Agentgateway, &[]).unwrap_err();
        assert!(plain.contains("plaintext"), "{plain}");
    }
}
