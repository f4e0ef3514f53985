//! What each limit decision asks of Redis: one request's buckets and quota, a token
//! reservation across a key's budgets, and its settlement — each one script.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::{MOST_TOKENS, Shared, StoreError, expires_at};
use crate::config::{RateLimit, TokenBudget};
use crate::limit::local::rate_limited;
use crate::limit::{KeyLimits, Window, quota_usage};
use crate::reject::{QuotaUsage, Rejection};

impl Shared {
    /// One request: `client`'s shared bucket and `key`'s bucket and quota — one script on
    /// one Redis; on a cluster, where one script reaches one slot, the client's bucket (its
    /// own slot) first and then the key's. The client's is then spent even when the key's
    /// limits refuse, as the per-process client limit is.
    pub async fn check(
        &self,
        client: Option<(IpAddr, RateLimit)>,
        key: Option<(&str, &KeyLimits)>,
    ) -> Result<Result<Option<QuotaUsage>, Rejection>, StoreError> {
        let keyed = key.is_some_and(|(_, limits)| limits.rate.is_some() || limits.quota.is_some());
        if self.target.is_cluster() && client.is_some() && keyed {
            if let Err(refused) = self.check_in_one(client, None).await? {
                return Ok(Err(refused));
            }
            return self.check_in_one(None, key).await;
        }
        self.check_in_one(client, key).await
    }

    /// The buckets and quota in one script. On a cluster every Redis key carries a hash tag
    /// — the client's address or the key's id in braces — so a key's counters share a slot
    /// (on one Redis the names stay as they were: no counter restarts at an upgrade).
    async fn check_in_one(
        &self,
        client: Option<(IpAddr, RateLimit)>,
        key: Option<(&str, &KeyLimits)>,
    ) -> Result<Result<Option<QuotaUsage>, Rejection>, StoreError> {
        let prefix = &self.config.key_prefix;
        let buckets = [
            client.map(|(ip, limit)| {
                let ip = ip.to_string();
                (format!("{prefix}rate:client:{}", self.tagged(&ip)), limit)
            }),
            key.and_then(|(id, limits)| {
                Some((
                    format!("{prefix}rate:key:{}", self.tagged(id)),
                    limits.rate?,
                ))
            }),
        ];
        let now = SystemTime::now();
        let quota = key.and_then(|(id, limits)| {
            let quota = limits.quota?;
            let window = Window::containing(now, quota.per);
            let counter = format!(
                "{prefix}quota:{}:{}:{}",
                self.tagged(id),
                quota.per.as_str(),
                window.start
            );
            Some((counter, quota, window))
        });
        let mut invocation = self.script.prepare_invoke();
        add_buckets(&mut invocation, &buckets);
        match &quota {
            Some((counter, quota, window)) => {
                invocation
                    .key(counter)
                    .arg(quota.requests)
                    .arg(expires_at(window));
            }
            None => {
                invocation.arg(0).arg(0);
            }
        }
        let (verdict, wait_us, used): (i64, i64, i64) = self.invoke(&invocation).await?;
        let used = u64::try_from(used).unwrap_or(0);
        let usage = quota.map(|(_, quota, window)| quota_usage(&quota, used, window, now));
        Ok(verdict_of(verdict, wait_us, usage))
    }

    /// Reserves up to `want` tokens, at least `at_least`, in each of key `id`'s budgets:
    /// the tokens granted and the counters they were taken from, or the refusal.
    pub async fn reserve_tokens(
        &self,
        id: &str,
        budgets: &[Option<TokenBudget>; 2],
        want: u64,
        at_least: u64,
    ) -> Result<Result<(u64, Vec<String>), Rejection>, StoreError> {
        let prefix = &self.config.key_prefix;
        let now = SystemTime::now();
        let budgets: Vec<(TokenBudget, Window)> = budgets
            .iter()
            .flatten()
            .map(|budget| (*budget, Window::containing(now, budget.per)))
            .collect();
        let counters: Vec<String> = budgets
            .iter()
            .map(|(budget, window)| {
                format!(
                    "{prefix}tokens:{}:{}:{}",
                    self.tagged(id),
                    budget.per.as_str(),
                    window.start
                )
            })
            .collect();
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .arg(want.min(MOST_TOKENS))
            .arg(at_least.min(MOST_TOKENS));
        for ((budget, window), counter) in budgets.iter().zip(&counters) {
            invocation
                .key(counter)
                .arg(budget.tokens)
                .arg(expires_at(window));
        }
        let (granted, short): (u64, usize) = self.invoke(&invocation).await?;
        Ok(match budgets.get(short.wrapping_sub(1)) {
            Some((budget, window)) => Err(crate::limit::tokens::exceeded(budget, *window, now)),
            None => Ok((granted, counters)),
        })
    }

    /// Adds `delta` (negative: returns) to the counters of a reservation. A failure is
    /// logged (throttled) and the reservation stands as it was: a budget that cannot be
    /// settled errs on the side of the budget.
    pub async fn settle(&self, counters: &[String], delta: i64) {
        let mut invocation = self.settle.prepare_invoke();
        invocation.arg(delta);
        for counter in counters {
            invocation.key(counter);
        }
        let _ = self.invoke::<i64>(&invocation).await;
    }
}

/// The buckets' keys and parameters: their count, then per bucket its emission interval
/// and burst tolerance in µs (a request passes while `tat - now <= tolerance`).
impl Shared {
    /// `name` as a hash tag (`{name}`) on a cluster; as it is on one Redis.
    fn tagged<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        if self.target.is_cluster() {
            std::borrow::Cow::Owned(format!("{{{name}}}"))
        } else {
            std::borrow::Cow::Borrowed(name)
        }
    }
}

fn add_buckets(
    invocation: &mut redis::ScriptInvocation<'_>,
    buckets: &[Option<(String, RateLimit)>; 2],
) {
    invocation.arg(buckets.iter().flatten().count());
    for (name, limit) in buckets.iter().flatten() {
        let interval = 1_000_000 / u64::from(limit.per_second.max(1));
        let tolerance = interval * u64::from(limit.burst.saturating_sub(1));
        invocation.key(name).arg(interval.max(1)).arg(tolerance);
    }
}

/// The script's answer as a decision: {0} admitted, {1, wait µs} over a bucket, {2} the
/// quota spent.
fn verdict_of(
    verdict: i64,
    wait_us: i64,
    usage: Option<QuotaUsage>,
) -> Result<Option<QuotaUsage>, Rejection> {
    match (verdict, usage) {
        (2, Some(usage)) => Err(Rejection::QuotaExceeded(usage)),
        (1, usage) => {
            let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
            Err(rate_limited(wait, usage))
        }
        (_, usage) => Ok(usage),
    }
}
