//! The status page and the report behind it (`/`, `/status.json`; see `status`), answered
//! only to requests addressed to an IP address or localhost.

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http::StatusCode;
use http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue};
use http_body_util::Full;

use super::{AdminBody, no_store, text, upstream_connects};
use crate::metrics::KeyStoreState;
use crate::snapshot::{Snapshot, State};
use crate::spec::Spec;
use crate::status::report::{KeyStoreRow, Serving, SpecRow};

/// Why the status page refused a request addressed to a host name.
pub(super) const REBINDING_REFUSAL: &str = "the status page answers only requests addressed to \
    an IP address or localhost (a defence against DNS rebinding): open \
    http://127.0.0.1:<port>/ through a port-forward or tunnel\n";

/// The status page lists key ids and subjects: a web page the operator happens to visit
/// must not read it by pointing its own host name at 127.0.0.1 (DNS rebinding). Such a
/// request is addressed to that name (its `Host`, or an absolute-form target's authority,
/// which wins: see `frame::authority`); one typed as an address, or `localhost`, is not.
/// Prometheus scrapes `/metrics` by service name, so only the page's two paths are checked.
pub(super) fn addressed_by_ip(authority: Option<&str>) -> bool {
    let Some(host) = authority else {
        // HTTP/1.0 tools send none; browsers always do.
        return true;
    };
    host_name(host).is_some_and(|name| {
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
    })
}

/// The host of a `Host` value, without its port; `None` when it is malformed.
fn host_name(host: &str) -> Option<&str> {
    match host.strip_prefix('[') {
        // `[::1]:9090`
        Some(bracketed) => bracketed.split_once(']').map(|(address, _)| address),
        None => Some(host.rsplit_once(':').map_or(host, |(name, _)| name)),
    }
}

pub(super) fn status_page() -> Response<AdminBody> {
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

pub(super) async fn status_json(state: &State) -> Response<AdminBody> {
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

/// What the status report shows of `snapshot`.
pub(crate) fn serving(snapshot: &Snapshot, generation: i64, connect: Option<Duration>) -> Serving {
    Serving {
        generation,
        mode: snapshot.config.policy.mode.as_str(),
        spec: snapshot.spec.as_deref().map(spec_row),
        key_stores: snapshot.key_stores().map(key_store_row).collect(),
        tls_not_after: snapshot.tls.as_ref().and_then(|tls| tls.not_after),
        upstream: snapshot.config.upstream.address(),
        upstream_connect: connect,
    }
}

fn spec_row(spec: &Spec) -> SpecRow {
    SpecRow {
        title: spec.title.clone(),
        version: spec.info_version.clone(),
        openapi: spec.version.clone(),
        operations: spec.operations.len(),
    }
}

fn key_store_row(store: KeyStoreState<'_>) -> KeyStoreRow {
    KeyStoreRow {
        scheme: store.scheme.to_owned(),
        digest: store.digest.to_owned(),
        keys: store.keys,
        age_seconds: store.age.as_secs(),
        redis_version: store.redis.map(|redis| redis.version),
        apply_lag_ms: store
            .redis
            .map(|redis| u64::try_from(redis.last_lag.as_millis()).unwrap_or(u64::MAX)),
    }
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
