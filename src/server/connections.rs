//! Serving one accepted connection: the TLS handshake or the wait for a first byte, then
//! hyper with the pipeline as its service, until the connection ends — gracefully when the
//! server stops or moat gives up on it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::plain_on_tls;
use super::proxy::Shared;
use crate::config::Limits;
use crate::connection::{Close, Connection};
use crate::idle::IdleIo;
use crate::metrics::ReasonLabels;
use crate::pipeline::{self, Peer, ResponseBody};
use crate::snapshot::State;

/// How long a connection closed for resetting too many streams gets to wind down after
/// its GOAWAY: enough for a response in its last packets, not for new work.
const RESET_GRACE: Duration = Duration::from_secs(1);

/// The connection builders a proxy thread serves with.
pub(super) struct Protocols {
    /// Plain TCP: HTTP/1.1, or HTTP/2 by prior knowledge.
    auto: auto::Builder<TokioExecutor>,
    // On TLS, ALPN has already chosen the protocol: no preface sniffing, so hyper's own
    // header-read timeout governs from the first byte.
    http1_only: auto::Builder<TokioExecutor>,
    http2_only: auto::Builder<TokioExecutor>,
}

impl Protocols {
    pub(super) fn new(limits: &Limits) -> Protocols {
        let auto = connection_builder(limits);
        Protocols {
            http1_only: auto.clone().http1_only(),
            http2_only: auto.clone().http2_only(),
            auto,
        }
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

/// What the task serving one connection holds besides the connection: the state, the stop
/// signal, and how long the client may stay silent (before its first byte, and between
/// requests).
struct Task {
    state: Arc<State>,
    stopping: watch::Receiver<bool>,
    silence: Duration,
}

impl Task {
    fn of(shared: &Shared) -> Task {
        Task {
            state: shared.state.clone(),
            stopping: shared.stopping.clone(),
            silence: shared.limits.header_read_timeout,
        }
    }

    /// Serves one connection to its end: I/O that reads as closed once idle for
    /// `silence`, hyper, and a graceful close when the server stops or moat gives up on
    /// the connection (its request limit or reset budget; logged once and counted).
    async fn serve<I>(mut self, builder: &auto::Builder<TokioExecutor>, stream: I, peer: Peer)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connection = peer.connection.clone();
        let client = peer.ip;
        let stream = IdleIo::new(stream, connection.clone(), self.silence);
        let service = pipeline_service(self.state.clone(), peer);
        let mut served = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
        let close = tokio::select! {
            result = served.as_mut() => return ended(result),
            _ = self.stopping.wait_for(|stop| *stop) => None,
            reason = connection.closing() => Some(reason),
        };
        served.as_mut().graceful_shutdown();
        if let Some(reason) = close {
            give_up(&self.state, client, &connection, reason);
        }
        if close == Some(Close::ClientResets) {
            if let Ok(result) = tokio::time::timeout(RESET_GRACE, served).await {
                ended(result);
            }
        } else {
            ended(served.await);
        }
    }
}

/// Serves a TLS connection once its handshake is done, with the protocol ALPN chose; a
/// connection that opens with anything but a handshake gets a plain-HTTP answer instead.
pub(super) fn spawn_tls(
    shared: &Shared,
    protocols: &Protocols,
    stream: TcpStream,
    peer: Peer,
    slot: OwnedSemaphorePermit,
) {
    let task = Task::of(shared);
    let builders = (protocols.http1_only.clone(), protocols.http2_only.clone());
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        match first_byte(&stream, &task).await {
            Some(first) if plain_on_tls::is_tls(first) => {
                // The peek and the handshake share one header-read timeout.
                let left = task.silence.saturating_sub(start.elapsed());
                task.serve_tls(stream, peer, left, &builders).await;
            }
            Some(_) => plain_on_tls::refuse(&task.state, stream, peer.ip).await,
            None => {}
        }
        drop(slot);
    });
}

impl Task {
    /// The handshake within `timeout`, then the connection served by the builder for the
    /// protocol ALPN chose: HTTP/1.1 (`builders.0`) or HTTP/2 (`builders.1`).
    async fn serve_tls(
        self,
        stream: TcpStream,
        peer: Peer,
        timeout: Duration,
        builders: &(auto::Builder<TokioExecutor>, auto::Builder<TokioExecutor>),
    ) {
        let handshake = handshake(&self.state, stream, peer, timeout);
        if let Some(Some((stream, peer))) = until_stopped(handshake, self.stopping.clone()).await {
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = if h2 { &builders.1 } else { &builders.0 };
            self.serve(builder, stream, peer).await;
        }
    }
}

/// Serves a plain TCP connection once its client has sent a byte.
pub(super) fn spawn_plain(
    shared: &Shared,
    protocols: &Protocols,
    stream: TcpStream,
    peer: Peer,
    slot: OwnedSemaphorePermit,
) {
    let task = Task::of(shared);
    let builder = protocols.auto.clone();
    tokio::spawn(async move {
        // The auto builder sniffs for the HTTP/2 preface before any of hyper's
        // timeouts start: a client that sends nothing must not hold a slot.
        if first_byte(&stream, &task).await.is_some() {
            task.serve(&builder, stream, peer).await;
        }
        drop(slot);
    });
}

/// The connection's first byte, left unread; `None` when the client sends nothing within
/// the header-read timeout, closes, or the server stops first.
async fn first_byte(stream: &TcpStream, task: &Task) -> Option<u8> {
    let mut first = [0u8; 1];
    let peek = tokio::time::timeout(task.silence, stream.peek(&mut first));
    match until_stopped(peek, task.stopping.clone()).await {
        Some(Ok(Ok(1))) => Some(first[0]),
        _ => None,
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

/// The pipeline as hyper's service for one connection's requests, each from `peer`.
fn pipeline_service(
    state: Arc<State>,
    peer: Peer,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Send {
    service_fn(move |request| {
        let state = state.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(pipeline::handle(&state, request, peer).await) }
    })
}

fn ended(result: Result<(), impl std::fmt::Display>) {
    if let Err(error) = result {
        tracing::debug!(error = %error, "connection ended with an error");
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
