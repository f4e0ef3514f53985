//! Prometheus metrics (design §7), served by the admin listener. One [`Metrics`] lives for
//! the whole process, across config reloads, so counters never reset under a scraper.

mod collect;
mod families;
mod labels;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use self::collect::{Latencies, Refusals};
pub use self::families::{
    KeyStoreMetrics, KeyStoreState, LimitMetrics, LlmMetrics, RedisStoreState, ResponseMetrics,
};
pub use self::labels::*;
use crate::status::Board;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub key_verifications: Family<KeyVerificationLabels, Counter>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// Connections moat closed on its own (`max_requests`, `client_resets`,
    /// `plain_http_on_tls`).
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// Requests their client abandoned (`before_response`: logged as 499; `during_response`).
    pub cancelled: Family<PhaseLabels, Counter>,
    /// The model's answers held to the spec (see `respond`).
    pub responses: ResponseMetrics,
    /// Increments with every configuration swapped in (the first load is generation 0).
    pub config_generation: Gauge,
    /// The status page's counters; `/metrics` takes the request and upstream latency
    /// histograms and the refusal counts from them too (see `collect`).
    pub board: Arc<Board>,
    stores: KeyStoreMetrics,
    pub limits: LimitMetrics,
    pub llm: LlmMetrics,
}

/// `metric`, registered under `name` with `help` (a metric is a handle: the registry and
/// the caller share it).
fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    (name, help): (&str, &str),
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let board = Arc::new(Board::default());
        let stores = KeyStoreMetrics::register(r);
        let requests = registered(r, REQUESTS, Family::default());
        let key_verifications = registered(r, KEY_VERIFICATIONS, Family::default());
        let config_reloads = registered(r, RELOADS, Family::default());
        let connections_closed = registered(r, CLOSED, Family::default());
        let cancelled = registered(r, CANCELLED, Family::default());
        let responses = ResponseMetrics::register(r);
        let config_generation = registered(r, GENERATION, Gauge::default());
        r.register_collector(Box::new(Latencies(board.clone())));
        r.register_collector(Box::new(Refusals(board.clone())));
        let limits = LimitMetrics::register(r);
        let llm = LlmMetrics::register(r);
        Self {
            registry,
            requests,
            key_verifications,
            config_reloads,
            connections_closed,
            cancelled,
            responses,
            config_generation,
            board,
            stores,
            limits,
            llm,
        }
    }

    /// Sets the key-store gauges to the serving snapshot's stores (before each scrape).
    pub fn key_stores<'a>(&self, stores: impl Iterator<Item = KeyStoreState<'a>>) {
        self.stores.set(stores);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const REQUESTS: (&str, &str) = (
    "moat_requests",
    "Requests answered, by operation and status",
);
const KEY_VERIFICATIONS: (&str, &str) = (
    "moat_key_verifications",
    "API-key checks by result (valid, invalid, unknown, malformed, overloaded, error) and \
     whether the verification cache answered (hit, miss, none: no hash needed)",
);
const RELOADS: (&str, &str) = (
    "moat_config_reloads",
    "Configuration reloads by result (success, failure: the old one kept serving)",
);
const CLOSED: (&str, &str) = (
    "moat_connections_closed",
    "Client connections moat closed on its own, by reason (max_requests: \
     limits.max_requests_per_connection; client_resets: the reset budget; \
     plain_http_on_tls: plain HTTP sent to the TLS port)",
);
const CANCELLED: (&str, &str) = (
    "moat_client_cancelled_requests",
    "Requests the client reset or abandoned, by phase (before_response: logged as 499; \
     during_response: a response body cut short)",
);
const GENERATION: (&str, &str) = (
    "moat_config_generation",
    "How many configurations have been swapped in since start",
);

#[cfg(test)]
mod tests;
