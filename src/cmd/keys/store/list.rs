//! `moat keys list`: the store as a table, one key a line, with its state and
//! restrictions; no hash, unless `--hashes` asks how each was made.

use std::time::SystemTime;

use super::opened::Opened;
use crate::auth::keystore::KeyRecord;
use crate::config::KeySource;

const COLUMNS: [&str; 6] = [
    "id",
    "owner",
    "state",
    "expires_at",
    "scopes",
    "restrictions",
];
const HASH_COLUMN: &str = "hashed with";

/// `moat keys list`: one line per key with its state and restrictions. No hash by default:
/// not a secret, but noise, and text that invites copy-paste; `hashes` adds a column with
/// each hash's algorithm and cost (never its salt or digest), for checking a raised cost.
pub fn list(source: &KeySource, hashes: bool, legacy: bool) -> Result<String, String> {
    if let KeySource::File(path) = source
        && !path.exists()
    {
        return Err(format!(
            "no key store at {}; `moat keys new --id ID` creates it",
            path.display()
        ));
    }
    let store = Opened::open(source)?.store;
    // `--legacy`: the records still holding another gateway's SHA-256 (see `api_key::legacy`).
    let mut ids: Vec<&String> = (store.records.iter())
        .filter(|(_, record)| !legacy || record.legacy_sha256.is_some())
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let now = SystemTime::now();
    let mut out = row(
        COLUMNS.map(str::to_owned),
        hashes.then(|| HASH_COLUMN.to_owned()),
    );
    let ids_empty = ids.is_empty();
    for id in ids {
        let record = &store.records[id];
        out.push_str(&row(
            cells(record, now),
            hashes.then(|| hashed_with(record)),
        ));
    }
    if store.records.is_empty() {
        out.push_str("(no keys yet: `moat keys new --id ID --scopes a,b`)\n");
    } else if legacy && ids_empty {
        out.push_str("(no legacy SHA-256 records left: every key is hashed with argon2id)\n");
    }
    Ok(out)
}

/// One key's cells of the table, but for its hash.
fn cells(record: &KeyRecord, now: SystemTime) -> [String; 6] {
    let state = match record.admits_any_address(now) {
        Ok(()) => "active",
        Err(restriction) => restriction,
    };
    let expires_at = record
        .expires_at
        .map(|t| humantime::format_rfc3339_seconds(t).to_string());
    let scopes = if record.scopes.is_empty() {
        "-".to_owned()
    } else {
        record.scopes.join(",")
    };
    [
        record.id.to_string(),
        record.owner.as_deref().unwrap_or("-").to_owned(),
        state.to_owned(),
        expires_at.unwrap_or_else(|| "-".to_owned()),
        scopes,
        restrictions(record),
    ]
}

/// The table's columns, the last one as long as it needs; the hash column, when asked
/// for, before the restrictions (which run long).
fn row(cells: [String; 6], hash: Option<String>) -> String {
    let [id, owner, state, expires_at, scopes, restrictions] = cells;
    let hash = hash.map_or_else(String::new, |hash| format!("{hash:<26} "));
    format!("{id:<24} {owner:<16} {state:<9} {expires_at:<21} {scopes:<24} {hash}{restrictions}\n")
}

/// The algorithm and cost of a PHC hash (`argon2id m=19456,t=2,p=1`): what an operator
/// checks after raising the cost, and nothing of the salt or hash itself.
fn hashed_with(record: &KeyRecord) -> String {
    if record.legacy_sha256.is_some() {
        return "sha256 (legacy)".to_owned();
    }
    let mut fields = record.hash.split('$').skip(1);
    let algorithm = fields.next().unwrap_or("?");
    let params = fields.find(|f| f.contains("m=")).unwrap_or("");
    format!("{algorithm} {params}").trim_end().to_owned()
}

/// Everything that narrows what the key may do, `-` for nothing.
fn restrictions(record: &KeyRecord) -> String {
    let parts: Vec<String> = reach(record)
        .into_iter()
        .chain(limits(record))
        .chain(llm_rules(record))
        .flatten()
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(" ")
    }
}

/// From when and where the key works, and what it may call.
fn reach(record: &KeyRecord) -> [Option<String>; 3] {
    let not_before = record.not_before.map(humantime::format_rfc3339_seconds);
    let operations = record.operations.as_ref().map(|ops| ops.join(","));
    let cidrs = record.allowed_cidrs.as_ref().map(|cidrs| {
        let cidrs: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
        cidrs.join(",")
    });
    [
        not_before.map(|at| format!("not_before={at}")),
        operations.map(|operations| format!("operations={operations}")),
        cidrs.map(|cidrs| format!("cidrs={cidrs}")),
    ]
}

/// How fast and how much the key may call.
fn limits(record: &KeyRecord) -> [Option<String>; 2] {
    let rate = record
        .rate_limit
        .map(|limit| format!("rate={}/s burst={}", limit.per_second, limit.burst));
    let quota = record
        .quota
        .map(|quota| format!("quota={}/{}", quota.requests, quota.per.as_str()));
    [rate, quota]
}

/// The key's rules on LLM operations.
fn llm_rules(record: &KeyRecord) -> [Option<String>; 5] {
    let models = record.models.as_ref().map(|models| models.join(","));
    let budget = record
        .token_budget
        .map(|budget| format!("tokens={}/{}", budget.tokens, budget.per.as_str()));
    [
        models.map(|models| format!("models={models}")),
        record.max_tokens.map(|n| format!("max_tokens={n}")),
        record
            .max_concurrent_streams
            .map(|n| format!("streams={n}")),
        budget,
        record
            .tokens_per_minute
            .map(|n| format!("tokens={n}/minute")),
    ]
}
