//! The in-process limiter: GCRA buckets (the `governor` crate) per client address and per
//! key, and per-key quota counters. It is the whole store with `limits.store: memory`, the
//! per-replica guard before credentials are checked, and the fallback of `on_error: local`.
//!
//! A reload keeps the buckets of every limit whose definition it did not change, and a
//! quota's count while its period is unchanged (raising a daily quota at noon does not hand
//! out a fresh day): the state is shared with the previous snapshot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota as Gcra};

use super::tokens::{LocalBudgets, Streams};
use super::{KeyLimits, Window, quota_usage};
use crate::config::{Quota, RateLimit};
use crate::reject::QuotaUsage;
use crate::reject::Rejection;

pub struct Local {
    client: Option<Limiter<DefaultKeyedRateLimiter<IpAddr>>>,
    keys: HashMap<String, KeyLimiter>,
}

/// A limiter and the definition it enforces (what a reload compares).
struct Limiter<L> {
    limit: RateLimit,
    buckets: Arc<L>,
}

impl<L> Limiter<L> {
    /// The previous limiter when it enforced the same definition, else a fresh one built
    /// from the limit's GCRA quota; the problem when the limit is not one.
    fn build(
        limit: RateLimit,
        previous: Option<&Limiter<L>>,
        new: impl FnOnce(Gcra) -> L,
    ) -> Result<Self, String> {
        let quota = gcra(&limit)?;
        let buckets = match previous {
            Some(previous) if previous.limit == limit => previous.buckets.clone(),
            _ => Arc::new(new(quota)),
        };
        Ok(Limiter { limit, buckets })
    }
}

/// One key's bucket, quota counter, token budgets and open streams.
pub struct KeyLimiter {
    pub limits: KeyLimits,
    rate: Option<Limiter<DefaultDirectRateLimiter>>,
    quota: Option<(Quota, Arc<Mutex<Count>>)>,
    pub budgets: LocalBudgets,
    pub streams: Streams,
}

/// Requests counted in the window that starts at `window_start`.
#[derive(Default)]
struct Count {
    window_start: i64,
    used: u64,
}

pub fn gcra(limit: &RateLimit) -> Result<Gcra, String> {
    let per_second = NonZeroU32::new(limit.per_second).ok_or("`per_second` must be at least 1")?;
    let burst = NonZeroU32::new(limit.burst).ok_or("`burst` must be at least 1")?;
    Ok(Gcra::per_second(per_second).allow_burst(burst))
}

impl Local {
    /// `keys`: (key id, its limits) for every key record that has one. Limits defined as in
    /// `previous` keep its state.
    pub fn new(
        client: Option<&RateLimit>,
        keys: &[(String, KeyLimits)],
        previous: Option<&Local>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let client = client.and_then(|limit| {
            let before = previous.and_then(|p| p.client.as_ref());
            let built = Limiter::build(*limit, before, DefaultKeyedRateLimiter::keyed);
            built
                .map_err(|problem| problems.push(format!("policy.client_rate_limit: {problem}")))
                .ok()
        });
        let mut limiters = HashMap::new();
        for (id, limits) in keys {
            let before = previous.and_then(|p| p.keys.get(id));
            let limiter = KeyLimiter::new(id, limits, before, &mut problems);
            limiters.insert(id.clone(), limiter);
        }
        if problems.is_empty() {
            Ok(Self {
                client,
                keys: limiters,
            })
        } else {
            Err(problems)
        }
    }

    /// One request from `client`.
    pub fn check_client(&self, client: IpAddr) -> Result<(), Rejection> {
        match &self.client {
            Some(limiter) => limiter.buckets.check_key(&client).map_err(|not_until| {
                rate_limited(
                    not_until.wait_time_from(DefaultClock::default().now()),
                    None,
                )
            }),
            None => Ok(()),
        }
    }

    /// The limiter of key `id`, if its record sets a limit.
    pub fn key(&self, id: &str) -> Option<&KeyLimiter> {
        self.keys.get(id)
    }

    /// Forgets clients that have not been seen for a while (call periodically).
    pub fn retain_recent(&self) {
        if let Some(limiter) = &self.client {
            limiter.buckets.retain_recent();
            limiter.buckets.shrink_to_fit();
        }
    }
}

impl KeyLimiter {
    /// Key `id`'s limiter over `limits`, keeping what `before` (the previous snapshot's)
    /// counted where the definition is unchanged; each problem of the record into `problems`.
    fn new(
        id: &str,
        limits: &KeyLimits,
        before: Option<&KeyLimiter>,
        problems: &mut Vec<String>,
    ) -> KeyLimiter {
        let rate = limits.rate.and_then(|limit| {
            let previous = before.and_then(|b| b.rate.as_ref());
            let built = Limiter::build(limit, previous, DefaultDirectRateLimiter::direct);
            built
                .map_err(|problem| problems.push(format!("key `{id}`: rate_limit: {problem}")))
                .ok()
        });
        problems.extend(record_problems(id, limits));
        KeyLimiter {
            limits: *limits,
            rate,
            quota: limits
                .quota
                .filter(|quota| quota.requests > 0)
                .map(|quota| (quota, kept_count(&quota, before))),
            budgets: LocalBudgets::new(&limits.tokens, before.map(|b| &b.budgets)),
            streams: Streams::carry(before.map(|b| &b.streams)),
        }
    }

    /// One request with this key: its quota first (a spent quota is the answer whatever
    /// the bucket says), then its bucket; the quota counts it only if both let it pass.
    pub fn check(&self, now: SystemTime) -> Result<Option<QuotaUsage>, Rejection> {
        let Some((quota, count)) = &self.quota else {
            self.check_rate(None)?;
            return Ok(None);
        };
        let window = Window::containing(now, quota.per);
        // Held for two integer updates and a lock-free bucket check; never across an await.
        let mut count = count.lock().unwrap_or_else(PoisonError::into_inner);
        if count.window_start != window.start {
            *count = Count {
                window_start: window.start,
                used: 0,
            };
        }
        let usage = |used: u64| quota_usage(quota, used, window, now);
        if count.used >= quota.requests {
            return Err(Rejection::QuotaExceeded(usage(count.used)));
        }
        self.check_rate(Some(usage(count.used)))?;
        count.used += 1;
        Ok(Some(usage(count.used)))
    }

    /// The key's bucket; its refusal carries `quota`, what the quota stands at (unspent).
    fn check_rate(&self, quota: Option<QuotaUsage>) -> Result<(), Rejection> {
        match &self.rate {
            Some(limiter) => limiter.buckets.check().map_err(|not_until| {
                rate_limited(
                    not_until.wait_time_from(DefaultClock::default().now()),
                    quota,
                )
            }),
            None => Ok(()),
        }
    }
}

/// The 429 of a bucket that refused, `wait` before it admits again; `quota`: where the
/// key's quota stands, for its `RateLimit-*` fields.
/// The quota's count carried over from `before` while its period is unchanged (raising a
/// daily quota at noon does not hand out a fresh day), else a fresh one.
fn kept_count(quota: &Quota, before: Option<&KeyLimiter>) -> Arc<Mutex<Count>> {
    before
        .and_then(|b| b.quota.as_ref())
        .filter(|(old, _)| old.per == quota.per)
        .map_or_else(Arc::default, |(_, count)| count.clone())
}

/// What a key record sets that admits nothing: a quota, budget or stream cap of zero.
fn record_problems(id: &str, limits: &KeyLimits) -> Vec<String> {
    let mut problems = Vec::new();
    if limits.quota.is_some_and(|quota| quota.requests == 0) {
        problems.push(format!("key `{id}`: quota: `requests` must be at least 1"));
    }
    for _ in limits
        .tokens
        .iter()
        .flatten()
        .filter(|budget| budget.tokens == 0)
    {
        problems.push(format!(
            "key `{id}`: a token budget of 0 admits nothing: remove it or raise it"
        ));
    }
    if limits.streams == Some(0) {
        problems.push(format!(
            "key `{id}`: max_concurrent_streams must be at least 1"
        ));
    }
    problems
}

pub fn rate_limited(wait: std::time::Duration, quota: Option<QuotaUsage>) -> Rejection {
    Rejection::RateLimited {
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        quota,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Period;
    use std::time::{Duration, UNIX_EPOCH};

    fn rate(limit: RateLimit) -> KeyLimits {
        KeyLimits {
            rate: Some(limit),
            ..KeyLimits::default()
        }
    }

    fn check_key(limits: &Local, id: &str) -> Result<(), Rejection> {
        limits
            .key(id)
            .map_or(Ok(()), |l| l.check(SystemTime::now()).map(drop))
    }

    #[test]
    fn a_burst_passes_then_the_next_request_must_wait() {
        let limit = RateLimit {
            per_second: 1,
            burst: 3,
        };
        let limits = Local::new(Some(&limit), &[("k".into(), rate(limit))], None).unwrap();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.check_client(client), Ok(()));
        }
        assert_eq!(
            limits.check_client(client),
            Err(Rejection::RateLimited {
                retry_after: 1,
                quota: None
            })
        );
        // Another client has its own budget.
        assert_eq!(limits.check_client("192.0.2.2".parse().unwrap()), Ok(()));
        for _ in 0..3 {
            assert_eq!(check_key(&limits, "k"), Ok(()));
        }
        assert!(check_key(&limits, "k").is_err());
        assert_eq!(check_key(&limits, "unlimited"), Ok(()));
    }

    #[test]
    fn a_rebuild_keeps_the_buckets_of_unchanged_limits_only() {
        let limit = RateLimit {
            per_second: 1,
            burst: 2,
        };
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let keys = [("a".to_owned(), rate(limit)), ("b".to_owned(), rate(limit))];
        let before = Local::new(Some(&limit), &keys, None).unwrap();
        for _ in 0..2 {
            assert_eq!(before.check_client(client), Ok(()));
            assert_eq!(check_key(&before, "a"), Ok(()));
            assert_eq!(check_key(&before, "b"), Ok(()));
        }
        let raised = RateLimit {
            per_second: 1,
            burst: 5,
        };
        let keys = [
            ("a".to_owned(), rate(limit)),
            ("b".to_owned(), rate(raised)),
        ];
        let after = Local::new(Some(&limit), &keys, Some(&before)).unwrap();
        assert!(
            after.check_client(client).is_err(),
            "an exhausted client got a fresh burst"
        );
        assert!(
            check_key(&after, "a").is_err(),
            "an exhausted key got a fresh burst"
        );
        assert_eq!(
            check_key(&after, "b"),
            Ok(()),
            "a changed limit starts afresh"
        );
        // The buckets are shared: the old snapshot's in-flight requests count too.
        assert!(check_key(&before, "a").is_err());
        let tighter = RateLimit {
            per_second: 1,
            burst: 1,
        };
        let reset = Local::new(Some(&tighter), &[], Some(&after)).unwrap();
        assert_eq!(reset.check_client(client), Ok(()));
    }

    #[test]
    fn a_quota_counts_admitted_requests_per_window_and_survives_a_raise() {
        let quota = |requests| KeyLimits {
            quota: Some(Quota {
                requests,
                per: Period::Day,
            }),
            ..KeyLimits::default()
        };
        // 2026-12-03T12:00:00Z: twelve hours left in the day.
        let noon = UNIX_EPOCH + Duration::from_secs(1_796_299_200);
        let limits = Local::new(None, &[("q".into(), quota(2))], None).unwrap();
        let key = limits.key("q").unwrap();
        let first = key.check(noon).unwrap().unwrap();
        assert_eq!((first.limit, first.remaining, first.reset), (2, 1, 43_200));
        assert_eq!(key.check(noon).unwrap().unwrap().remaining, 0);
        let Err(Rejection::QuotaExceeded(spent)) = key.check(noon) else {
            panic!("a third request passed a quota of two");
        };
        assert_eq!(
            (spent.remaining, spent.reset, spent.window),
            (0, 43_200, 86_400)
        );
        // Raised at noon: the two already counted still count.
        let raised = Local::new(None, &[("q".into(), quota(3))], Some(&limits)).unwrap();
        let key = raised.key("q").unwrap();
        assert_eq!(key.check(noon).unwrap().unwrap().remaining, 0);
        assert!(key.check(noon).is_err());
        // The next day starts afresh.
        let tomorrow = noon + Duration::from_secs(86_400);
        assert_eq!(key.check(tomorrow).unwrap().unwrap().remaining, 2);
    }

    #[test]
    fn a_request_over_the_bucket_does_not_spend_quota() {
        let limits = KeyLimits {
            rate: Some(RateLimit {
                per_second: 1,
                burst: 1,
            }),
            quota: Some(Quota {
                requests: 10,
                per: Period::Hour,
            }),
            ..KeyLimits::default()
        };
        let local = Local::new(None, &[("k".into(), limits)], None).unwrap();
        let key = local.key("k").unwrap();
        let now = SystemTime::now();
        assert_eq!(key.check(now).unwrap().unwrap().remaining, 9);
        assert!(matches!(key.check(now), Err(Rejection::RateLimited { .. })));
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(key.check(now).unwrap().unwrap().remaining, 8);
    }

    #[test]
    fn zero_is_not_a_limit() {
        let zero = RateLimit {
            per_second: 0,
            burst: 1,
        };
        assert!(Local::new(Some(&zero), &[], None).is_err());
        let no_requests = KeyLimits {
            quota: Some(Quota {
                requests: 0,
                per: Period::Month,
            }),
            ..KeyLimits::default()
        };
        assert!(Local::new(None, &[("k".into(), no_requests)], None).is_err());
    }
}
