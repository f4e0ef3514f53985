//! The metric families of one concern each: the limit stage's, the LLM meter's, the
//! response checks' and the key stores'. Each registers itself and is reached through `Metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{
    KeyLabels, KeyStoreLabels, KindLabels, LimitDecisionLabels, OperationLabels, ReasonLabels,
    SchemeLabels, TokenLabels, ViolationLabels, registered,
};

/// LLM operations (see `llm`): tokens by key, reservations refused, streams cut.
pub struct LlmMetrics {
    pub tokens: Family<TokenLabels, Counter>,
    pub reservations_refused: Family<KeyLabels, Counter>,
    pub streams_cut: Family<KeyLabels, Counter>,
}

impl LlmMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        LlmMetrics {
            tokens: registered(registry, LLM_TOKENS, Family::default()),
            reservations_refused: registered(registry, LLM_REFUSED, Family::default()),
            streams_cut: registered(registry, LLM_CUT, Family::default()),
        }
    }
}

const LLM_TOKENS: (&str, &str) = (
    "moat_llm_tokens",
    "Tokens of LLM operations by API key and kind (prompt, completion): as the model reported \
     them in `usage`, else as moat counted them",
);
const LLM_REFUSED: (&str, &str) = (
    "moat_llm_reservations_refused",
    "LLM requests refused because their reservation did not fit the key's token budget",
);
const LLM_CUT: (&str, &str) = (
    "moat_llm_streams_cut",
    "LLM streams moat ended because they reached their key's token budget",
);

/// The model's answers held to the spec (see `respond`).
pub struct ResponseMetrics {
    /// Answers with a declared schema relayed without their body checked.
    pub not_checked: Family<ReasonLabels, Counter>,
    /// Answers (and streamed events) that did not match the spec, in any mode.
    pub violations: Family<ViolationLabels, Counter>,
    /// Members `strip_undeclared` removed.
    pub stripped_fields: Family<OperationLabels, Counter>,
}

impl ResponseMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        ResponseMetrics {
            not_checked: registered(registry, NOT_CHECKED, Family::default()),
            violations: registered(registry, VIOLATIONS, Family::default()),
            stripped_fields: registered(registry, STRIPPED, Family::default()),
        }
    }
}

const NOT_CHECKED: (&str, &str) = (
    "moat_response_not_checked",
    "Answers whose body the spec gives a schema, relayed unchecked, by reason (too_large: \
     past responses.max_body_bytes; no_length: no Content-Length, streamed; metered: an LLM \
     operation's JSON answer; head: a HEAD's, which has none; stream: an event stream of an \
     operation moat does not meter; no_room: limits.max_buffered_body_bytes was full)",
);
const VIOLATIONS: (&str, &str) = (
    "moat_response_violations",
    "The model's answers that did not match the spec, by operation and kind (status, \
     content_type, body, event), in shadow and enforce alike",
);
const STRIPPED: (&str, &str) = (
    "moat_response_stripped_fields",
    "Members of the model's answers that the schema does not declare, removed by \
     responses.strip_undeclared",
);

/// Stage 5's own: decisions by source, and the Redis round trips behind them.
pub struct LimitMetrics {
    /// Redis round trips of the limit stage (timeouts included, at the timeout).
    pub store_duration: Histogram,
    store_errors: Family<KindLabels, Counter>,
    /// Decisions on key limits and quotas (and shared client limits), by source.
    pub decisions: Family<LimitDecisionLabels, Counter>,
    /// The Redis circuit, set when `/metrics` is read: 0 closed, 1 open, 2 half-open.
    pub store_state: Gauge,
}

impl LimitMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        // 50 µs to 0.8 s: a loopback round trip is ~100 µs, a timeout tens of ms.
        let store_duration = Histogram::new(exponential_buckets(0.00005, 2.0, 15));
        LimitMetrics {
            store_state: registered(registry, STORE_STATE, Gauge::default()),
            store_duration: registered(registry, STORE_DURATION, store_duration),
            store_errors: registered(registry, STORE_ERRORS, Family::default()),
            decisions: registered(registry, DECISIONS, Family::default()),
        }
    }

    pub fn store_error(&self, kind: &'static str) {
        self.store_errors.get_or_create(&KindLabels { kind }).inc();
    }
}

const STORE_STATE: (&str, &str) = (
    "moat_limit_store_state",
    "The Redis limit store's circuit: 0 closed (asked), 1 open (on_error decides at once), \
     2 half-open (one check probes)",
);
const STORE_DURATION: (&str, &str) = (
    "moat_limit_store_duration_seconds",
    "Time of one limit check in Redis (a timeout counts at the timeout)",
);
const STORE_ERRORS: (&str, &str) = (
    "moat_limit_store_errors",
    "Limit checks Redis did not answer, by kind (timeout, connection, error)",
);
const DECISIONS: (&str, &str) = (
    "moat_limit_decisions",
    "Key-limit and quota decisions by source (memory, redis, on_error_deny, on_error_allow, \
     on_error_local) and decision",
);

/// One API-key scheme's store as this replica holds it, for [`KeyStoreMetrics::set`].
pub struct KeyStoreState<'a> {
    pub scheme: &'a str,
    pub digest: &'a str,
    pub keys: usize,
    pub age: std::time::Duration,
    /// A Redis store's version and lag; `None` for a file.
    pub redis: Option<RedisStoreState>,
}

/// What a replica holds of a Redis key store.
#[derive(Debug, Clone, Copy)]
pub struct RedisStoreState {
    /// The version the serving snapshot holds.
    pub version: u64,
    /// Read whole from Redis at least once.
    pub synced: bool,
    /// From the last change's write in Redis to its serving here.
    pub last_lag: std::time::Duration,
}

/// Which key store each scheme serves from: its digest, size and age.
pub struct KeyStoreMetrics {
    info: Family<KeyStoreLabels, Gauge>,
    keys: Family<SchemeLabels, Gauge>,
    age: Family<SchemeLabels, Gauge<f64, AtomicU64>>,
    version: Family<SchemeLabels, Gauge>,
    lag: Family<SchemeLabels, Gauge<f64, AtomicU64>>,
}

impl KeyStoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        KeyStoreMetrics {
            info: registered(registry, KEYSTORE_INFO, Family::default()),
            keys: registered(registry, KEYSTORE_KEYS, Family::default()),
            age: registered(registry, KEYSTORE_AGE, Family::default()),
            version: registered(registry, KEYSTORE_VERSION, Family::default()),
            lag: registered(registry, KEYSTORE_LAG, Family::default()),
        }
    }

    /// The gauges set to the serving snapshot's stores (called before each scrape, so a
    /// store replaced by a reload leaves no stale digest behind).
    pub fn set<'a>(&self, stores: impl Iterator<Item = KeyStoreState<'a>>) {
        self.info.clear();
        self.keys.clear();
        self.age.clear();
        self.version.clear();
        self.lag.clear();
        for store in stores {
            let scheme = SchemeLabels {
                scheme: store.scheme.to_owned(),
            };
            let info = KeyStoreLabels {
                scheme: store.scheme.to_owned(),
                digest: store.digest.to_owned(),
            };
            self.info.get_or_create(&info).set(1);
            let keys = i64::try_from(store.keys).unwrap_or(i64::MAX);
            self.keys.get_or_create(&scheme).set(keys);
            self.age.get_or_create(&scheme).set(store.age.as_secs_f64());
            if let Some(redis) = store.redis {
                let version = i64::try_from(redis.version).unwrap_or(i64::MAX);
                self.version.get_or_create(&scheme).set(version);
                self.lag
                    .get_or_create(&scheme)
                    .set(redis.last_lag.as_secs_f64());
            }
        }
    }
}

const KEYSTORE_INFO: (&str, &str) = (
    "moat_keystore_info",
    "1 for the key store each API-key scheme serves from, labelled with the first 16 hex \
     digits of its SHA-256: every replica reading the same store shows the same digest",
);
const KEYSTORE_KEYS: (&str, &str) = (
    "moat_keystore_keys",
    "Records in the key store each API-key scheme serves from",
);
const KEYSTORE_AGE: (&str, &str) = (
    "moat_keystore_age_seconds",
    "Seconds since this replica read the key store it serves from (at start, on a change to \
     the file, on a reload), or since Redis last confirmed a Redis store",
);
const KEYSTORE_VERSION: (&str, &str) = (
    "moat_keystore_version",
    "The version of a Redis key store this replica serves: equal on every replica that has \
     applied every change",
);
const KEYSTORE_LAG: (&str, &str) = (
    "moat_keystore_apply_lag_seconds",
    "From the last change's write in Redis (Redis's clock) to this replica serving it",
);
