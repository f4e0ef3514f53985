//! The status board behind the admin listener's page (`GET /`, `GET /status.json`): what
//! moat answered, by operation, and what it refused, by stage and code, with the last
//! refusals — kept beside the Prometheus counters in [`crate::metrics::Metrics`].
//!
//! A request only adds to atomic counters (and, when refused, pushes one entry onto its own
//! thread's bounded ring); everything the page shows over time — rates, quantiles over the
//! last minute, the ten-minute chart — comes from copies a sampler takes once a second, off
//! the request path. Reading the page never touches a lock a request takes, but for the
//! brief one on each thread's ring while it is copied.

pub(crate) mod histogram;
pub(crate) mod page;
mod recent;
pub(crate) mod report;
mod table;

use self::table::{Table, lock, push_bounded, unix_seconds};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use self::histogram::{Counts, Histogram};
pub use self::recent::Refusal;
use self::recent::RefusalLog;
use crate::ids::OperationLabel;

/// Ticks kept for the chart: ten minutes of one-second totals (and the one before them).
const TICKS: usize = 601;
/// Copies of the per-operation counters, one every [`WINDOW_STEP`]: the "last minute" is
/// measured from the oldest, 60–70 s back.
const WINDOWS: usize = 7;
const WINDOW_STEP: Duration = Duration::from_secs(10);
const SLACK: Duration = Duration::from_millis(500);

/// A refusal's labels: (stage, code, status).
pub type RefusalKey = (&'static str, &'static str, u16);

#[derive(Debug, Default)]
pub struct OperationStats {
    pub requests: AtomicU64,
    /// Requests moat refused (a `Rejection`), at any stage.
    pub refused: AtomicU64,
    /// Requests forwarded with a failure `policy.mode: shadow` let through.
    pub shadowed: AtomicU64,
    /// Request head to the end of the response.
    pub latency: Histogram,
}

/// One request's end, as the access record reports it.
pub struct Outcome<'a> {
    pub operation: &'a OperationLabel,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    pub refused: bool,
    pub shadowed: bool,
}

pub struct Board {
    operations: Table<OperationLabel, OperationStats>,
    refusals: RefusalLog,
    /// Failures `policy.mode: shadow` let through: what enforcing would have refused.
    shadowed: RefusalLog,
    /// Sending a request upstream to its response head.
    pub upstream: Histogram,
    history: Mutex<History>,
    reloads: Mutex<Reloads>,
    pub started: SystemTime,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("operations", &self.operations.entries().len())
            .finish_non_exhaustive()
    }
}

impl Default for Board {
    fn default() -> Self {
        let now = SystemTime::now();
        let board = Self {
            operations: Table::default(),
            refusals: RefusalLog::default(),
            shadowed: RefusalLog::default(),
            upstream: Histogram::default(),
            history: Mutex::default(),
            reloads: Mutex::new(Reloads {
                serving_since: now,
                last: None,
                last_failure: None,
            }),
            started: now,
        };
        // The zero point every window and the chart start from.
        board.sample();
        board
    }
}

impl Board {
    /// Counts one answered request (every request ends here exactly once).
    pub fn record(&self, outcome: &Outcome<'_>) {
        self.operations.with(outcome.operation, |stats| {
            stats.requests.fetch_add(1, Relaxed);
            stats.latency.record(outcome.duration);
            if outcome.refused {
                stats.refused.fetch_add(1, Relaxed);
            }
            if outcome.shadowed {
                stats.shadowed.fetch_add(1, Relaxed);
            }
        });
        if let Some(upstream) = outcome.upstream {
            self.upstream.record(upstream);
        }
    }

    /// Counts a refusal by its labels and keeps it among the last ones.
    pub fn refused(&self, refusal: Refusal) {
        self.refusals.push(refusal);
    }

    /// The same, for a failure `policy.mode: shadow` let through.
    pub fn shadowed(&self, refusal: Refusal) {
        self.shadowed.push(refusal);
    }

    /// Refusals counted by (stage, code), summed over statuses: what `/metrics` exports.
    pub fn refusal_counts(&self) -> Vec<((&'static str, &'static str), u64)> {
        by_stage_and_code(&self.refusals)
    }

    /// The same, for failures shadow mode let through.
    pub fn shadow_counts(&self) -> Vec<((&'static str, &'static str), u64)> {
        by_stage_and_code(&self.shadowed)
    }

    pub fn reloaded(&self) {
        let now = SystemTime::now();
        let mut reloads = lock(&self.reloads);
        reloads.serving_since = now;
        reloads.last = Some((now, true));
    }

    /// A reload that kept the old snapshot, with what was wrong (the messages the log has:
    /// they name files and keys, never a secret's value).
    pub fn reload_failed(&self, problems: Vec<String>) {
        let now = SystemTime::now();
        let mut reloads = lock(&self.reloads);
        reloads.last = Some((now, false));
        reloads.last_failure = Some((now, problems));
    }

    /// Each operation's stats, for `/metrics` and the page.
    pub fn operations(&self) -> Vec<(OperationLabel, Arc<OperationStats>)> {
        self.operations.entries()
    }

    /// Takes this second's copies: run once a second (see [`sample_every_second`]).
    pub fn sample(&self) {
        self.sample_at(Instant::now(), SystemTime::now());
    }

    fn sample_at(&self, now: Instant, wall: SystemTime) {
        let operations = self.operations.entries();
        let tick = Tick::of(&operations, wall);
        let mut history = lock(&self.history);
        let due = history
            .windows
            .back()
            // Half a second of slack: the sampler wakes a little late or early, and a copy
            // 9.99 s after the last must not wait for the next second.
            .is_none_or(|last| now.duration_since(last.at) >= WINDOW_STEP - SLACK);
        if due {
            let window = Window {
                at: now,
                operations: operations
                    .iter()
                    .map(|(label, stats)| (label.clone(), stats.latency.read()))
                    .collect(),
                upstream: self.upstream.read(),
                upstream_errors: self.upstream_errors(),
            };
            push_bounded(&mut history.windows, window, WINDOWS);
        }
        push_bounded(&mut history.ticks, tick, TICKS);
    }

    /// Refusals of the forward stage (502, 504): the upstream failed moat.
    fn upstream_errors(&self) -> u64 {
        self.refusals
            .counts()
            .iter()
            .filter(|((stage, _, _), _)| *stage == "forward")
            .map(|(_, count)| count.load(Relaxed))
            .sum()
    }
}

/// Samples the board once a second until the process ends.
pub async fn sample_every_second(board: Arc<Board>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        board.sample();
    }
}

/// One second's running totals over every operation.
#[derive(Clone, Copy, Debug, Default)]
struct Tick {
    at: u64,
    requests: u64,
    refused: u64,
    shadowed: u64,
}

impl Tick {
    /// The totals of `operations` now, stamped `wall`.
    fn of(operations: &[(OperationLabel, Arc<OperationStats>)], wall: SystemTime) -> Tick {
        let mut tick = Tick {
            at: unix_seconds(wall),
            ..Tick::default()
        };
        for (_, stats) in operations {
            tick.requests += stats.requests.load(Relaxed);
            tick.refused += stats.refused.load(Relaxed);
            tick.shadowed += stats.shadowed.load(Relaxed);
        }
        tick
    }
}

/// The counters as they were at `at`: where "the last minute" starts.
struct Window {
    at: Instant,
    /// Each operation's latency counts (their total is its requests).
    operations: HashMap<OperationLabel, Counts>,
    upstream: Counts,
    upstream_errors: u64,
}

#[derive(Default)]
struct History {
    ticks: VecDeque<Tick>,
    windows: VecDeque<Window>,
}

struct Reloads {
    /// When the serving snapshot was swapped in (the start, before any reload).
    serving_since: SystemTime,
    /// The last reload's time and whether it was swapped in.
    last: Option<(SystemTime, bool)>,
    last_failure: Option<(SystemTime, Vec<String>)>,
}

fn by_stage_and_code(log: &RefusalLog) -> Vec<((&'static str, &'static str), u64)> {
    let mut counts: std::collections::BTreeMap<(&'static str, &'static str), u64> =
        std::collections::BTreeMap::new();
    for ((stage, code, _), count) in log.counts() {
        *counts.entry((stage, code)).or_default() += count.load(Relaxed);
    }
    counts.into_iter().collect()
}

#[cfg(test)]
mod tests;
