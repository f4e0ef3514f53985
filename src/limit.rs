//! Stage 5, limit: GCRA rate limits (the `governor` crate) per API key (the record's
//! `rate_limit`) and per client address (`policy.client_rate_limit`). The per-client limit
//! is taken before credentials are checked, so it also bounds failed attempts: one client
//! cannot keep the argon2 pool busy with wrong keys.
//!
//! A reload keeps the buckets of every limit whose definition it did not change: the
//! limiters are shared with the previous snapshot, so an exhausted client stays limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimit;
use crate::reject::Rejection;

pub struct RateLimits {
    client: Option<Limiter<DefaultKeyedRateLimiter<IpAddr>>>,
    keys: HashMap<String, Limiter<DefaultDirectRateLimiter>>,
}

/// A limiter and the definition it enforces (what a reload compares).
struct Limiter<L> {
    limit: RateLimit,
    buckets: Arc<L>,
}

impl<L> Limiter<L> {
    /// The previous limiter when it enforced the same definition, else a fresh one.
    fn reuse_or(limit: RateLimit, previous: Option<&Limiter<L>>, new: impl FnOnce() -> L) -> Self {
        let buckets = match previous {
            Some(previous) if previous.limit == limit => previous.buckets.clone(),
            _ => Arc::new(new()),
        };
        Limiter { limit, buckets }
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("client", &self.client.is_some())
            .field("keys", &self.keys.len())
            .finish()
    }
}

pub fn quota(limit: &RateLimit) -> Result<Quota, String> {
    let per_second = NonZeroU32::new(limit.per_second).ok_or("`per_second` must be at least 1")?;
    let burst = NonZeroU32::new(limit.burst).ok_or("`burst` must be at least 1")?;
    Ok(Quota::per_second(per_second).allow_burst(burst))
}

impl RateLimits {
    /// `keys`: (key id, its limit) for every key record that has one. Limits defined as in
    /// `previous` keep its buckets.
    pub fn new(
        client: Option<&RateLimit>,
        keys: &[(String, RateLimit)],
        previous: Option<&RateLimits>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let client = match client.map(|limit| (limit, quota(limit))) {
            Some((limit, Ok(quota))) => Some(Limiter::reuse_or(
                *limit,
                previous.and_then(|p| p.client.as_ref()),
                || DefaultKeyedRateLimiter::keyed(quota),
            )),
            Some((_, Err(problem))) => {
                problems.push(format!("policy.client_rate_limit: {problem}"));
                None
            }
            None => None,
        };
        let mut limiters = HashMap::new();
        for (id, limit) in keys {
            match quota(limit) {
                Ok(quota) => {
                    let before = previous.and_then(|p| p.keys.get(id));
                    let limiter = Limiter::reuse_or(*limit, before, || {
                        DefaultDirectRateLimiter::direct(quota)
                    });
                    limiters.insert(id.clone(), limiter);
                }
                Err(problem) => problems.push(format!("key `{id}`: rate_limit: {problem}")),
            }
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
                rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
            }),
            None => Ok(()),
        }
    }

    /// One request made with API key `id`.
    pub fn check_key(&self, id: &str) -> Result<(), Rejection> {
        match self.keys.get(id) {
            Some(limiter) => limiter.buckets.check().map_err(|not_until| {
                rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
            }),
            None => Ok(()),
        }
    }

    /// Forgets clients that have not been seen for a while (call periodically).
    pub fn retain_recent(&self) {
        if let Some(limiter) = &self.client {
            limiter.buckets.retain_recent();
            limiter.buckets.shrink_to_fit();
        }
    }
}

fn rate_limited(wait: std::time::Duration) -> Rejection {
    Rejection::RateLimited {
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_next_request_must_wait() {
        let limit = RateLimit {
            per_second: 1,
            burst: 3,
        };
        let limits = RateLimits::new(Some(&limit), &[("k".into(), limit)], None).unwrap();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limits.check_client(client), Ok(()));
        }
        assert_eq!(
            limits.check_client(client),
            Err(Rejection::RateLimited { retry_after: 1 })
        );
        // Another client has its own budget.
        assert_eq!(limits.check_client("192.0.2.2".parse().unwrap()), Ok(()));
        for _ in 0..3 {
            assert_eq!(limits.check_key("k"), Ok(()));
        }
        assert!(limits.check_key("k").is_err());
        assert_eq!(limits.check_key("unlimited"), Ok(()));
    }

    #[test]
    fn a_rebuild_keeps_the_buckets_of_unchanged_limits_only() {
        let limit = RateLimit {
            per_second: 1,
            burst: 2,
        };
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let keys = [("a".to_owned(), limit), ("b".to_owned(), limit)];
        let before = RateLimits::new(Some(&limit), &keys, None).unwrap();
        for _ in 0..2 {
            assert_eq!(before.check_client(client), Ok(()));
            assert_eq!(before.check_key("a"), Ok(()));
            assert_eq!(before.check_key("b"), Ok(()));
        }
        let raised = RateLimit {
            per_second: 1,
            burst: 5,
        };
        let keys = [("a".to_owned(), limit), ("b".to_owned(), raised)];
        let after = RateLimits::new(Some(&limit), &keys, Some(&before)).unwrap();
        assert!(
            after.check_client(client).is_err(),
            "an exhausted client got a fresh burst"
        );
        assert!(
            after.check_key("a").is_err(),
            "an exhausted key got a fresh burst"
        );
        assert_eq!(
            after.check_key("b"),
            Ok(()),
            "a changed limit starts afresh"
        );
        // The buckets are shared: the old snapshot's in-flight requests count too.
        assert!(before.check_key("a").is_err());
        let tighter = RateLimit {
            per_second: 1,
            burst: 1,
        };
        let reset = RateLimits::new(Some(&tighter), &[], Some(&after)).unwrap();
        assert_eq!(reset.check_client(client), Ok(()));
    }

    #[test]
    fn zero_is_not_a_limit() {
        assert!(
            RateLimits::new(
                Some(&RateLimit {
                    per_second: 0,
                    burst: 1
                }),
                &[],
                None
            )
            .is_err()
        );
    }
}
