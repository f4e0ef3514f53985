//! The listeners: public TCP → (TLS) → hyper (HTTP/1.1, or HTTP/2 by ALPN or prior
//! knowledge) → the pipeline, and the admin listener beside it. Connection limits,
//! handshake and header-read timeouts, closing connections moat gave up on (see
//! `connection`) and graceful shutdown live here.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::admin;
use crate::config::Limits;
use crate::connection::{Close, Connection};
use crate::idle::IdleIo;
use crate::metrics::ReasonLabels;
use crate::pipeline::{self, Peer};
use crate::snapshot::State;

/// Bound listeners, ready to serve: the admin listener, and one public listener per proxy
/// thread (`runtime.threads`), all bound to the same address with `SO_REUSEPORT` so the
/// kernel spreads connections across them.
pub struct Listeners {
    public: Vec<std::net::TcpListener>,
    admin: TcpListener,
}

impl Listeners {
    pub async fn bind(state: &State) -> std::io::Result<Self> {
        let config = &state.snapshot.load().config;
        let named = |name: &'static str, addr: SocketAddr| {
            move |error: std::io::Error| {
                std::io::Error::new(error.kind(), format!("`{name}` {addr}: {error}"))
            }
        };
        // No thread without a connection slot: as many as `slot_shares` hands slots to.
        let threads = slot_shares(config.limits.max_connections, config.runtime.threads()).len();
        // A plain bind first: an address already in use (another moat, a stale one with an
        // old config) is an error, not a silent join of its `SO_REUSEPORT` group. With port
        // 0 it also picks the port the group then binds.
        let addr = std::net::TcpListener::bind(config.listen)
            .and_then(|probe| probe.local_addr())
            .map_err(named("listen", config.listen))?;
        let public = (0..threads)
            .map(|_| public_listener(addr, threads > 1).map_err(named("listen", addr)))
            .collect::<Result<Vec<_>, _>>()?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(named("admin_listen", config.admin_listen))?;
        Ok(Self { public, admin })
    }

    pub fn public_addr(&self) -> std::io::Result<SocketAddr> {
        self.public
            .first()
            .ok_or_else(|| std::io::Error::other("no public listener"))?
            .local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// A listening socket left for a proxy thread to register with its own runtime.
fn public_listener(addr: SocketAddr, shared: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Only processes of the same user can join a `SO_REUSEPORT` group on Linux.
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// What a proxy thread works with: the state, its share of the connection slots, and the
/// stop signal.
#[derive(Clone)]
struct Shared {
    state: Arc<State>,
    limits: Limits,
    slots: Arc<Semaphore>,
    stopping: watch::Receiver<bool>,
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

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish for up to `drain_timeout`. The caller's runtime keeps the admin listener, reloads
/// and housekeeping; each proxy thread runs its own accept loop and connections.
pub async fn serve(state: Arc<State>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let (limits, drain_timeout) = {
        let snapshot = state.snapshot.load();
        (
            snapshot.config.limits.clone(),
            snapshot.config.drain_timeout,
        )
    };
    // Connections watch `stop` to start their graceful close; each holds a slot until it
    // ends, so draining is waiting for every slot to come back. `finished` then lets the
    // proxy threads return (a current-thread runtime only drives its connections while
    // its thread blocks on it).
    let (stop, stopping) = watch::channel(false);
    let (finish, finished) = watch::channel(false);
    let shares = slot_shares(limits.max_connections, listeners.public.len());
    let slots: Vec<_> = shares
        .iter()
        .map(|&share| Arc::new(Semaphore::new(share)))
        .collect();
    let admin_task = tokio::spawn(admin::serve(state.clone(), listeners.admin));
    let chores = tokio::spawn(housekeeping(state.clone()));
    let sampler = tokio::spawn(crate::status::sample_every_second(
        state.metrics.board.clone(),
    ));
    let reloads = tokio::spawn(crate::reload::run(state.clone()));

    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
    let mut threads = Vec::new();
    for (index, (listener, slots)) in listeners.public.into_iter().zip(&slots).enumerate() {
        let shared = Shared {
            state: state.clone(),
            limits: limits.clone(),
            slots: slots.clone(),
            stopping: stopping.clone(),
        };
        let spawned =
            spawn_proxy_thread(index, listener, shared, started.clone(), finished.clone());
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(error) => tracing::error!(error = %error, "cannot start a proxy thread"),
        }
    }
    drop(started);
    // Each thread that started says whether it serves (its sender then lives on with it).
    let mut running = 0;
    for _ in 0..threads.len() {
        running += usize::from(starts.recv().await.unwrap_or(false));
    }
    if running == 0 {
        tracing::error!("no proxy thread could start; stopping");
    } else {
        shutdown.await;
    }

    state.draining.store(true, Ordering::Relaxed);
    let _ = stop.send(true);
    let in_flight: usize = slots
        .iter()
        .zip(&shares)
        .map(|(slots, share)| share.saturating_sub(slots.available_permits()))
        .sum();
    tracing::info!(
        connections = in_flight,
        ?drain_timeout,
        "shutting down: draining"
    );
    let drained = futures_util::future::join_all(
        slots
            .iter()
            .zip(&shares)
            .map(|(slots, &share)| slots.acquire_many(u32::try_from(share).unwrap_or(u32::MAX))),
    );
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        tracing::warn!("drain deadline passed; closing the remaining connections");
    }
    let _ = finish.send(true);
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    admin_task.abort();
    chores.abort();
    sampler.abort();
    reloads.abort();
    tracing::info!("stopped");
}

/// A proxy thread: its own current-thread runtime driving `accept_loop` on `listener` until
/// the server stops, then its connections until `finished`. It reports on `started`
/// whether it serves; without a runtime its listener is dropped, so the kernel stops
/// routing connections to it.
fn spawn_proxy_thread(
    index: usize,
    listener: std::net::TcpListener,
    shared: Shared,
    started: tokio::sync::mpsc::UnboundedSender<bool>,
    mut finished: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("moat-proxy-{index}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime.inspect_err(|error| {
                tracing::error!(error = %error, "cannot start a proxy thread's runtime");
            }) else {
                let _ = started.send(false);
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener).inspect_err(|error| {
                    tracing::error!(error = %error, "cannot register the listener");
                }) else {
                    let _ = started.send(false);
                    return;
                };
                let _ = started.send(true);
                let snapshot = shared.state.snapshot.load_full();
                tokio::spawn(async move { snapshot.limits.warm_up().await });
                accept_loop(&shared, listener).await;
                let _ = finished.wait_for(|done| *done).await;
            });
        })
}

/// One proxy thread's accept loop, until the server stops.
async fn accept_loop(shared: &Shared, listener: TcpListener) {
    let Shared {
        state,
        limits,
        slots,
        stopping,
    } = shared;
    let builder = connection_builder(limits);
    // On TLS, ALPN has already chosen the protocol: no preface sniffing, so hyper's own
    // header-read timeout governs from the first byte.
    let (http1_only, http2_only) = (builder.clone().http1_only(), builder.clone().http2_only());
    // Fixed at start: a reload that would turn TLS on or off is refused (see reload.rs).
    let tls = state.snapshot.load().tls.is_some();
    let mut stopped = stopping.clone();
    let mut shutdown = std::pin::pin!(stopped.wait_for(|stop| *stop));
    loop {
        // Holding a slot before accepting makes a full server leave new connections in the
        // kernel's backlog instead of accepting and then starving them.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ip = addr.ip().to_canonical();
        let peer = Peer {
            ip,
            forwarded_for: crate::forward::forwarded_for(ip),
            proto: if tls { "https" } else { "http" },
            client_cert: None,
            connection: Connection::new(limits.max_requests_per_connection),
        };
        let state = state.clone();
        let stopping = stopping.clone();
        let first_byte_timeout = limits.header_read_timeout;
        if tls {
            let (http1_only, http2_only) = (http1_only.clone(), http2_only.clone());
            tokio::spawn(async move {
                let handshake = handshake(&state, stream, peer, first_byte_timeout);
                if let Some(Some((stream, peer))) = until_stopped(handshake, stopping.clone()).await
                {
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let builder = if h2 { &http2_only } else { &http1_only };
                    serve_connection(builder, &state, stream, peer, first_byte_timeout, stopping)
                        .await;
                }
                drop(slot);
            });
        } else {
            let builder = builder.clone();
            tokio::spawn(async move {
                // The auto builder sniffs for the HTTP/2 preface before any of hyper's
                // timeouts start: a client that sends nothing must not hold a slot.
                let mut first = [0u8; 1];
                let peek = tokio::time::timeout(first_byte_timeout, stream.peek(&mut first));
                let peeked = until_stopped(peek, stopping.clone()).await;
                if matches!(peeked, Some(Ok(Ok(1)))) {
                    serve_connection(&builder, &state, stream, peer, first_byte_timeout, stopping)
                        .await;
                }
                drop(slot);
            });
        }
    }
}

/// `work`, unless the server starts stopping first: a connection that has not sent a byte
/// or finished its handshake has nothing in flight to drain.
async fn until_stopped<T>(
    work: impl Future<Output = T>,
    mut stopping: watch::Receiver<bool>,
) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        _ = stopping.wait_for(|stop| *stop) => None,
    }
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

fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper needs room for the whole head; moat's own checks then answer 414/431 with a
    // problem body, and only heads far over the limits meet hyper's bare 431.
    let head_room = (limits.max_header_bytes + limits.max_uri_bytes + 4096).max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(head_room)
        // A client that sends its request and then shuts down its write side (`nc -N`,
        // HTTP/1.0 tools) still gets its answer. The cost: an HTTP/1 client that closes
        // while its request is in flight is noticed at the first write of the response,
        // not at its FIN — the two look the same until then.
        .half_close(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        // Pings find peers that vanished without closing (a NAT dropped them, a host died).
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The TLS handshake with the current snapshot's certificates, bounded by the header-read
/// timeout so a silent client cannot hold a slot. A failed handshake is only a debug line:
/// scanners make many.
async fn handshake(
    state: &State,
    stream: TcpStream,
    mut peer: Peer,
    timeout: Duration,
) -> Option<(TlsStream<TcpStream>, Peer)> {
    let config = state.snapshot.load().tls.as_ref()?.config.clone();
    let accepted = tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(stream)).await;
    match accepted {
        Ok(Ok(stream)) => {
            peer.client_cert = crate::tls::client_subject(stream.get_ref().1);
            Some((stream, peer))
        }
        Ok(Err(error)) => {
            tracing::debug!(client = %peer.ip, error = %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(client = %peer.ip, "TLS handshake timed out");
            None
        }
    }
}

/// How long a connection closed for resetting too many streams gets to wind down after
/// its GOAWAY: enough for a response in its last packets, not for new work.
const RESET_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection to its end: I/O that reads as closed once idle for `idle_limit`,
/// hyper, and a graceful close when the server stops or moat gives up on the connection
/// (its request limit or reset budget; logged once and counted).
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    state: &Arc<State>,
    stream: I,
    peer: Peer,
    idle_limit: Duration,
    mut stopping: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let connection = peer.connection.clone();
    let client = peer.ip;
    let stream = IdleIo::new(stream, connection.clone(), idle_limit);
    let service_state = state.clone();
    let service = service_fn(move |request| {
        let state = service_state.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(pipeline::handle(&state, request, peer).await) }
    });
    let served = builder.serve_connection(TokioIo::new(stream), service);
    let mut served = std::pin::pin!(served);
    let mut closing = false;
    let mut deadline = std::pin::pin!(tokio::time::sleep(Duration::MAX));
    let mut deadline_set = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            reason = connection.closing(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
                give_up(state, client, &connection, reason);
                if reason == Close::ClientResets {
                    deadline.as_mut().reset(tokio::time::Instant::now() + RESET_GRACE);
                    deadline_set = true;
                }
            }
            () = deadline.as_mut(), if deadline_set => return,
        }
    }
}

/// The one log line and count of a connection moat closes on its own.
fn give_up(state: &State, client: std::net::IpAddr, connection: &Connection, reason: Close) {
    state
        .metrics
        .connections_closed
        .get_or_create(&ReasonLabels {
            reason: reason.as_str(),
        })
        .inc();
    match reason {
        Close::MaxRequests => tracing::info!(
            %client,
            requests = connection.carried(),
            "connection reached limits.max_requests_per_connection; closing it gracefully"
        ),
        Close::ClientResets => tracing::warn!(
            %client,
            requests = connection.carried(),
            "client reset most of its streams before their responses ended; closing the connection"
        ),
    }
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
