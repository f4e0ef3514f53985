//! The admin listener (`admin_listen`, never the public port): `/healthz` while the process
//! runs, `/readyz` while a config is loaded, shutdown has not begun and the upstream accepts
//! TCP connections, `/metrics` in the Prometheus text format, and the status page (`/`,
//! refreshing from `/status.json`; see `status`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::snapshot::{Snapshot, State};
use crate::status::report::{KeyStoreRow, Serving, SpecRow};

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
        return text(
            StatusCode::FORBIDDEN,
            "the status page answers only requests addressed to an IP address or localhost \
             (a defence against DNS rebinding): open http://127.0.0.1:<port>/ through a \
             port-forward or tunnel\n",
        );
    }
    match path {
        "/" => status_page(),
        "/status.json" => status_json(state).await,
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(state).await,
        "/metrics" => {
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
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn readiness(state: &State) -> Response<AdminBody> {
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
    if upstream_connects(&snapshot).await.is_none() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "upstream unreachable\n");
    }
    // Which key store each scheme serves from, so replicas can be compared.
    let mut body = String::from("ready\n");
    for store in snapshot.key_stores() {
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

/// The status page lists key ids and subjects: a web page the operator happens to visit
/// must not read it by pointing its own host name at 127.0.0.1 (DNS rebinding). Such a
/// request is addressed to that name (its `Host`, or an absolute-form target's authority,
/// which wins: see `frame::authority`); one typed as an address, or `localhost`, is not.
/// Prometheus scrapes `/metrics` by service name, so only the page's two paths are checked.
fn addressed_by_ip(authority: Option<&str>) -> bool {
    let Some(host) = authority else {
        // HTTP/1.0 tools send none; browsers always do.
        return true;
    };
    let name = match host.strip_prefix('[') {
        // `[::1]:9090`
        Some(bracketed) => match bracketed.split_once(']') {
            Some((address, _)) => address,
            None => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// What the status report shows of `snapshot`.
pub(crate) fn serving(snapshot: &Snapshot, generation: i64, connect: Option<Duration>) -> Serving {
    Serving {
        generation,
        mode: snapshot.config.policy.mode.as_str(),
        spec: snapshot.spec.as_ref().map(|spec| SpecRow {
            title: spec.title.clone(),
            version: spec.info_version.clone(),
            openapi: spec.version.clone(),
            operations: spec.operations.len(),
        }),
        key_stores: snapshot
            .key_stores()
            .map(|store| KeyStoreRow {
                scheme: store.scheme.to_owned(),
                digest: store.digest.to_owned(),
                keys: store.keys,
                age_seconds: store.age.as_secs(),
            })
            .collect(),
        tls_not_after: snapshot.tls.as_ref().and_then(|tls| tls.not_after),
        upstream: upstream_address(snapshot),
        upstream_connect: connect,
    }
}

/// `host:port` of the upstream URL, without user info.
fn upstream_address(snapshot: &Snapshot) -> String {
    let url = &snapshot.config.upstream.url;
    let host = url.host().unwrap_or_default();
    match url.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// How long a TCP connection to the upstream took, within `connect_timeout`; `None` when
/// it was refused or timed out.
async fn upstream_connects(snapshot: &Snapshot) -> Option<Duration> {
    let upstream = &snapshot.config.upstream;
    let authority = upstream.url.authority()?.as_str();
    let address = if upstream.url.port_u16().is_some() {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let started = Instant::now();
    let connect = tokio::net::TcpStream::connect(address);
    match tokio::time::timeout(upstream.connect_timeout, connect).await {
        Ok(Ok(_)) => Some(started.elapsed()),
        _ => None,
    }
}

fn status_page() -> Response<AdminBody> {
    let page = crate::status::page::page();
    let mut response = Response::new(Full::new(page.html.clone()));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        CONTENT_SECURITY_POLICY,
        page.content_security_policy.clone(),
    );
    no_store(headers);
    response
}

async fn status_json(state: &State) -> Response<AdminBody> {
    let snapshot = state.snapshot.load_full();
    let connect = upstream_connects(&snapshot).await;
    let generation = state.metrics.config_generation.get();
    let report = crate::status::report::build(
        &state.metrics.board,
        serving(&snapshot, generation, connect),
    );
    let Ok(body) = serde_json::to_vec(&report) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the status\n",
        );
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    no_store(headers);
    response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_page_answers_hosts_typed_as_addresses_or_localhost_only() {
        let with_host = |host: &str| addressed_by_ip(Some(host));
        for host in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "[::1]:9090",
            "[::1]",
            "localhost:9090",
            "LOCALHOST",
            "10.1.2.3:9090",
        ] {
            assert!(with_host(host), "{host}");
        }
        for host in [
            "evil.example:9090",
            "evil.example",
            "127.0.0.1.nip.io:9090",
            "localhost.evil.example",
            "[::1",
        ] {
            assert!(!with_host(host), "{host}");
        }
        assert!(addressed_by_ip(None), "no Host: HTTP/1.0");
    }
}
