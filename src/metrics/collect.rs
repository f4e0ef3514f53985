//! What `/metrics` reads from the status board at each scrape, instead of counting twice:
//! the latency histograms and the refusal counts.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::RejectionLabels;
use crate::ids::OperationLabel;
use crate::status::Board;
use crate::status::histogram::Counts;

/// The latency histograms, read from the board's lock-free ones at each scrape, in
/// prometheus-client's layout: `moat_request_duration_seconds` and
/// `moat_upstream_duration_seconds` (0.5 ms … ~65 s, one bucket per doubling) and
/// `moat_operation_duration_seconds{operation}`, the first split by operation.
#[derive(Debug)]
pub(super) struct Latencies(pub(super) Arc<Board>);

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
pub(super) struct Refusals(pub(super) Arc<Board>);

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
