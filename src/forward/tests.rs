//! Unit tests of `forward`.

use super::*;
use http::HeaderMap;
use http::header;

fn context() -> ForwardContext<'static> {
    ForwardContext {
        forwarded_for: Box::leak(Box::new(forwarded_for("192.0.2.7".parse().unwrap()))),
        proto: "http",
        client_cert: None,
        request_id: Box::leak(Box::new(RequestId::of(&headers(&[(
            "x-request-id",
            "req-1",
        )])))),
        received: std::time::Instant::now(),
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let mut map = headers(&[
        ("connection", "Connection, close, x-secret-hop, not a name"),
        ("connection", "X-Other"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("x-secret-hop", "1"),
        ("x-other", "1"),
        ("x-kept", "1"),
    ]);
    strip_hop_by_hop(&mut map);
    let names: Vec<_> = map.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, vec!["x-kept"]);
}

#[test]
fn a_client_cannot_spoof_identity_or_forwarding_headers() {
    let mut map = headers(&[
        ("x-moat-key-id", "admin"),
        ("x-moat-subject", "root"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=10.0.0.1"),
        ("x-real-ip", "10.0.0.1"),
        ("host", "public.example"),
    ]);
    prepare_request_headers(
        &mut map,
        &context(),
        None,
        &HeaderValue::from_static("up:8000"),
    );
    assert!(map.get("x-moat-key-id").is_none());
    assert!(map.get("x-moat-subject").is_none());
    assert!(map.get("forwarded").is_none());
    assert!(map.get("x-real-ip").is_none());
    let xff: Vec<_> = map.get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, vec!["192.0.2.7"]);
    assert_eq!(map["x-forwarded-proto"], "http");
    assert_eq!(map["x-forwarded-host"], "public.example");
    assert_eq!(map["host"], "up:8000");
    assert_eq!(map["x-request-id"], "req-1");
}

#[test]
fn connection_cannot_be_used_to_strip_headers_moat_adds() {
    let mut map = headers(&[("connection", "x-request-id, host, x-forwarded-for")]);
    prepare_request_headers(
        &mut map,
        &context(),
        None,
        &HeaderValue::from_static("up:8000"),
    );
    assert_eq!(map["x-request-id"], "req-1");
    assert_eq!(map["host"], "up:8000");
    assert_eq!(map["x-forwarded-for"], "192.0.2.7");
}

#[test]
fn proxy_credentials_never_go_upstream() {
    let mut map = headers(&[("proxy-authorization", "Basic x")]);
    prepare_request_headers(&mut map, &context(), None, &HeaderValue::from_static("u"));
    assert!(map.get("proxy-authorization").is_none());
}

#[test]
fn framing_headers_are_never_reused_upstream() {
    let mut map = headers(&[
        ("content-length", "5"),
        ("transfer-encoding", "chunked"),
        ("expect", "100-continue"),
        ("upgrade", "websocket"),
    ]);
    prepare_request_headers(&mut map, &context(), None, &HeaderValue::from_static("u"));
    for name in ["content-length", "transfer-encoding", "expect", "upgrade"] {
        assert!(map.get(name).is_none(), "{name} kept");
    }
}

#[test]
fn a_client_request_id_is_kept_only_when_well_formed_and_single() {
    let ok = headers(&[("x-request-id", "abc.DEF_123-x")]);
    assert_eq!(RequestId::of(&ok).as_str(), "abc.DEF_123-x");
    let long: &'static str = Box::leak("a".repeat(129).into_boxed_str());
    for bad in [
        headers(&[("x-request-id", "")]),
        headers(&[("x-request-id", "has space")]),
        headers(&[("x-request-id", "semi;colon")]),
        headers(&[("x-request-id", long)]),
        headers(&[("x-request-id", "a"), ("x-request-id", "b")]),
    ] {
        let fresh = RequestId::of(&bad);
        assert_eq!(fresh.as_str().len(), 32, "{bad:?}");
        assert!(fresh.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(RequestId::fresh().as_str(), RequestId::fresh().as_str());
    assert_eq!(RequestId::fresh().header().len(), 32);
}

#[test]
fn an_upstream_content_length_survives_only_when_it_is_the_framing_used() {
    let framed = |pairs: &[(&'static str, &'static str)], exact: Option<u64>| {
        let mut map = headers(pairs);
        drop_unframed_length(&mut map, http::StatusCode::OK, exact);
        map.get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        framed(&[("content-length", "3")], Some(3)).as_deref(),
        Some("3")
    );
    assert_eq!(
        framed(
            &[("content-length", "3"), ("transfer-encoding", "chunked")],
            None
        ),
        None,
        "chunked wins; the length must go"
    );
    assert_eq!(framed(&[("content-length", "3")], Some(18)), None);
    assert_eq!(framed(&[("content-length", "3")], None), None);
    assert_eq!(framed(&[("content-length", "x")], Some(3)), None);
    let mut not_modified = headers(&[("content-length", "40")]);
    drop_unframed_length(&mut not_modified, http::StatusCode::NOT_MODIFIED, Some(0));
    assert!(not_modified.contains_key(header::CONTENT_LENGTH));
}

#[test]
fn upgrade_is_hop_by_hop() {
    let mut map = headers(&[
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("x-kept", "1"),
    ]);
    strip_hop_by_hop(&mut map);
    assert!(!map.contains_key(header::UPGRADE));
    assert!(map.contains_key("x-kept"));
}

#[test]
fn only_idempotent_methods_may_be_retried() {
    assert!(is_idempotent(&Method::GET));
    assert!(is_idempotent(&Method::PUT));
    assert!(!is_idempotent(&Method::POST));
    assert!(!is_idempotent(&Method::PATCH));
}
