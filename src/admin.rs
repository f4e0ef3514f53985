//! The admin listener (`admin_listen`, never the public port): `/healthz` while the process
//! runs, `/readyz` while a config is loaded, shutdown has not begun and the upstream accepts
//! TCP connections, `/metrics` in the Prometheus text format, and the status page (`/`,
//! refreshing from `/status.json`; see `status`).

mod status_page;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::KeyStoreState;
use crate::snapshot::{Snapshot, State};
use status_page::{REBINDING_REFUSAL, addressed_by_ip, status_json, status_page};

// The status report's tests build what it shows of a snapshot.
#[cfg(test)]
pub(crate) use status_page::serving;

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(serve_connection(state.clone(), stream));
    }
}

/// One admin connection, HTTP/1.1 only, with 5 s to send a request head.
async fn serve_connection(state: Arc<State>, stream: TcpStream) {
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(5))
        .serve_connection(TokioIo::new(stream), service);
    let _ = connection.await;
}

/// The admin listener answers with small bodies it holds whole.
type AdminBody = Full<Bytes>;

async fn route(state: &State, request: Request<Incoming>) -> Response<AdminBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let authority =
        match crate::frame::authority(request.uri(), request.version(), request.headers()) {
            Ok(authority) => authority,
            Err(problem) => {
                return text(StatusCode::BAD_REQUEST, format!("{}\n", problem.detail()));
            }
        };
    let path = request.uri().path();
    if matches!(path, "/" | "/status.json") && !addressed_by_ip(authority) {
        return text(StatusCode::FORBIDDEN, REBINDING_REFUSAL);
    }
    match path {
        "/" => status_page(),
        "/status.json" => status_json(state).await,
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(state).await,
        "/metrics" => metrics(state),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `/metrics`, with the key stores and the limit store's circuit as they are now.
fn metrics(state: &State) -> Response<AdminBody> {
    let snapshot = state.snapshot.load();
    state.metrics.key_stores(snapshot.key_stores());
    if let Some(circuit) = snapshot.limits.store_state() {
        state.metrics.limits.store_state.set(circuit);
    }
    let mut response = text(StatusCode::OK, state.metrics.encode());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// A file store by its digest and read time; a Redis store by its version, when Redis last
/// confirmed it, and how long the last change took to serve.
fn key_store_line(store: &KeyStoreState<'_>) -> String {
    match store.redis {
        None => format!(
            "key store {}: digest {}, {} keys, read {} s ago\n",
            store.scheme,
            store.digest,
            store.keys,
            store.age.as_secs()
        ),
        Some(redis) => format!(
            "key store {}: redis version {}, {} keys, confirmed {:.1} s ago, last change applied in {} ms\n",
            store.scheme,
            redis.version,
            store.keys,
            store.age.as_secs_f64(),
            redis.last_lag.as_millis()
        ),
    }
}

async fn readiness(state: &State) -> Response<AdminBody> {
    if state.draining.load(Ordering::Relaxed) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let snapshot = state.snapshot.load_full();
    // Its keys all get 503: send the traffic to a replica that can check them.
    if let Some((scheme, age, max)) = snapshot.auth.stale_key_store() {
        let redis = snapshot
            .key_stores()
            .find(|s| s.scheme == scheme)
            .and_then(|s| s.redis);
        let body = match redis {
            Some(redis) if !redis.synced => {
                format!("key store {scheme}: Redis not reached yet; every key is refused\n")
            }
            _ => format!(
                "key store {scheme}: not {} for {} s (max_store_age {} s)\n",
                if redis.is_some() {
                    "confirmed by Redis"
                } else {
                    "re-read"
                },
                age.as_secs(),
                max.as_secs()
            ),
        };
        return text(StatusCode::SERVICE_UNAVAILABLE, body);
    }
    if upstream_connects(&snapshot).await.is_none() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "upstream unreachable\n");
    }
    text(StatusCode::OK, ready(&snapshot))
}

/// The ready answer: which key store each scheme serves from, so replicas can be compared,
/// and the limit store's state.
fn ready(snapshot: &Snapshot) -> String {
    let mut body = String::from("ready\n");
    for store in snapshot.key_stores() {
        body.push_str(&key_store_line(&store));
    }
    if let Some(line) = snapshot.limits.store_status() {
        body.push_str(&line);
        body.push('\n');
    }
    body
}

/// How long a TCP connection to the upstream took, within `connect_timeout`; `None` when
/// it was refused or timed out.
async fn upstream_connects(snapshot: &Snapshot) -> Option<Duration> {
    let upstream = &snapshot.config.upstream;
    let address = connect_address(&upstream.url)?;
    let started = Instant::now();
    let connect = tokio::net::TcpStream::connect(address);
    match tokio::time::timeout(upstream.connect_timeout, connect).await {
        Ok(Ok(_)) => Some(started.elapsed()),
        _ => None,
    }
}

/// Where a URL's server listens: its authority, with port 80 when it names none.
fn connect_address(url: &http::Uri) -> Option<String> {
    let authority = url.authority()?.as_str();
    Some(if url.port_u16().is_some() {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

/// The admin answers describe this moment: never cached, never sniffed into another type.
fn no_store(headers: &mut http::HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<AdminBody> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
