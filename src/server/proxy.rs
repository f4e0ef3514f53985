//! The proxy threads: each runs a current-thread runtime with its own accept loop on its
//! own listener, and serves the connections it accepts there.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::connections::{Protocols, spawn_plain, spawn_tls};
use crate::config::Limits;
use crate::connection::Connection;
use crate::pipeline::Peer;
use crate::snapshot::State;

/// What every proxy thread works with: the state, the connection limits, and the stop
/// signal.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) state: Arc<State>,
    pub(super) limits: Limits,
    pub(super) stopping: watch::Receiver<bool>,
}

/// The proxy threads that were spawned, and what they report on starting.
pub(super) struct Threads {
    handles: Vec<JoinHandle<()>>,
    starts: UnboundedReceiver<bool>,
}

/// Spawns a proxy thread per listener, each with its pool of connection slots.
pub(super) fn start(
    shared: &Shared,
    listeners: Vec<std::net::TcpListener>,
    slots: &[Arc<Semaphore>],
    finished: &watch::Receiver<bool>,
) -> Threads {
    let (started, starts) = unbounded_channel();
    let mut handles = Vec::new();
    for (index, (listener, slots)) in listeners.into_iter().zip(slots).enumerate() {
        let thread = ProxyThread {
            listener,
            shared: shared.clone(),
            slots: slots.clone(),
            started: started.clone(),
            finished: finished.clone(),
        };
        match thread.spawn(index) {
            Ok(handle) => handles.push(handle),
            Err(error) => tracing::error!(error = %error, "cannot start a proxy thread"),
        }
    }
    Threads { handles, starts }
}

impl Threads {
    /// How many of the threads serve: each one that started says whether it does (its
    /// sender then lives on with it).
    pub(super) async fn running(&mut self) -> usize {
        let mut running = 0;
        for _ in 0..self.handles.len() {
            running += usize::from(self.starts.recv().await.unwrap_or(false));
        }
        running
    }

    /// Waits, off the runtime, for every thread to return.
    pub(super) async fn join(self) {
        let handles = self.handles;
        let _ = tokio::task::spawn_blocking(move || {
            for handle in handles {
                let _ = handle.join();
            }
        })
        .await;
    }
}

/// A proxy thread about to start: its listener and slots, what it works with, where it
/// reports whether it serves, and the signal that it may return.
struct ProxyThread {
    listener: std::net::TcpListener,
    shared: Shared,
    slots: Arc<Semaphore>,
    started: UnboundedSender<bool>,
    finished: watch::Receiver<bool>,
}

impl ProxyThread {
    /// A thread with its own current-thread runtime driving `accept_loop` on its listener
    /// until the server stops, then its connections until `finished`. It reports on
    /// `started` whether it serves; without a runtime its listener is dropped, so the
    /// kernel stops routing connections to it.
    fn spawn(self, index: usize) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("moat-proxy-{index}"))
            .spawn(move || self.run())
    }

    fn run(self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime.inspect_err(|error| {
            tracing::error!(error = %error, "cannot start a proxy thread's runtime");
        }) else {
            let _ = self.started.send(false);
            return;
        };
        runtime.block_on(self.serve());
    }

    async fn serve(mut self) {
        let Ok(listener) = TcpListener::from_std(self.listener).inspect_err(|error| {
            tracing::error!(error = %error, "cannot register the listener");
        }) else {
            let _ = self.started.send(false);
            return;
        };
        let _ = self.started.send(true);
        let snapshot = self.shared.state.snapshot.load_full();
        tokio::spawn(async move { snapshot.limits.warm_up().await });
        accept_loop(&self.shared, &self.slots, listener).await;
        let _ = self.finished.wait_for(|done| *done).await;
    }
}

/// One proxy thread's accept loop, until the server stops.
async fn accept_loop(shared: &Shared, slots: &Arc<Semaphore>, listener: TcpListener) {
    let protocols = Protocols::new(&shared.limits);
    // Fixed at start: a reload that would turn TLS on or off is refused (see reload.rs).
    let tls = shared.state.snapshot.load().tls.is_some();
    let mut stopped = shared.stopping.clone();
    let mut shutdown = std::pin::pin!(stopped.wait_for(|stop| *stop));
    while let Some((slot, stream, addr)) = accept(slots, &listener, shutdown.as_mut()).await {
        let _ = stream.set_nodelay(true);
        let peer = peer(addr, tls, &shared.limits);
        if tls {
            spawn_tls(shared, &protocols, stream, peer, slot);
        } else {
            spawn_plain(shared, &protocols, stream, peer, slot);
        }
    }
}

/// The next connection, with the slot it holds; `None` once `shutdown` resolves. Holding a
/// slot before accepting makes a full server leave new connections in the kernel's backlog
/// instead of accepting and then starving them.
async fn accept<S: Future>(
    slots: &Arc<Semaphore>,
    listener: &TcpListener,
    mut shutdown: Pin<&mut S>,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    loop {
        let slot = tokio::select! {
            _ = shutdown.as_mut() => return None,
            slot = slots.clone().acquire_owned() => slot.ok()?,
        };
        let accepted = tokio::select! {
            _ = shutdown.as_mut() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => return Some((slot, stream, addr)),
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The client as the pipeline sees it, with its connection's bookkeeping.
fn peer(addr: SocketAddr, tls: bool, limits: &Limits) -> Peer {
    let ip = addr.ip().to_canonical();
    Peer {
        ip,
        forwarded_for: crate::forward::forwarded_for(ip),
        proto: if tls { "https" } else { "http" },
        client_cert: None,
        connection: Connection::new(limits.max_requests_per_connection),
    }
}
