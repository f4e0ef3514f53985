//! `GET /status.json`: the board and what the serving snapshot is, as one JSON document —
//! the page's only data source (its fields are listed in docs/operations.md, "The status page"). Built
//! when asked, from the counters, the sampler's copies and the [`Serving`] facts the admin
//! listener reads off the snapshot; nothing here runs per request.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

mod refusals;
mod serving;
mod timeline;

use self::refusals::Refusals;
pub use self::serving::{KeyStoreRow, Serving, SpecRow};
use self::serving::{SnapshotRow, snapshot_row};
pub(in crate::status) use self::timeline::{Timeline, timeline};
use super::histogram::Counts;
use super::{Board, Tick, Window, lock, unix_seconds};

#[derive(Serialize)]
pub struct StatusReport {
    generated_at: String,
    moat: Process,
    /// The span "last minute" figures cover: 60–70 s, or the time since start.
    window_seconds: f64,
    totals: Totals,
    operations: Vec<OperationRow>,
    upstream: UpstreamRow,
    refusals: Refusals,
    /// Failures `policy.mode: shadow` let through: what enforcing would have refused.
    shadow: Refusals,
    snapshot: SnapshotRow,
    timeline: Timeline,
}

#[derive(Serialize)]
struct Process {
    version: &'static str,
    started_at: String,
    uptime_seconds: u64,
}

#[derive(Serialize, Default)]
struct Totals {
    requests: u64,
    refused: u64,
    shadowed: u64,
}

#[derive(Serialize)]
struct OperationRow {
    operation: String,
    requests: u64,
    refused: u64,
    shadowed: u64,
    last_minute: LastMinute,
}

#[derive(Serialize)]
struct LastMinute {
    requests: u64,
    per_second: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

impl LastMinute {
    fn of(counts: &Counts, window: Duration) -> Self {
        let requests = counts.total();
        #[allow(clippy::cast_precision_loss)]
        let per_second = requests as f64 / window.as_secs_f64().max(1.0);
        Self {
            requests,
            per_second: round(per_second, 100.0),
            p50_ms: counts.quantile(0.5).map(milliseconds),
            p99_ms: counts.quantile(0.99).map(milliseconds),
        }
    }
}

#[derive(Serialize)]
struct UpstreamRow {
    /// `host:port` only: a URL's user info never reaches the page.
    address: String,
    /// A TCP connection was accepted just now, within `connect_timeout`.
    reachable: bool,
    connect_ms: Option<f64>,
    /// 502 and 504 answers since start: the model refused, reset or timed out.
    errors: u64,
    last_minute: UpstreamMinute,
}

#[derive(Serialize)]
struct UpstreamMinute {
    responses: u64,
    errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// What `/status.json` answers.
pub fn build(board: &Board, serving: Serving) -> StatusReport {
    let now = SystemTime::now();
    let history = lock(&board.history);
    let (window_start, window) = match history.windows.front() {
        Some(window) => (window.at, Some(window)),
        None => (Instant::now(), None),
    };
    let span = window_start.elapsed();
    let (operations, totals) = operation_rows(board, window, span);
    let upstream = upstream_row(board, &serving, window);
    // The chart's last point: the totals just read with the rows, so both agree.
    let live = Tick {
        at: unix_seconds(now),
        requests: totals.requests,
        refused: totals.refused,
        shadowed: totals.shadowed,
    };
    let timeline = timeline(&history, live);
    drop(history);
    StatusReport {
        generated_at: rfc3339(now),
        moat: Process {
            version: env!("CARGO_PKG_VERSION"),
            started_at: rfc3339(board.started),
            uptime_seconds: now
                .duration_since(board.started)
                .unwrap_or_default()
                .as_secs(),
        },
        window_seconds: round(span.as_secs_f64(), 10.0),
        totals,
        operations,
        upstream,
        refusals: Refusals::of(&board.refusals),
        shadow: Refusals::of(&board.shadowed),
        snapshot: snapshot_row(board, serving, now),
        timeline,
    }
}

/// Each operation that had requests, busiest first, and their sums.
fn operation_rows(
    board: &Board,
    window: Option<&Window>,
    span: Duration,
) -> (Vec<OperationRow>, Totals) {
    let mut totals = Totals::default();
    let mut rows: Vec<OperationRow> = board
        .operations()
        .into_iter()
        .map(|(label, stats)| {
            let requests = stats.requests.load(Relaxed);
            let refused = stats.refused.load(Relaxed);
            let shadowed = stats.shadowed.load(Relaxed);
            totals.requests += requests;
            totals.refused += refused;
            totals.shadowed += shadowed;
            let before = window.and_then(|w| w.operations.get(&label));
            let latency = stats.latency.read().since(before);
            OperationRow {
                operation: label.to_string(),
                requests,
                refused,
                shadowed,
                last_minute: LastMinute::of(&latency, span),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.operation.cmp(&b.operation))
    });
    (rows, totals)
}

fn upstream_row(board: &Board, serving: &Serving, window: Option<&Window>) -> UpstreamRow {
    let errors = board.upstream_errors();
    let minute = board.upstream.read().since(window.map(|w| &w.upstream));
    let connect = serving.upstream_connect;
    UpstreamRow {
        address: serving.upstream.clone(),
        reachable: connect.is_some(),
        connect_ms: connect.map(|d| milliseconds(d.as_secs_f64())),
        errors,
        last_minute: UpstreamMinute {
            responses: minute.total(),
            errors: errors.saturating_sub(window.map_or(0, |w| w.upstream_errors)),
            p50_ms: minute.quantile(0.5).map(milliseconds),
            p99_ms: minute.quantile(0.99).map(milliseconds),
        },
    }
}

/// humantime formats only times after 1970 (and panics otherwise): a clock set that far
/// back shows as the epoch rather than failing the page.
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time.max(SystemTime::UNIX_EPOCH)).to_string()
}

fn milliseconds(seconds: f64) -> f64 {
    round(seconds * 1000.0, 1000.0)
}

/// `value` to `1 / per` (two decimals for `per` 100): the page shows no more.
fn round(value: f64, per: f64) -> f64 {
    (value * per).round() / per
}
