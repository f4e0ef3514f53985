//! The admin listener (`admin_listen`, never the public port): `/healthz` while the process
//! runs, `/readyz` while a config is loaded, shutdown has not begun and the upstream accepts
//! TCP connections, and `/metrics` in the Prometheus text format.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::body::ResponseBody;
use crate::metrics::KeyStoreState;
use crate::snapshot::{Snapshot, State};

pub async fn serve(state: Arc<State>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}

async fn route(state: &State, request: Request<Incoming>) -> Response<ResponseBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(state).await,
        "/metrics" => {
            let snapshot = state.snapshot.load();
            state.metrics.key_stores(key_stores(&snapshot));
            let mut response = text(StatusCode::OK, state.metrics.encode());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn readiness(state: &State) -> Response<ResponseBody> {
    if state.draining.load(Ordering::Relaxed) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let snapshot = state.snapshot.load_full();
    // Its keys all get 503: send the traffic to a replica that can check them.
    if let Some((scheme, age, max)) = snapshot.auth.stale_key_store() {
        let body = format!(
            "key store {scheme}: not re-read for {} s (max_store_age {} s)\n",
            age.as_secs(),
            max.as_secs()
        );
        return text(StatusCode::SERVICE_UNAVAILABLE, body);
    }
    let upstream = &snapshot.config.upstream;
    let authority = upstream.url.authority().map(|a| a.as_str().to_owned());
    let Some(authority) = authority else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no upstream\n");
    };
    let address = if upstream.url.port_u16().is_some() {
        authority
    } else {
        format!("{authority}:80")
    };
    let connect = tokio::net::TcpStream::connect(address);
    match tokio::time::timeout(upstream.connect_timeout, connect).await {
        Ok(Ok(_)) => {
            // Which key store each scheme serves from, so replicas can be compared.
            let mut body = String::from("ready\n");
            for store in key_stores(&snapshot) {
                body.push_str(&format!(
                    "key store {}: digest {}, {} keys, read {} s ago\n",
                    store.scheme,
                    store.digest,
                    store.keys,
                    store.age.as_secs()
                ));
            }
            if let Some(line) = snapshot.limits.store_status() {
                body.push_str(&line);
                body.push('\n');
            }
            text(StatusCode::OK, body)
        }
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "upstream unreachable\n"),
    }
}

fn key_stores(snapshot: &Snapshot) -> impl Iterator<Item = KeyStoreState<'_>> {
    snapshot
        .auth
        .key_stores()
        .map(|(scheme, store)| KeyStoreState {
            scheme,
            digest: &store.digest,
            keys: store.records.len(),
            age: store.age(),
        })
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
