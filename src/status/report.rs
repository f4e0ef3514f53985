//! `GET /status.json`: the board and what the serving snapshot is, as one JSON document —
//! the page's only data source (its fields are listed in the README's "Status page"). Built
//! when asked, from the counters, the sampler's copies and the [`Serving`] facts the admin
//! listener reads off the snapshot; nothing here runs per request.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::histogram::Counts;
use super::recent::RefusalLog;
use super::{Board, History, Refusal, Tick, Window, lock, unix_seconds};

/// The chart: this many bars of [`STEP`] seconds, oldest first.
const BARS: usize = 60;
const STEP: usize = 10;

#[derive(Serialize)]
pub struct Report {
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

#[derive(Serialize)]
struct Refusals {
    by_code: Vec<CodeRow>,
    recent: Vec<RecentRow>,
}

#[derive(Serialize)]
struct CodeRow {
    stage: &'static str,
    code: &'static str,
    status: u16,
    count: u64,
}

#[derive(Serialize)]
struct RecentRow {
    time: String,
    request_id: String,
    operation: String,
    status: u16,
    stage: &'static str,
    code: &'static str,
    key_id: Option<String>,
    subject: Option<String>,
}

#[derive(Serialize)]
struct SnapshotRow {
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

#[derive(Serialize)]
pub(super) struct Timeline {
    step_seconds: usize,
    /// Unix seconds of the newest bar's end.
    end: u64,
    pub(super) requests: Vec<u64>,
    refused: Vec<u64>,
    shadowed: Vec<u64>,
}

/// What `/status.json` answers.
pub fn build(board: &Board, serving: Serving) -> Report {
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
    Report {
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

fn snapshot_row(board: &Board, serving: Serving, now: SystemTime) -> SnapshotRow {
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

impl Refusals {
    /// By label, most frequent first, and the last ones, newest first.
    fn of(log: &RefusalLog) -> Refusals {
        let mut by_code: Vec<CodeRow> = log
            .counts()
            .into_iter()
            .map(|((stage, code, status), count)| CodeRow {
                stage,
                code,
                status,
                count: count.load(Relaxed),
            })
            .collect();
        by_code.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(b.code)));
        Refusals {
            by_code,
            recent: log.latest().iter().map(row).collect(),
        }
    }
}

fn row(refusal: &Refusal) -> RecentRow {
    RecentRow {
        time: humantime::format_rfc3339_millis(refusal.at.max(SystemTime::UNIX_EPOCH)).to_string(),
        request_id: refusal.request_id.as_str().to_owned(),
        operation: refusal.operation.to_string(),
        status: refusal.status,
        stage: refusal.stage,
        code: refusal.code,
        key_id: refusal.key_id.clone(),
        subject: refusal.subject.clone(),
    }
}

/// Bars of [`STEP`] seconds ending now (`live`: the counters as they are), from the
/// per-second totals; before the oldest tick kept, the bars are empty.
pub(super) fn timeline(history: &History, live: Tick) -> Timeline {
    let ticks = &history.ticks;
    // The totals `back` seconds ago: the newest tick taken by then (found by its time, as a
    // sampler that woke late or twice in a second leaves ticks not one second apart), or the
    // oldest kept, the start.
    let at = |back: usize| -> Tick {
        if back == 0 {
            return live;
        }
        let then = live.at.saturating_sub(back as u64);
        let taken = ticks.partition_point(|tick| tick.at <= then);
        ticks.get(taken.saturating_sub(1)).copied().unwrap_or(live)
    };
    let mut timeline = Timeline {
        step_seconds: STEP,
        end: live.at,
        requests: Vec::with_capacity(BARS),
        refused: Vec::with_capacity(BARS),
        shadowed: Vec::with_capacity(BARS),
    };
    for bar in (0..BARS).rev() {
        let (start, end) = (at((bar + 1) * STEP), at(bar * STEP));
        timeline
            .requests
            .push(end.requests.saturating_sub(start.requests));
        timeline
            .refused
            .push(end.refused.saturating_sub(start.refused));
        timeline
            .shadowed
            .push(end.shadowed.saturating_sub(start.shadowed));
    }
    timeline
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
