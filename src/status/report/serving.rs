//! What the report shows of the serving configuration: the facts the admin listener reads
//! off the snapshot ([`Serving`]) and the reload history the board keeps.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::rfc3339;
use crate::status::{Board, lock};

#[derive(Serialize)]
pub(super) struct SnapshotRow {
    /// Configurations swapped in since start (the first load is 0).
    generation: i64,
    serving_since: String,
    mode: &'static str,
    last_reload: Option<ReloadRow>,
    last_failed_reload: Option<FailedReloadRow>,
    spec: Option<SpecRow>,
    key_stores: Vec<KeyStoreRow>,
    tls: Option<TlsRow>,
}

#[derive(Serialize)]
struct ReloadRow {
    time: String,
    result: &'static str,
}

#[derive(Serialize)]
struct FailedReloadRow {
    time: String,
    problems: Vec<String>,
}

#[derive(Serialize)]
pub struct SpecRow {
    pub title: Option<String>,
    pub version: Option<String>,
    pub openapi: String,
    pub operations: usize,
}

#[derive(Serialize)]
pub struct KeyStoreRow {
    pub scheme: String,
    pub digest: String,
    pub keys: usize,
    pub age_seconds: u64,
    /// A Redis store's version and the last change's lag; absent for a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_lag_ms: Option<u64>,
}

/// What the report shows of the serving configuration, as the admin listener read it off
/// the snapshot.
pub struct Serving {
    /// Configurations swapped in since start.
    pub generation: i64,
    pub mode: &'static str,
    pub spec: Option<SpecRow>,
    pub key_stores: Vec<KeyStoreRow>,
    pub tls_not_after: Option<SystemTime>,
    /// `host:port` of the upstream, without user info.
    pub upstream: String,
    /// The admin listener's probe of the upstream, made just before (`None`: it did not
    /// connect).
    pub upstream_connect: Option<Duration>,
}

#[derive(Serialize)]
struct TlsRow {
    not_after: String,
    days_left: i64,
}

pub(super) fn snapshot_row(board: &Board, serving: Serving, now: SystemTime) -> SnapshotRow {
    let reloads = lock(&board.reloads);
    SnapshotRow {
        generation: serving.generation,
        serving_since: rfc3339(reloads.serving_since),
        mode: serving.mode,
        last_reload: reloads.last.map(|(at, swapped)| ReloadRow {
            time: rfc3339(at),
            result: if swapped { "success" } else { "failure" },
        }),
        last_failed_reload: reloads
            .last_failure
            .as_ref()
            .map(|(at, problems)| FailedReloadRow {
                time: rfc3339(*at),
                problems: problems.clone(),
            }),
        spec: serving.spec,
        key_stores: serving.key_stores,
        tls: serving.tls_not_after.map(|end| {
            let left = match end.duration_since(now) {
                Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
            };
            TlsRow {
                not_after: rfc3339(end),
                days_left: left.div_euclid(86_400),
            }
        }),
    }
}
