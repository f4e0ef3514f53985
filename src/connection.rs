//! One client connection's bookkeeping, shared by its requests and the task serving it: the
//! requests open now (so `idle` can close a connection with none), the requests it has
//! carried (`limits.max_requests_per_connection`), and the streams its client reset before
//! their response ended — and the signal that tells the server to close it.
//!
//! The reset budget answers the paced-reset attack: open a batch of streams, let them
//! reach the model, reset them all, repeat. hyper only limits streams reset *before* they
//! were accepted; these were accepted, so each was an inference started and abandoned.
//! Like Envoy's premature-reset check, a connection whose client reset more than half of a
//! window of streams is closed (GOAWAY, then a short grace).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

/// Streams per reset window, and how many of them the client may reset.
pub const RESET_WINDOW: u32 = 100;
pub const RESETS_ALLOWED: u32 = RESET_WINDOW / 2;

/// Why moat closes a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// It carried `limits.max_requests_per_connection` requests (nginx's
    /// `keepalive_requests`): closed gracefully, in-flight requests finish.
    MaxRequests,
    /// Its client reset more than [`RESETS_ALLOWED`] of [`RESET_WINDOW`] streams.
    ClientResets,
}

impl Close {
    pub fn as_str(self) -> &'static str {
        match self {
            Close::MaxRequests => "max_requests",
            Close::ClientResets => "client_resets",
        }
    }
}

#[derive(Debug)]
pub struct Connection {
    open: AtomicUsize,
    /// The connection's reader, parked while requests are open; woken when the last one
    /// ends, so it can start the idle timer (see `idle`).
    pub(crate) reader: AtomicWaker,
    epoch: Instant,
    /// Milliseconds after `epoch` when the last request ended (or the connection began).
    idle_since: AtomicU64,
    carried: AtomicU64,
    max_requests: u64,
    /// (streams ended, of which the client reset) in the current window.
    window: Mutex<(u32, u32)>,
    close: OnceLock<Close>,
    closing: Notify,
}

impl Connection {
    pub fn new(max_requests: u64) -> Arc<Connection> {
        Arc::new(Connection {
            open: AtomicUsize::new(0),
            reader: AtomicWaker::new(),
            epoch: Instant::now(),
            idle_since: AtomicU64::new(0),
            carried: AtomicU64::new(0),
            max_requests,
            window: Mutex::new((0, 0)),
            close: OnceLock::new(),
            closing: Notify::new(),
        })
    }

    /// Counts a request as open until the guard drops (with its response body).
    pub fn open(self: &Arc<Self>) -> RequestGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        if self.carried.fetch_add(1, Ordering::AcqRel) + 1 == self.max_requests {
            self.close(Close::MaxRequests);
        }
        RequestGuard {
            connection: self.clone(),
            client_reset: false,
        }
    }

    /// How long the connection has had no open request; `None` while one is open.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.is_busy() {
            return None;
        }
        let since = Duration::from_millis(self.idle_since.load(Ordering::Acquire));
        Some(self.epoch.elapsed().saturating_sub(since))
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }

    /// Requests this connection has carried so far.
    pub fn carried(&self) -> u64 {
        self.carried.load(Ordering::Acquire)
    }

    /// Resolves once moat has decided to close this connection, with the reason.
    pub async fn closing(&self) -> Close {
        loop {
            if let Some(close) = self.close.get() {
                return *close;
            }
            self.closing.notified().await;
        }
    }

    fn close(&self, close: Close) {
        if self.close.set(close).is_ok() {
            self.closing.notify_one();
        }
    }

    /// One stream ended; `client_reset` when its client reset it before the response ended.
    fn ended(&self, client_reset: bool) {
        let over = {
            let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            window.0 += 1;
            window.1 += u32::from(client_reset);
            let over = window.1 > RESETS_ALLOWED;
            if window.0 >= RESET_WINDOW {
                *window = (0, 0);
            }
            over
        };
        if over {
            self.close(Close::ClientResets);
        }
    }
}

/// One open request; dropped when its response has been sent or abandoned.
#[derive(Debug)]
pub struct RequestGuard {
    connection: Arc<Connection>,
    /// Set by the access record when the client went away before the response ended.
    pub client_reset: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let connection = &self.connection;
        connection.ended(self.client_reset);
        let now = u64::try_from(connection.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        connection.idle_since.store(now, Ordering::Release);
        if connection.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            connection.reader.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn request(connection: &Arc<Connection>, reset: bool) {
        let mut guard = connection.open();
        guard.client_reset = reset;
    }

    #[test]
    fn a_connection_is_idle_only_without_open_requests() {
        let connection = Connection::new(1000);
        assert!(connection.idle_for().is_some());
        let first = connection.open();
        let second = connection.open();
        assert_eq!(connection.idle_for(), None);
        drop(first);
        assert_eq!(connection.idle_for(), None);
        drop(second);
        assert!(
            connection
                .idle_for()
                .is_some_and(|idle| idle < Duration::from_secs(5))
        );
    }

    #[test]
    fn the_request_limit_closes_the_connection_at_its_last_request() {
        let connection = Connection::new(3);
        request(&connection, false);
        request(&connection, false);
        assert_eq!(connection.closing().now_or_never(), None);
        request(&connection, false);
        assert_eq!(
            connection.closing().now_or_never(),
            Some(Close::MaxRequests)
        );
    }

    #[test]
    fn a_client_resetting_most_streams_is_closed_and_occasional_cancels_are_not() {
        let polite = Connection::new(u64::MAX);
        for n in 0..10 * RESET_WINDOW {
            request(&polite, n % 3 == 0); // a third cancelled: a chat UI's stop button
        }
        assert_eq!(polite.closing().now_or_never(), None);

        let paced = Connection::new(u64::MAX);
        for _ in 0..RESETS_ALLOWED {
            request(&paced, true);
        }
        assert_eq!(paced.closing().now_or_never(), None);
        request(&paced, true);
        assert_eq!(paced.closing().now_or_never(), Some(Close::ClientResets));
    }
}
