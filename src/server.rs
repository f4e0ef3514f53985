//! The listeners: public TCP → (TLS) → hyper (HTTP/1.1, or HTTP/2 by ALPN or prior
//! knowledge) → the pipeline, and the admin listener beside it. Connection limits,
//! handshake and header-read timeouts, closing connections moat gave up on (see
//! `connection`) and graceful shutdown live here.

mod connections;
mod listeners;
mod plain_on_tls;
mod proxy;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::admin;
use crate::config::Limits;
use crate::snapshot::State;

pub use listeners::Listeners;

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish for up to `drain_timeout`. The caller's runtime keeps the admin listener, reloads
/// and housekeeping; each proxy thread runs its own accept loop and connections.
pub async fn serve(state: Arc<State>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let (limits, drain_timeout) = serving_limits(&state);
    // Connections watch `stop` to start their graceful close; each holds a slot until it
    // ends, so draining is waiting for every slot to come back. `finished` then lets the
    // proxy threads return (a current-thread runtime only drives its connections while
    // its thread blocks on it).
    let (stop, stopping) = watch::channel(false);
    let (finish, finished) = watch::channel(false);
    let slots = Slots::new(limits.max_connections, listeners.public.len());
    let background = spawn_background(&state, listeners.admin);
    let shared = proxy::Shared {
        state: state.clone(),
        limits,
        stopping,
    };
    let mut threads = proxy::start(&shared, listeners.public, &slots.pools, &finished);
    if threads.running().await == 0 {
        tracing::error!("no proxy thread could start; stopping");
    } else {
        shutdown.await;
    }
    state.draining.store(true, Ordering::Relaxed);
    let _ = stop.send(true);
    slots.drain(drain_timeout).await;
    let _ = finish.send(true);
    threads.join().await;
    background.iter().for_each(JoinHandle::abort);
    tracing::info!("stopped");
}

/// The connection limits and the drain timeout, as configured when the server starts.
fn serving_limits(state: &State) -> (Limits, Duration) {
    let snapshot = state.snapshot.load();
    (
        snapshot.config.limits.clone(),
        snapshot.config.drain_timeout,
    )
}

/// The tasks beside the proxy threads, on the caller's runtime: the admin listener,
/// housekeeping, the status page's sampler and reloads.
fn spawn_background(state: &Arc<State>, admin: TcpListener) -> [JoinHandle<()>; 4] {
    [
        tokio::spawn(admin::serve(state.clone(), admin)),
        tokio::spawn(housekeeping(state.clone())),
        tokio::spawn(crate::status::sample_every_second(
            state.metrics.board.clone(),
        )),
        tokio::spawn(crate::reload::run(state.clone())),
    ]
}

/// Every 30 s: prune rate limiters of clients not seen lately (keyed limiters grow with
/// every address) and refresh `jwks_url` key sets that are due.
async fn housekeeping(state: Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let snapshot = state.snapshot.load_full();
        snapshot.limits.retain_recent();
        snapshot.auth.refresh_key_sets().await;
    }
}

/// The proxy threads' connection slots: one pool per thread, each its share of
/// `limits.max_connections`.
struct Slots {
    shares: Vec<usize>,
    pools: Vec<Arc<Semaphore>>,
}

impl Slots {
    fn new(max_connections: usize, threads: usize) -> Slots {
        let shares = slot_shares(max_connections, threads);
        let pools = shares
            .iter()
            .map(|&share| Arc::new(Semaphore::new(share)))
            .collect();
        Slots { shares, pools }
    }

    /// Waits for every slot to come back — every connection to end — for up to `timeout`.
    async fn drain(&self, timeout: Duration) {
        tracing::info!(
            connections = self.in_use(),
            drain_timeout = ?timeout,
            "shutting down: draining"
        );
        let drained =
            futures_util::future::join_all(self.pools.iter().zip(&self.shares).map(
                |(slots, &share)| slots.acquire_many(u32::try_from(share).unwrap_or(u32::MAX)),
            ));
        if tokio::time::timeout(timeout, drained).await.is_err() {
            tracing::warn!("drain deadline passed; closing the remaining connections");
        }
    }

    fn in_use(&self) -> usize {
        self.pools
            .iter()
            .zip(&self.shares)
            .map(|(slots, share)| share.saturating_sub(slots.available_permits()))
            .sum()
    }
}

/// `limits.max_connections` split across the proxy threads, as nginx's
/// `worker_connections` is per worker: a thread waits for a slot before it accepts from its
/// own listener, and a global pool would let one thread hold a freed slot while the
/// connection waits in another thread's backlog.
fn slot_shares(max_connections: usize, threads: usize) -> Vec<usize> {
    let threads = threads.clamp(1, max_connections.max(1));
    (0..threads)
        .map(|index| max_connections / threads + usize::from(index < max_connections % threads))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::slot_shares;

    #[test]
    fn connection_slots_are_split_across_threads_without_losing_any() {
        assert_eq!(slot_shares(10, 3), [4, 3, 3]);
        assert_eq!(slot_shares(4096, 2), [2048, 2048]);
        assert_eq!(slot_shares(1, 4), [1], "never a thread without a slot");
        assert_eq!(slot_shares(7, 1), [7]);
    }
}
