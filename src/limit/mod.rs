//! Stage 5, limit: GCRA rate limits per API key (the record's `rate_limit`) and per client
//! address (`policy.client_rate_limit`), and per-key quotas (the record's `quota`), counted
//! in this process ([`local`]) or in Redis for every replica ([`shared`]).
//!
//! The per-client limit is first taken in this process before credentials are checked, so
//! it also bounds failed attempts without a round trip: one client cannot keep the argon2
//! pool busy with wrong keys. After authentication, [`RateLimits::check`] takes the key's
//! limits — and with Redis the shared per-client limit too — in at most one round trip.

mod local;
mod shared;
mod tokens;
mod window;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use self::local::{KeyLimiter, Local};
use self::shared::Shared;
pub use self::tokens::{Reservation, StreamSlot};
pub use self::window::{Window, quota_usage, unix_ms};
use crate::config::{LimitStore, OnError, Quota, RateLimit, TokenBudget};
use crate::metrics::{LimitDecisionLabels, Metrics};
use crate::reject::{QuotaUsage, Rejection};

/// A key's limits, as its record defines them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub rate: Option<RateLimit>,
    pub quota: Option<Quota>,
    /// `token_budget` and `tokens_per_minute` (LLM operations only).
    pub tokens: [Option<TokenBudget>; 2],
    /// `max_concurrent_streams` (LLM operations only).
    pub streams: Option<u32>,
}

impl KeyLimits {
    /// Whether the key's requests are counted at stage 5 (a bucket or a quota); a key whose
    /// only limits are LLM ones costs those requests nothing — no lock, no round trip.
    pub fn counts_requests(&self) -> bool {
        self.rate.is_some() || self.quota.is_some()
    }
}

pub struct RateLimits {
    client: Option<RateLimit>,
    local: Local,
    /// Shared with the previous snapshot while `limits.store` is unchanged: a reload keeps
    /// the Redis connections.
    shared: Option<Arc<Shared>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("client", &self.client)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// `keys`: (key id, its limits) for every key record that sets one. Limits defined as
    /// in `previous` keep its state.
    pub fn new(
        store: &LimitStore,
        client: Option<&RateLimit>,
        keys: &[(String, KeyLimits)],
        previous: Option<&RateLimits>,
        metrics: Option<&Arc<Metrics>>,
    ) -> Result<Self, Vec<String>> {
        let local = Local::new(client, keys, previous.map(|p| &p.local));
        let shared = match store {
            LimitStore::Memory => Ok(None),
            LimitStore::Redis(config) => match previous.and_then(|p| p.shared.as_ref()) {
                Some(shared) if shared.config() == config => Ok(Some(shared.clone())),
                _ => Shared::new(config).map(|s| Some(Arc::new(s))),
            }
            .map_err(|problem| vec![format!("limits.store.redis: {problem}")]),
        };
        match (local, shared) {
            (Ok(local), Ok(shared)) => Ok(Self {
                client: client.copied(),
                local,
                shared,
                metrics: metrics.cloned(),
            }),
            (local, shared) => Err(local
                .err()
                .into_iter()
                .flatten()
                .chain(shared.err().into_iter().flatten())
                .collect()),
        }
    }

    /// Before credentials: one request from `client`, in this process.
    pub fn check_client(&self, client: IpAddr) -> Result<(), Rejection> {
        self.local.check_client(client)
    }

    /// After credentials: the key's bucket and quota, and with Redis the client's shared
    /// bucket, all in one round trip. Returns the key's quota usage, if it has a quota.
    pub async fn check(
        &self,
        client: IpAddr,
        key: Option<&str>,
    ) -> Result<Option<QuotaUsage>, Rejection> {
        let limiter = key.and_then(|id| {
            self.local
                .key(id)
                .filter(|limiter| limiter.limits.counts_requests())
                .map(|limiter| (id, limiter))
        });
        let Some(shared) = &self.shared else {
            let Some((_, limiter)) = limiter else {
                return Ok(None);
            };
            let verdict = limiter.check(SystemTime::now());
            self.count("memory", verdict.is_ok());
            return verdict;
        };
        let client = self.client.map(|limit| (client, limit));
        let key = limiter.map(|(id, limiter)| (id, &limiter.limits));
        if client.is_none() && key.is_none() {
            return Ok(None);
        }
        let in_memory = || limiter.map_or(Ok(None), |(_, l)| l.check(SystemTime::now()));
        self.in_redis(shared, shared.check(client, key), in_memory)
            .await
    }

    /// One decision in Redis, timed and counted; when Redis gives none, `on_error` decides
    /// (`local`: `in_memory`).
    async fn in_redis<T>(
        &self,
        shared: &Shared,
        call: impl Future<Output = Result<Result<Option<T>, Rejection>, shared::StoreError>>,
        in_memory: impl FnOnce() -> Result<Option<T>, Rejection>,
    ) -> Result<Option<T>, Rejection> {
        let started = Instant::now();
        let outcome = call.await;
        if let Some(metrics) = &self.metrics
            && !matches!(outcome, Err(shared::StoreError::Open))
        {
            metrics
                .limits
                .store_duration
                .observe(started.elapsed().as_secs_f64());
        }
        let error = match outcome {
            Ok(verdict) => {
                self.count("redis", verdict.is_ok());
                return verdict;
            }
            Err(error) => error,
        };
        if let Some(metrics) = &self.metrics {
            metrics.limits.store_error(error.kind());
        }
        let (source, verdict) = match shared.on_error() {
            OnError::Deny => ("on_error_deny", Err(Rejection::LimitStoreUnavailable)),
            OnError::Allow => ("on_error_allow", Ok(None)),
            OnError::Local => ("on_error_local", in_memory()),
        };
        self.count(source, verdict.is_ok());
        verdict
    }

    fn count(&self, source: &'static str, admitted: bool) {
        if let Some(metrics) = &self.metrics {
            metrics
                .limits
                .decisions
                .get_or_create(&LimitDecisionLabels {
                    source,
                    decision: if admitted { "admit" } else { "refuse" },
                })
                .inc();
        }
    }

    /// Opens the calling thread's Redis connection ahead of its first request (a no-op in
    /// memory).
    pub async fn warm_up(&self) {
        if let Some(shared) = &self.shared {
            shared.warm_up().await;
        }
    }

    /// The `/readyz` line of the limit store, when it is Redis.
    pub fn store_status(&self) -> Option<String> {
        self.shared.as_ref().map(|shared| shared.status())
    }

    /// The Redis circuit (`moat_limit_store_state`: 0 closed, 1 open, 2 half-open), when
    /// the store is Redis.
    pub fn store_state(&self) -> Option<i64> {
        self.shared.as_ref().map(|shared| shared.state() as i64)
    }

    /// Forgets clients that have not been seen for a while (call periodically).
    pub fn retain_recent(&self) {
        self.local.retain_recent();
    }

    /// Whether key `id` has a token budget.
    pub fn has_token_budget(&self, key: &str) -> bool {
        self.local.key(key).is_some_and(|l| !l.budgets.is_empty())
    }

    /// An LLM request of key `key`: reserves up to `want` tokens and at least `at_least` in
    /// each of the key's budgets. `Ok(None)`: the key has no budget (or Redis failed and
    /// `on_error` is `allow`).
    pub async fn reserve_tokens(
        &self,
        key: &str,
        want: u64,
        at_least: u64,
    ) -> Result<Option<Reservation>, Rejection> {
        let Some(limiter) = self.local.key(key).filter(|l| !l.budgets.is_empty()) else {
            return Ok(None);
        };
        let verdict = self.reserve_in(limiter, key, want, at_least).await;
        if let (Err(Rejection::TokenBudgetExceeded { .. }), Some(metrics)) =
            (&verdict, &self.metrics)
        {
            metrics
                .llm
                .reservations_refused
                .get_or_create(&crate::metrics::KeyLabels { key: key.into() })
                .inc();
        }
        verdict
    }

    async fn reserve_in(
        &self,
        limiter: &KeyLimiter,
        key: &str,
        want: u64,
        at_least: u64,
    ) -> Result<Option<Reservation>, Rejection> {
        let local = || {
            limiter
                .budgets
                .reserve(SystemTime::now(), want, at_least)
                .map(Some)
        };
        let Some(shared) = &self.shared else {
            let verdict = local();
            self.count("memory", verdict.is_ok());
            return verdict;
        };
        let reserve = async {
            let reserved = shared
                .reserve_tokens(key, &limiter.limits.tokens, want, at_least)
                .await?;
            Ok(reserved.map(|(granted, counters)| {
                Some(Reservation::redis(shared.clone(), granted, counters))
            }))
        };
        self.in_redis(shared, reserve, local).await
    }

    /// A streamed LLM request of key `key`: a slot, if the key caps its streams (counted in
    /// this process: each moat caps the streams to the model it fronts).
    pub fn open_stream(&self, key: &str) -> Result<Option<StreamSlot>, Rejection> {
        match self.local.key(key) {
            Some(limiter) => match limiter.limits.streams {
                Some(limit) => limiter.streams.open(limit).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }
}
