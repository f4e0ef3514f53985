//! Limits counted in Redis (or Valkey), so N replicas admit what one would: one Lua script
//! evaluates the client's and the key's GCRA buckets and the key's quota atomically — all
//! pass and are all charged, or none is — as redis-cell and Envoy's ratelimit service do.
//! One `EVALSHA` per request, with Redis's own clock (`TIME`), so replicas whose clocks
//! drift still share one timeline for the buckets.
//!
//! Each proxy thread has its own connection (the `redis` crate's `ConnectionManager`,
//! which reconnects by itself), created lazily on that thread's runtime, so a check never
//! crosses threads and a reload that keeps the store keeps the connections. A check that
//! finds its connection broken (Redis restarted, an idle connection cut) is sent once more
//! on the new one within the same `timeout`; a check Redis does not answer opens a circuit:
//! for a second every check is decided by `on_error` at once, then one check probes Redis
//! while the others still are, and its answer closes the circuit again.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use thread_local::ThreadLocal;

use super::{KeyLimits, Window, local::rate_limited, quota_usage};
use crate::config::{OnError, RateLimit, RedisStoreConfig, TokenBudget};
use crate::reject::QuotaUsage;
use crate::reject::Rejection;

/// KEYS: the GCRA buckets, then the quota counter if there is one.
/// ARGV: the number of buckets; per bucket its emission interval and burst tolerance in µs
/// (a request passes while `tat - now <= tolerance`); the quota's limit (0: none) and when
/// the counter expires (Unix seconds: a minute after its window ends).
/// Returns {0, 0, used} admitted, {1, wait µs, used} over a bucket, {2, 0, used} quota spent.
const SCRIPT: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local buckets = tonumber(ARGV[1])
local tats = {}
local wait = 0
for i = 1, buckets do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  if tat - now > tolerance then
    wait = math.max(wait, tat - now - tolerance)
  end
  tats[i] = tat + interval
end
local limit = tonumber(ARGV[2 * buckets + 2])
local used = 0
if limit > 0 then
  used = tonumber(redis.call('GET', KEYS[buckets + 1]) or '0')
  if used >= limit then return {2, 0, used} end
end
if wait > 0 then return {1, wait, used} end
for i = 1, buckets do
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1000)
end
if limit > 0 then
  used = redis.call('INCR', KEYS[buckets + 1])
  if used == 1 then redis.call('EXPIREAT', KEYS[buckets + 1], ARGV[2 * buckets + 3]) end
end
return {0, 0, used}
";

/// KEYS: a key's token counters, one per budget. ARGV: the tokens wanted, the fewest that
/// will do, then per counter its budget and when it expires (Unix seconds).
/// Returns {granted, 0}, or {0, i} when counter i has fewer than the fewest left.
const RESERVE: &str = r"
local room = tonumber(ARGV[1])
local at_least = tonumber(ARGV[2])
for i = 1, #KEYS do
  local left = tonumber(ARGV[1 + 2 * i]) - tonumber(redis.call('GET', KEYS[i]) or '0')
  if left < at_least then return {0, i} end
  if left < room then room = left end
end
for i = 1, #KEYS do
  if redis.call('INCRBY', KEYS[i], room) == room then
    redis.call('EXPIREAT', KEYS[i], ARGV[2 + 2 * i])
  end
end
return {room, 0}
";

/// KEYS: the counters a reservation was taken from. ARGV: what to add (negative: returned).
/// A counter that has expired (its window ended) is not brought back.
const SETTLE: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
end
return 0
";

/// Lua numbers are doubles: "as much as fits" is sent as this, not `u64::MAX`.
const MOST_TOKENS: u64 = 1 << 50;

/// How long the circuit stays open after Redis failed a check, before one probe.
const OPEN_FOR: Duration = Duration::from_secs(1);

/// A counter lives until a minute after its window ends, so a replica a little late still
/// finds it — and no longer.
fn expires_at(window: &Window) -> i64 {
    window.end + 60
}

pub struct Shared {
    config: RedisStoreConfig,
    client: redis::Client,
    connections: ThreadLocal<ConnectionManager>,
    script: redis::Script,
    reserve: redis::Script,
    settle: redis::Script,
    /// Unix ms of the first failure of the current outage; 0 while Redis answers.
    failing_since: AtomicU64,
    /// Unix ms until which the circuit is open (checks decided at once); 0: closed.
    open_until: AtomicU64,
    /// A check is probing Redis while the circuit is half-open.
    probing: AtomicBool,
    /// Unix ms of the last logged failure: an outage under load logs once a second.
    logged_at: AtomicU64,
}

/// Why Redis gave no verdict.
#[derive(Debug)]
pub enum StoreError {
    Timeout,
    Redis(redis::RedisError),
    /// Not asked: the circuit is open after a failure (see the module's comment).
    Open,
}

/// Where the circuit stands: `moat_limit_store_state` (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl StoreError {
    /// The `kind` label of `moat_limit_store_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout => "timeout",
            StoreError::Redis(error)
                if error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal() =>
            {
                "connection"
            }
            StoreError::Redis(error) if error.is_timeout() => "timeout",
            StoreError::Redis(_) => "error",
            StoreError::Open => "circuit_open",
        }
    }
}

/// The connection broke before this request reached Redis — it was idle across a restart,
/// or cut — rather than Redis refusing it or being slow: worth one more try on the
/// connection the manager makes anew.
fn went_stale(error: &redis::RedisError) -> bool {
    (error.is_io_error() || error.is_connection_dropped()) && !error.is_connection_refusal()
}

/// Ends the half-open probe however the check ends (a client that goes away drops it).
struct Probe<'a>(&'a AtomicBool);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Shared {
    pub fn new(config: &RedisStoreConfig) -> Result<Self, String> {
        // The URL's own text never goes into a message: it may carry a password.
        let not_a_url = |_| {
            "`url` is not a Redis URL: write redis://[user:password@]host:port[/db], or \
             rediss://… for TLS"
                .to_owned()
        };
        let client = match &config.ca_file {
            None => redis::Client::open(config.url.expose()).map_err(not_a_url)?,
            Some(ca_file) => {
                if !config.url.expose().starts_with("rediss://") {
                    return Err("`ca_file` is for TLS: the `url` must start with rediss://".into());
                }
                let root_cert = crate::input::read(ca_file, crate::input::Kind::KeyMaterial)
                    .map_err(|e| format!("ca_file: {e}"))?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(config.url.expose(), certificates).map_err(|_| {
                    format!(
                        "`url` is not a rediss:// URL, or ca_file {} holds no PEM certificate",
                        ca_file.display()
                    )
                })?
            }
        };
        if config.timeout.is_zero() {
            return Err("`timeout` must be more than 0".to_owned());
        }
        Ok(Shared {
            config: config.clone(),
            client,
            connections: ThreadLocal::new(),
            script: redis::Script::new(SCRIPT),
            reserve: redis::Script::new(RESERVE),
            settle: redis::Script::new(SETTLE),
            failing_since: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            logged_at: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &RedisStoreConfig {
        &self.config
    }

    pub fn on_error(&self) -> OnError {
        self.config.on_error
    }

    /// This thread's connection; the first call on a thread sets it up on its runtime.
    fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let timeout = self.config.timeout;
        self.connections
            .get_or_try(|| {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeout))
                    // A connect may take longer than one check waits: it goes on in the
                    // background while checks fall back.
                    .set_connection_timeout(Some(timeout.max(Duration::from_secs(2))))
                    .set_max_delay(Duration::from_secs(1));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .cloned()
    }

    /// Connects this thread's connection before the first request needs it: a TLS
    /// handshake with a remote Redis can take longer than one check's `timeout`.
    pub async fn warm_up(&self) {
        let Ok(mut connection) = self.connection() else {
            return;
        };
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), ping).await {
            self.answered();
        }
    }

    /// One request: `client`'s shared bucket and `key`'s bucket and quota.
    pub async fn check(
        &self,
        client: Option<(IpAddr, RateLimit)>,
        key: Option<(&str, &KeyLimits)>,
    ) -> Result<Result<Option<QuotaUsage>, Rejection>, StoreError> {
        let prefix = &self.config.key_prefix;
        let mut buckets: [Option<(String, RateLimit)>; 2] = [None, None];
        if let Some((ip, limit)) = client {
            buckets[0] = Some((format!("{prefix}rate:client:{ip}"), limit));
        }
        if let Some((
            id,
            KeyLimits {
                rate: Some(limit), ..
            },
        )) = key
        {
            buckets[1] = Some((format!("{prefix}rate:key:{id}"), *limit));
        }
        let now = SystemTime::now();
        let quota = key.and_then(|(id, limits)| {
            let quota = limits.quota?;
            let window = Window::containing(now, quota.per);
            let counter = format!("{prefix}quota:{id}:{}:{}", quota.per.as_str(), window.start);
            Some((counter, quota, window))
        });
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(buckets.iter().flatten().count());
        for (name, limit) in buckets.iter().flatten() {
            let interval = 1_000_000 / u64::from(limit.per_second.max(1));
            let tolerance = interval * u64::from(limit.burst.saturating_sub(1));
            invocation.key(name).arg(interval.max(1)).arg(tolerance);
        }
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
        let usage = quota
            .as_ref()
            .map(|(_, quota, window)| quota_usage(quota, used, *window, now));
        Ok(match (verdict, usage) {
            (2, Some(usage)) => Err(Rejection::QuotaExceeded(usage)),
            (1, usage) => Err(rate_limited(
                Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
                usage,
            )),
            (_, usage) => Ok(usage),
        })
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
                    "{prefix}tokens:{id}:{}:{}",
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
            Some((budget, window)) => Err(super::tokens::exceeded(budget, *window, now)),
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

    /// One script on this thread's connection within `timeout` — unless the circuit is
    /// open, then none (see the module's comment).
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let _probe = match self.state() {
            CircuitState::Closed => None,
            CircuitState::Open => return Err(StoreError::Open),
            CircuitState::HalfOpen => {
                if self.probing.swap(true, Ordering::AcqRel) {
                    return Err(StoreError::Open);
                }
                Some(Probe(&self.probing))
            }
        };
        let call = async {
            let mut connection = self.connection()?;
            match invocation.invoke_async::<T>(&mut connection).await {
                Err(error) if went_stale(&error) => {
                    tracing::debug!(error = %error, "Redis connection went stale; trying once more");
                    invocation.invoke_async::<T>(&mut connection).await
                }
                answered => answered,
            }
        };
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(Ok(reply)) => {
                self.answered();
                Ok(reply)
            }
            Ok(Err(error)) => Err(self.failed(StoreError::Redis(error))),
            Err(_elapsed) => Err(self.failed(StoreError::Timeout)),
        }
    }

    /// The circuit now: open while `open_until` is ahead, half-open once it has passed.
    pub fn state(&self) -> CircuitState {
        match self.open_until.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            until if unix_ms() < until => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    fn failed(&self, error: StoreError) -> StoreError {
        let now = unix_ms();
        let open_for = u64::try_from(OPEN_FOR.as_millis()).unwrap_or(1000);
        self.open_until.store(now + open_for, Ordering::Release);
        let _ = self
            .failing_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        let logged = self.logged_at.load(Ordering::Relaxed);
        if now.saturating_sub(logged) >= 1000
            && self
                .logged_at
                .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let detail = match &error {
                StoreError::Timeout => format!("no answer within {:?}", self.config.timeout),
                StoreError::Redis(error) => error.to_string(),
                StoreError::Open => "the circuit is open".to_owned(),
            };
            tracing::warn!(
                error = %detail,
                on_error = self.config.on_error.as_str(),
                "the Redis limit store failed; requests get `on_error`"
            );
        }
        error
    }

    fn answered(&self) {
        self.open_until.store(0, Ordering::Release);
        if self.failing_since.load(Ordering::Relaxed) != 0 {
            self.failing_since.store(0, Ordering::Relaxed);
            tracing::info!("the Redis limit store answers again");
        }
    }

    /// For `/readyz`: whether Redis answers, and since when it does not.
    pub fn status(&self) -> String {
        match self.failing_since.load(Ordering::Relaxed) {
            0 => format!(
                "limit store redis: answering (on_error: {})",
                self.config.on_error.as_str()
            ),
            since => format!(
                "limit store redis: failing for {:.1} s (on_error: {})",
                unix_ms().saturating_sub(since) as f64 / 1000.0,
                self.config.on_error.as_str()
            ),
        }
    }
}

fn unix_ms() -> u64 {
    super::unix_ms(SystemTime::now())
}
