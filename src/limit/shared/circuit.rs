//! The circuit in front of Redis, and the one way a script is sent: on this thread's
//! connection, once more when the connection went stale (Redis restarted, an idle
//! connection cut), within `timeout` — unless the circuit is open. A check Redis does not
//! answer opens it: for [`OPEN_FOR`] every check is decided by `on_error` at once, then one
//! check probes Redis while the others still are, and its answer closes the circuit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Shared, StoreError, unix_ms};

/// How long the circuit stays open after Redis failed a check, before one probe.
const OPEN_FOR: Duration = Duration::from_secs(1);

/// Where the circuit stands: `moat_limit_store_state` (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
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
    /// One script on this thread's connection within `timeout` — unless the circuit is
    /// open, then none (see the module's comment).
    pub(super) async fn invoke<T: redis::FromRedisValue>(
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
            let mut connection = self.connection().await?;
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

    pub(super) fn failed(&self, error: StoreError) -> StoreError {
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

    pub(super) fn answered(&self) {
        self.open_until.store(0, Ordering::Release);
        if self.failing_since.load(Ordering::Relaxed) != 0 {
            self.failing_since.store(0, Ordering::Relaxed);
            tracing::info!("the Redis limit store answers again");
        }
    }
}
