//! Prometheus metrics (design §7), served by the admin listener. One [`Metrics`] lives for
//! the whole process, across config reloads, so counters never reset under a scraper.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::status::Board;
use crate::status::histogram::Counts;

use crate::ids::OperationLabel;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub operation: OperationLabel,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub stage: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyVerificationLabels {
    pub result: &'static str,
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyStoreLabels {
    pub scheme: String,
    pub digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SchemeLabels {
    pub scheme: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitDecisionLabels {
    /// `memory`, `redis`, or the `on_error_*` fallback that decided.
    pub source: &'static str,
    /// `admit` or `refuse`.
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// The API key's id; `-` for a caller without one (a JWT).
    pub key: Arc<str>,
    /// `prompt` or `completion`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: Arc<str>,
}

/// LLM operations (see `llm`): tokens by key, reservations refused, streams cut.
pub struct LlmMetrics {
    pub tokens: Family<TokenLabels, Counter>,
    pub reservations_refused: Family<KeyLabels, Counter>,
    pub streams_cut: Family<KeyLabels, Counter>,
}

impl LlmMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = LlmMetrics {
            tokens: Family::default(),
            reservations_refused: Family::default(),
            streams_cut: Family::default(),
        };
        registry.register(
            "moat_llm_tokens",
            "Tokens of LLM operations by API key and kind (prompt, completion): as the model \
             reported them in `usage`, else as moat counted them",
            metrics.tokens.clone(),
        );
        registry.register(
            "moat_llm_reservations_refused",
            "LLM requests refused because their reservation did not fit the key's token budget",
            metrics.reservations_refused.clone(),
        );
        registry.register(
            "moat_llm_streams_cut",
            "LLM streams moat ended because they reached their key's token budget",
            metrics.streams_cut.clone(),
        );
        metrics
    }
}

/// One API-key scheme's store as this replica holds it, for [`Metrics::key_stores`].
pub struct KeyStoreState<'a> {
    pub scheme: &'a str,
    pub digest: &'a str,
    pub keys: usize,
    pub age: std::time::Duration,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub key_verifications: Family<KeyVerificationLabels, Counter>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    /// Connections moat closed on its own (`max_requests`, `client_resets`).
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// Requests their client abandoned (`before_response`: logged as 499; `during_response`).
    pub cancelled: Family<PhaseLabels, Counter>,
    /// Increments with every configuration swapped in (the first load is generation 0).
    pub config_generation: Gauge,
    /// The status page's counters; `/metrics` takes the request and upstream latency
    /// histograms from them too (see [`Latencies`]).
    pub board: Arc<Board>,
    key_store_info: Family<KeyStoreLabels, Gauge>,
    key_store_keys: Family<SchemeLabels, Gauge>,
    key_store_age: Family<SchemeLabels, Gauge<f64, AtomicU64>>,
    pub limits: LimitMetrics,
    pub llm: LlmMetrics,
}

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
    fn register(registry: &mut Registry) -> Self {
        // 50 µs to 0.8 s: a loopback round trip is ~100 µs, a timeout tens of ms.
        let store_duration = Histogram::new(exponential_buckets(0.00005, 2.0, 15));
        let store_errors = Family::<KindLabels, Counter>::default();
        let decisions = Family::<LimitDecisionLabels, Counter>::default();
        let store_state = Gauge::default();
        registry.register(
            "moat_limit_store_state",
            "The Redis limit store's circuit: 0 closed (asked), 1 open (on_error decides at \
             once), 2 half-open (one check probes)",
            store_state.clone(),
        );
        registry.register(
            "moat_limit_store_duration_seconds",
            "Time of one limit check in Redis (a timeout counts at the timeout)",
            store_duration.clone(),
        );
        registry.register(
            "moat_limit_store_errors",
            "Limit checks Redis did not answer, by kind (timeout, connection, error)",
            store_errors.clone(),
        );
        registry.register(
            "moat_limit_decisions",
            "Key-limit and quota decisions by source (memory, redis, on_error_deny, on_error_allow, on_error_local) and decision",
            decisions.clone(),
        );
        Self {
            store_duration,
            store_errors,
            decisions,
            store_state,
        }
    }

    pub fn store_error(&self, kind: &'static str) {
        self.store_errors.get_or_create(&KindLabels { kind }).inc();
    }
}

impl Metrics {
    #[allow(clippy::too_many_lines)] // one registration per metric, nothing else
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let key_verifications = Family::<KeyVerificationLabels, Counter>::default();
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        let cancelled = Family::<PhaseLabels, Counter>::default();
        let config_generation = Gauge::default();
        let board = Arc::new(Board::default());
        let key_store_info = Family::<KeyStoreLabels, Gauge>::default();
        let key_store_keys = Family::<SchemeLabels, Gauge>::default();
        let key_store_age = Family::<SchemeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "moat_keystore_info",
            "1 for the key store each API-key scheme serves from, labelled with the first 16 hex \
             digits of its SHA-256: every replica reading the same store shows the same digest",
            key_store_info.clone(),
        );
        registry.register(
            "moat_keystore_keys",
            "Records in the key store each API-key scheme serves from",
            key_store_keys.clone(),
        );
        registry.register(
            "moat_keystore_age_seconds",
            "Seconds since this replica read the key store it serves from (at start, on a \
             change to the file, on a reload)",
            key_store_age.clone(),
        );
        registry.register(
            "moat_requests",
            "Requests answered, by operation and status",
            requests.clone(),
        );
        registry.register(
            "moat_key_verifications",
            "API-key checks by result (valid, invalid, unknown, malformed, overloaded, error) and \
             whether the verification cache answered (hit, miss, none: no hash needed)",
            key_verifications.clone(),
        );
        registry.register(
            "moat_config_reloads",
            "Configuration reloads by result (success, failure: the old one kept serving)",
            config_reloads.clone(),
        );
        registry.register(
            "moat_connections_closed",
            "Client connections moat closed on its own, by reason (max_requests: \
             limits.max_requests_per_connection; client_resets: the reset budget)",
            connections_closed.clone(),
        );
        registry.register(
            "moat_client_cancelled_requests",
            "Requests the client reset or abandoned, by phase (before_response: logged as 499; \
             during_response: a response body cut short)",
            cancelled.clone(),
        );
        registry.register(
            "moat_config_generation",
            "How many configurations have been swapped in since start",
            config_generation.clone(),
        );
        registry.register_collector(Box::new(Latencies(board.clone())));
        registry.register_collector(Box::new(Refusals(board.clone())));
        let limits = LimitMetrics::register(&mut registry);
        let llm = LlmMetrics::register(&mut registry);
        Self {
            registry,
            requests,
            key_verifications,
            config_reloads,
            connections_closed,
            cancelled,
            config_generation,
            board,
            key_store_info,
            key_store_keys,
            key_store_age,
            limits,
            llm,
        }
    }

    /// Sets the key-store gauges to the serving snapshot's stores (called before each
    /// scrape, so a store replaced by a reload leaves no stale digest behind).
    pub fn key_stores<'a>(&self, stores: impl Iterator<Item = KeyStoreState<'a>>) {
        self.key_store_info.clear();
        self.key_store_keys.clear();
        self.key_store_age.clear();
        for store in stores {
            let scheme = SchemeLabels {
                scheme: store.scheme.to_owned(),
            };
            let info = KeyStoreLabels {
                scheme: store.scheme.to_owned(),
                digest: store.digest.to_owned(),
            };
            self.key_store_info.get_or_create(&info).set(1);
            let keys = i64::try_from(store.keys).unwrap_or(i64::MAX);
            self.key_store_keys.get_or_create(&scheme).set(keys);
            self.key_store_age
                .get_or_create(&scheme)
                .set(store.age.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The latency histograms, read from the board's lock-free ones at each scrape, in
/// prometheus-client's layout: `moat_request_duration_seconds` and
/// `moat_upstream_duration_seconds` (0.5 ms … ~65 s, one bucket per doubling) and
/// `moat_operation_duration_seconds{operation}`, the first split by operation.
#[derive(Debug)]
struct Latencies(Arc<Board>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: OperationLabel,
}

impl Collector for Latencies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let operations: Vec<_> = self
            .0
            .operations()
            .into_iter()
            .map(|(operation, stats)| (OperationLabels { operation }, stats.latency.read()))
            .collect();
        let mut total = Counts::default();
        for (_, counts) in &operations {
            total.add(counts);
        }
        let histograms = [
            (
                "moat_request_duration_seconds",
                "Time from request head to the end of the response.",
                total,
            ),
            (
                "moat_upstream_duration_seconds",
                "Time from sending a request upstream to its response head.",
                self.0.upstream.read(),
            ),
        ];
        for (name, help, counts) in histograms {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            encode_histogram(metric, &counts)?;
        }
        if !operations.is_empty() {
            let mut family = encoder.encode_descriptor(
                "moat_operation_duration_seconds",
                "Time from request head to the end of the response, by operation (`unrouted` \
                 before a route matched).",
                None,
                MetricType::Histogram,
            )?;
            for (labels, counts) in &operations {
                encode_histogram(family.encode_family(labels)?, counts)?;
            }
        }
        Ok(())
    }
}

/// `moat_rejections_total{stage,code}` and `moat_shadow_rejections_total{stage,code}`,
/// read from the board's refusal counts at each scrape: a refusal is counted once, where
/// the status page counts it too.
#[derive(Debug)]
struct Refusals(Arc<Board>);

impl Collector for Refusals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = [
            (
                "moat_rejections",
                "Requests refused by moat, by pipeline stage and reason code",
                self.0.refusal_counts(),
            ),
            (
                "moat_shadow_rejections",
                "Validation failures let through by `policy.mode: shadow`, by stage and code",
                self.0.shadow_counts(),
            ),
        ];
        for (name, help, counts) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((stage, code), count) in counts {
                let labels = RejectionLabels { stage, code };
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }
        Ok(())
    }
}

fn encode_histogram(mut metric: MetricEncoder<'_>, counts: &Counts) -> Result<(), std::fmt::Error> {
    metric.encode_histogram::<NoLabelSet>(
        counts.sum_seconds(),
        counts.total(),
        &counts.prometheus_buckets(),
        None,
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_appear_under_their_documented_names() {
        let metrics = Metrics::new();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: "predict".into(),
                status: 200,
            })
            .inc();
        metrics.board.refused(crate::status::Refusal {
            at: std::time::SystemTime::now(),
            request_id: crate::ids::RequestId::fresh(),
            operation: "unrouted".into(),
            status: 400,
            stage: "frame",
            code: "invalid_path",
            key_id: None,
            subject: None,
        });
        let operation: OperationLabel = "predict".into();
        metrics.board.record(&crate::status::Outcome {
            operation: &operation,
            duration: std::time::Duration::from_millis(10),
            upstream: None,
            refused: false,
            shadowed: false,
        });
        let text = metrics.encode();
        assert!(
            text.contains(r#"moat_requests_total{operation="predict",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"moat_rejections_total{stage="frame",code="invalid_path"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("moat_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("moat_upstream_duration_seconds_count 0"),
            "{text}"
        );
        // prometheus-client's layout: cumulative buckets ending in the count.
        for line in [
            "moat_request_duration_seconds_count 1",
            r#"moat_request_duration_seconds_bucket{le="0.008"} 0"#,
            r#"moat_request_duration_seconds_bucket{le="0.016"} 1"#,
            r#"moat_request_duration_seconds_bucket{le="+Inf"} 1"#,
            r#"moat_operation_duration_seconds_count{operation="predict"} 1"#,
            r#"moat_operation_duration_seconds_bucket{le="+Inf",operation="predict"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
