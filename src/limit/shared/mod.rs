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

mod checks;
mod circuit;
mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use thread_local::ThreadLocal;

use super::Window;
use crate::config::{OnError, RedisStoreConfig};
use crate::redis_client::{Connection, Target};

/// Lua numbers are doubles: "as much as fits" is sent as this, not `u64::MAX`.
const MOST_TOKENS: u64 = 1 << 50;

/// A counter lives until a minute after its window ends, so a replica a little late still
/// finds it — and no longer.
fn expires_at(window: &Window) -> i64 {
    window.end + 60
}

pub struct Shared {
    config: RedisStoreConfig,
    target: Target,
    connections: ThreadLocal<tokio::sync::OnceCell<Connection>>,
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

impl Shared {
    pub fn new(config: &RedisStoreConfig) -> Result<Self, String> {
        let target =
            crate::redis_client::target(&config.url, config.ca_file.as_deref(), config.timeout)?;
        Ok(Shared {
            config: config.clone(),
            target,
            connections: ThreadLocal::new(),
            script: redis::Script::new(scripts::CHECK),
            reserve: redis::Script::new(scripts::RESERVE),
            settle: redis::Script::new(scripts::SETTLE),
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
    async fn connection(&self) -> Result<Connection, redis::RedisError> {
        let cell = self.connections.get_or_default();
        let connection = cell.get_or_try_init(|| self.target.managed());
        connection.await.cloned()
    }

    /// Connects this thread's connection before the first request needs it: a TLS
    /// handshake with a remote Redis can take longer than one check's `timeout`.
    pub async fn warm_up(&self) {
        let Ok(mut connection) = self.connection().await else {
            return;
        };
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), ping).await {
            self.answered();
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
