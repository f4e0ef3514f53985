//! Latency histograms of plain atomic counters: every request records into one without a
//! lock, and the status page's sampler and `/metrics` read them. prometheus-client's
//! `Histogram` takes a mutex per observation and cannot be read back, so the status page
//! could not take its quantiles from it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Four buckets per doubling from 15.625 µs (0.5 ms / 32) to 0.5 ms × 2¹⁷ ≈ 65.5 s, the
/// bounds at 1, 1.25, 1.5 and 1.75 times each power of two: a quantile read from them is
/// within a few percent of the true one, where Prometheus's one bucket per doubling could
/// be off by half. Log-linear rather than geometric so a bucket is found with integer
/// operations (the request path pays for it), and every power of two is a bound, so the
/// Prometheus buckets are exact sums.
const FIRST_NANOS: u64 = 15_625;
/// The finite upper bounds, bucket `i` holding (bound(i − 1), bound(i)].
const BOUNDS: usize = 89;
/// The finite buckets and the last, `+Inf`.
pub const BUCKETS: usize = BOUNDS + 1;
const STEPS_PER_DOUBLING: usize = 4;
/// The bound the Prometheus buckets start at (0.5 ms), as `moat_request_duration_seconds`'.
const PROMETHEUS_FIRST: usize = 5 * STEPS_PER_DOUBLING;

/// The upper bound of bucket `index`, in seconds (`+Inf` for the last): FIRST × 2^k ×
/// (4 + j) / 4 for `index` = 4k + j.
pub fn bound(index: usize) -> f64 {
    if index >= BOUNDS {
        return f64::INFINITY;
    }
    let (doublings, quarter) = (index / STEPS_PER_DOUBLING, index % STEPS_PER_DOUBLING);
    // Below 2^53: exact in an f64, so a power-of-two bound divides to the same double as
    // prometheus-client's `exponential_buckets(0.0005, 2.0, …)` makes.
    let quarters = (FIRST_NANOS * (4 + quarter as u64)) << doublings;
    #[allow(clippy::cast_precision_loss)]
    let seconds = quarters as f64 / 4e9;
    seconds
}

/// The bucket a duration of `nanos` falls in: the first whose bound is not below it.
fn index(nanos: u64) -> usize {
    // The duration in quarters of the first bound, rounded up: bucket 4k + j has the bound
    // 2^k × (4 + j) in these units.
    let quarters = nanos.saturating_mul(4).div_ceil(FIRST_NANOS);
    if quarters <= 4 {
        return 0;
    }
    let doublings = u64::from(quarters.ilog2() - 2);
    let index = 4 * doublings + quarters.div_ceil(1 << doublings) - 4;
    usize::try_from(index).map_or(BOUNDS, |index| index.min(BOUNDS))
}

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    /// Microseconds: 2⁶⁴ of them is 584,000 years of summed latency, where nanoseconds
    /// would wrap after 213 days of 1,000 streams always open.
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.read().total())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    pub fn record(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[index(nanos)].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(nanos / 1000, Relaxed);
    }

    /// The counts now. Taken bucket by bucket while requests record: a copy may lag by the
    /// requests recorded during it, never more.
    pub fn read(&self) -> Counts {
        Counts {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_micros: self.sum_micros.load(Relaxed),
        }
    }
}

/// A copy of a histogram's counters: the basis of a window (`since`) and of its quantiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    buckets: [u64; BUCKETS],
    sum_micros: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS],
            sum_micros: 0,
        }
    }
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What was recorded after `earlier`, a copy of the same histogram (`None`: since
    /// the start).
    pub fn since(self, earlier: Option<&Counts>) -> Counts {
        let Some(earlier) = earlier else {
            return self;
        };
        Counts {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_micros: self.sum_micros.saturating_sub(earlier.sum_micros),
        }
    }

    /// Adds another histogram's counts to these (`/metrics`' total over all operations).
    pub fn add(&mut self, other: &Counts) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    pub fn sum_seconds(&self) -> f64 {
        Duration::from_micros(self.sum_micros).as_secs_f64()
    }

    /// The `q` quantile in seconds (`q` in 0..=1), interpolated inside its bucket as
    /// Prometheus's `histogram_quantile` does; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.buckets.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let reached = (below + count) as f64;
            if count > 0 && reached >= rank {
                if i >= BOUNDS {
                    // Above the last bound: all that can be said is "at least".
                    return Some(bound(BOUNDS - 1));
                }
                let lower = if i == 0 { 0.0 } else { bound(i - 1) };
                #[allow(clippy::cast_precision_loss)]
                let within = (rank - below as f64) / count as f64;
                return Some(lower + (bound(i) - lower) * within);
            }
            below += count;
        }
        Some(bound(BOUNDS - 1))
    }

    /// `(upper bound, count)` pairs at one bound per doubling from 0.5 ms, the buckets
    /// `moat_request_duration_seconds` has (exact: each is a fine bound too). Each count is
    /// its own bucket's: prometheus-client's encoder makes them cumulative.
    pub fn prometheus_buckets(&self) -> Vec<(f64, u64)> {
        let mut pending = 0;
        let mut out = Vec::with_capacity(19);
        for (i, &count) in self.buckets.iter().enumerate() {
            pending += count;
            let exported =
                i >= PROMETHEUS_FIRST && (i - PROMETHEUS_FIRST) % STEPS_PER_DOUBLING == 0;
            if exported || i == BOUNDS {
                out.push((bound(i), std::mem::take(&mut pending)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(millis: &[f64]) -> Counts {
        let histogram = Histogram::default();
        for &ms in millis {
            histogram.record(Duration::from_secs_f64(ms / 1000.0));
        }
        histogram.read()
    }

    #[test]
    fn a_value_on_a_bound_falls_in_that_bounds_bucket() {
        assert_eq!(bound(0), 15.625e-6);
        assert_eq!(bound(1), 15.625e-6 * 1.25);
        assert_eq!(bound(4), 31.25e-6);
        for i in [0, 1, 2, 3, 4, 5, 20, 47, 88] {
            // The bound in whole nanoseconds (19531.25 ns is in bucket 1, 19532 is not).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let nanos = (bound(i) * 1e9).floor() as u64;
            assert_eq!(index(nanos), i, "bound {i}");
            assert_eq!(index(nanos + 1), i + 1, "just above bound {i}");
        }
        assert_eq!(index(0), 0);
        assert_eq!(index(u64::MAX), BOUNDS, "beyond the last bound: +Inf");
        assert_eq!(index(66_000_000_000), BOUNDS);
    }

    #[test]
    fn quantiles_land_within_a_bucket_of_the_true_value() {
        let millis: Vec<f64> = (1..=1000).map(f64::from).collect();
        let counts = counts_of(&millis);
        for (q, truth) in [(0.5, 0.500), (0.9, 0.900), (0.99, 0.990)] {
            let estimate = counts.quantile(q).unwrap();
            assert!(
                (estimate - truth).abs() / truth < 0.1,
                "q{q}: {estimate} vs {truth}"
            );
        }
        assert_eq!(Counts::default().quantile(0.5), None);
    }

    #[test]
    fn a_window_counts_only_what_came_after_its_start() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_secs(5));
        let start = histogram.read();
        histogram.record(Duration::from_millis(2));
        histogram.record(Duration::from_millis(2));
        let window = histogram.read().since(Some(&start));
        assert_eq!(window.total(), 2);
        let p99 = window.quantile(0.99).unwrap();
        assert!((0.0015..=0.0025).contains(&p99), "{p99}");
        assert!((window.sum_seconds() - 0.004).abs() < 1e-9);
    }

    #[test]
    fn prometheus_buckets_are_the_request_duration_buckets() {
        let counts = counts_of(&[0.01, 0.7, 3.0, 100_000.0]);
        let buckets = counts.prometheus_buckets();
        let bounds: Vec<f64> = buckets.iter().map(|(b, _)| *b).collect();
        let mut expected: Vec<f64> = (0..18).map(|k| 0.0005 * 2f64.powi(k)).collect();
        expected.push(f64::INFINITY);
        for (got, want) in bounds.iter().zip(&expected) {
            assert!(
                got == want || (got - want).abs() <= want * 1e-12,
                "{got} vs {want}"
            );
        }
        assert_eq!(bounds.len(), expected.len());
        let at = |bound: f64| {
            buckets
                .iter()
                .find(|(b, _)| (b - bound).abs() <= bound * 1e-12)
                .unwrap()
                .1
        };
        assert_eq!(at(0.0005), 1, "0.01 ms, with everything below 0.5 ms");
        assert_eq!(at(0.001), 1, "0.7 ms");
        assert_eq!(at(0.002), 0);
        assert_eq!(at(0.004), 1, "3 ms");
        assert_eq!(buckets.last().unwrap().1, 1, "100 s: above the last bound");
        let total: u64 = buckets.iter().map(|(_, count)| count).sum();
        assert_eq!(total, counts.total());
    }
}
