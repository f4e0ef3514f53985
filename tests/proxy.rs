//! The proxy core end to end: the real binary between a raw-socket client and a real
//! upstream server that reports what it received.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Moat, Upstream, config, eventually, get, raw};

#[test]
fn the_path_and_query_bytes_reach_the_upstream_exactly_as_sent() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let target = "/v1/models/iris:predict/a%20b/caf%C3%A9?x=1&y=%2F&z&x=2&w=a+b";
    let response = get(moat.addr, target, &[]);
    assert_eq!(response.status, 200);
    assert_eq!(upstream.requests()[0].target, target);
}

#[test]
fn header_hygiene_strips_spoofs_hop_by_hop_and_credentials() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let response = get(
        moat.addr,
        "/echo",
        &[
            "Authorization: Bearer secret-token",
            "Connection: keep-alive, X-Moat-Key-Id, X-Hop",
            "X-Moat-Key-Id: admin",
            "X-Moat-Subject: root",
            "X-Moat-Scopes: admin",
            "X-Hop: drop-me",
            "Keep-Alive: timeout=99",
            "TE: trailers",
            "X-Forwarded-For: 6.6.6.6",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: evil.example",
            "Forwarded: for=6.6.6.6",
            "X-Real-IP: 6.6.6.6",
            "X-Custom: kept",
        ],
    );
    assert_eq!(response.status, 200);
    let seen = &upstream.requests()[0];
    for gone in [
        "authorization",
        "x-moat-key-id",
        "x-moat-subject",
        "x-moat-scopes",
        "x-hop",
        "keep-alive",
        "te",
        "forwarded",
        "x-real-ip",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(seen.all("x-forwarded-host"), vec!["moat.test"]);
    assert_eq!(
        seen.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(seen.header("x-custom"), Some("kept"));
    // Hop-by-hop headers of the upstream's response do not reach the client either.
    assert_eq!(response.header("keep-alive"), None);
    assert_eq!(response.header("x-upstream"), Some("yes"));
}

#[test]
fn forward_credentials_keeps_the_authorization_header() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(
        &upstream.url(),
        "policy:\n  forward_credentials: true\n",
    ));
    get(moat.addr, "/echo", &["Authorization: Bearer t"]);
    assert_eq!(
        upstream.requests()[0].header("authorization"),
        Some("Bearer t")
    );
}

#[test]
fn a_valid_request_id_is_kept_and_an_invalid_one_replaced() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let kept = get(moat.addr, "/a", &["X-Request-Id: trace-123.abc_D"]);
    assert_eq!(kept.header("x-request-id"), Some("trace-123.abc_D"));
    let replaced = get(moat.addr, "/b", &["X-Request-Id: bad id; drop table"]);
    let new_id = replaced.header("x-request-id").expect("an id").to_owned();
    assert_eq!(new_id.len(), 32);
    let seen = upstream.requests();
    assert_eq!(seen[0].header("x-request-id"), Some("trace-123.abc_D"));
    assert_eq!(seen[1].header("x-request-id"), Some(new_id.as_str()));
}

/// Design §1 "One interpretation": each of these could be read two ways, so none reaches
/// the model.
#[test]
fn every_ambiguous_path_is_refused_with_400_and_never_forwarded() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let targets: &[&[u8]] = &[
        b"/a/../admin",
        b"/a/./b",
        b"/..",
        b"/a//b",
        b"//a",
        b"/a%2Fb",
        b"/a%2fb",
        b"/a%5Cb",
        b"/%2e%2e/admin",
        b"/a%2E",
        b"/a%25",
        b"/a%00",
        b"/a%0d%0a",
        b"/a%zz",
        b"/a%4",
        b"/a%C3",
        b"/a\\b",
        b"/caf\xc3\xa9",
        b"/a\"b",
        b"/a{b}",
        b"/a<b>",
        b"/a?x=\xff",
        b"/a?x=%g0",
        b"*",
    ];
    for target in targets {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = raw(moat.addr, &request);
        let shown = String::from_utf8_lossy(target);
        assert_eq!(response.status, 400, "{shown} got {}", response.status);
        // Ones hyper's parser already refuses get its bare 400; the rest get moat's problem.
        if response.header("content-type") == Some("application/problem+json") {
            assert_eq!(response.json()["code"], "invalid_path", "{shown}");
        }
    }
    assert_eq!(upstream.count(), 0, "{:?}", upstream.requests());
}

#[test]
fn a_streamed_event_arrives_before_the_stream_ends() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let mut stream = support::open(
        moat.addr,
        b"POST /sse HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    );
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data: event 1") {
        let n = stream.read(&mut buffer).expect("first event in time");
        assert!(n > 0, "connection closed before the first event");
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(
        !upstream
            .sse_finished
            .load(std::sync::atomic::Ordering::SeqCst),
        "the first event was held back until the stream ended"
    );
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(text.contains("text/event-stream"), "{text}");
}

#[test]
fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let mut stream = support::open(moat.addr, b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).unwrap();
    assert!(String::from_utf8_lossy(&buffer[..n]).contains("chunk"));
    drop(stream);
    assert!(
        eventually(|| upstream.cancelled.load(std::sync::atomic::Ordering::SeqCst) == 1),
        "the upstream kept streaming to nobody"
    );
    let log = moat.wait_for_access_lines(1);
    assert_eq!(log[0]["completed"], false, "{log:?}");
}

/// `nc -N`, `shutdown(SHUT_WR)` and some HTTP/1.0 tools close their write side once the
/// request is sent: the answer must still come back, for a slow model too.
#[test]
fn a_half_closed_client_gets_its_answer() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    for (request, target) in [
        (
            "POST /slow/300 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            "/slow/300",
        ),
        ("GET /ten HTTP/1.0\r\n\r\n", "/ten"),
    ] {
        let mut stream = support::open(moat.addr, request.as_bytes());
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        let response = support::parse_response(&received);
        assert_eq!(
            response.status,
            200,
            "{request:?}: {}",
            String::from_utf8_lossy(&received)
        );
        assert_eq!(response.json()["target"], target);
    }
    assert_eq!(upstream.count(), 2);
    // The slow-client protections still hold: a half-sent head is not waited for forever.
    let mut partial = support::open(moat.addr, b"GET /x HTTP/1.1\r\nHost:");
    partial.shutdown(std::net::Shutdown::Write).unwrap();
    let mut received = Vec::new();
    let _ = partial.read_to_end(&mut received);
    assert_eq!(upstream.count(), 2, "a half-sent request reached the model");
}

#[test]
fn a_refused_upstream_is_502() {
    let dead = support::closed_port();
    let moat = Moat::start(&config(&format!("http://{dead}"), ""));
    let response = get(moat.addr, "/x", &[]);
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["code"], "upstream_unavailable");
}

/// A model server that answers the first request on each connection and, on the second,
/// reads it and closes the connection without a word — as a server whose keep-alive ran
/// out just as the request arrived. Reports the connections it accepted and each request
/// line it read.
fn closing_upstream() -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<String>>>,
    Arc<AtomicUsize>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (seen, count) = (lines.clone(), connections.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            std::thread::spawn(move || {
                for answered in [true, false] {
                    let Some(head) = support::read_head(&mut stream) else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    stream.read_exact(&mut body).unwrap();
                    seen.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap_or_default().to_owned());
                    if answered {
                        stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .unwrap();
                    }
                }
            });
        }
    });
    (addr, lines, connections)
}

#[test]
fn a_pooled_connection_the_model_closed_is_resent_only_when_idempotent() {
    let (upstream, lines, connections) = closing_upstream();
    // One proxy thread, so every request draws on the same pooled connections.
    let moat = Moat::start(&config(
        &format!("http://{upstream}/base/"),
        "runtime: {threads: 1}\n",
    ));
    let first = get(moat.addr, "/a?x=1", &[]);
    assert_eq!((first.status, &first.body[..]), (200, &b"ok"[..]));
    // The pooled connection is reused; the model drops it; the GET is sent again on a new one.
    let second = get(moat.addr, "/b", &[]);
    assert_eq!((second.status, &second.body[..]), (200, &b"ok"[..]));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    // A POST is never sent twice: the model may have acted on it.
    let post = support::post_json(moat.addr, "/c", &[], "{}");
    assert_eq!(post.status, 502, "{}", String::from_utf8_lossy(&post.body));
    assert_eq!(
        *lines.lock().unwrap(),
        [
            "GET /base/a?x=1 HTTP/1.1",
            "GET /base/b HTTP/1.1",
            "GET /base/b HTTP/1.1",
            "POST /base/c HTTP/1.1"
        ],
        "origin-form targets under the upstream's path, one resend"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_slow_upstream_is_504() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), "  response_timeout: 300ms\n"));
    let started = Instant::now();
    let response = get(moat.addr, "/slow/3000", &[]);
    assert_eq!(response.status, 504);
    assert_eq!(response.json()["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_millis(2900));
}

#[test]
fn a_post_is_not_retried_and_bodies_are_sent_with_moats_own_framing() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let response = raw(
        moat.addr,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], b"{\"a\":1}");
    // Without a spec the body streams, so it keeps a chunked framing — re-encoded by moat
    // (hyper's encoder), never the client's bytes — and never with a length beside it.
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen[0].header("content-length"), None);
}

#[test]
fn bodies_over_the_limit_are_413_whether_declared_or_streamed() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), "limits:\n  max_body_bytes: 16\n"));
    let declared = raw(
        moat.addr,
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(declared.status, 413);
    assert_eq!(declared.json()["code"], "body_too_large");
    let chunked = raw(
        moat.addr,
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          11\r\n0123456789abcdefg\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 413);
    let fits = raw(
        moat.addr,
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\nConnection: close\r\n\r\n0123456789abcdef",
    );
    assert_eq!(fits.status, 200);
    assert_eq!(upstream.count(), 1);
}

#[test]
fn oversized_headers_are_431_and_oversized_targets_414() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(
        &upstream.url(),
        "limits:\n  max_header_bytes: 1024\n  max_uri_bytes: 256\n",
    ));
    let big = format!("X-Big: {}", "a".repeat(2000));
    let response = get(moat.addr, "/x", &[&big]);
    assert_eq!(response.status, 431);
    assert_eq!(response.json()["code"], "headers_too_large");
    let long = format!("/{}", "a".repeat(300));
    let response = get(moat.addr, &long, &[]);
    assert_eq!(response.status, 414);
    assert_eq!(response.json()["code"], "uri_too_long");
    let huge = format!("X-Huge: {}", "a".repeat(64 * 1024));
    let response = get(moat.addr, "/x", &[&huge]);
    assert_eq!(response.status, 431);
    assert_eq!(upstream.count(), 0);
}

#[test]
fn a_client_that_never_finishes_its_body_gets_408() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(
        &upstream.url(),
        "limits:\n  body_read_timeout: 300ms\n",
    ));
    let mut stream = support::open(
        moat.addr,
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345",
    );
    let response = support::read_response(&mut stream);
    assert_eq!(response.status, 408);
    assert_eq!(upstream.count(), 0);
}

#[test]
fn http2_with_prior_knowledge_is_served_and_forwarded_as_http1() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = http::Request::post(moat.url("/h2?q=1"))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        let response = client.request(request).await.expect("h2 response");
        let status = response.status();
        let _ = response.into_body().collect().await;
        status
    });
    assert_eq!(status, 200);
    let seen = &upstream.requests()[0];
    assert_eq!(seen.target, "/h2?q=1");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(&seen.body[..], b"{}");
    assert_eq!(
        seen.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let upstream = Upstream::start();
    let mut moat = Moat::start(&config(&upstream.url(), "drain_timeout: 10s\n"));
    let addr = moat.addr;
    let slow = std::thread::spawn(move || get(addr, "/slow/800", &[]));
    assert!(eventually(|| upstream.count() == 1));
    moat.signal("TERM");
    // New connections are no longer accepted once draining has begun.
    assert!(eventually(|| TcpStream::connect(addr).is_err()));
    let response = slow.join().unwrap();
    assert_eq!(response.status, 200, "the in-flight request was cut off");
    assert_eq!(moat.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn health_readiness_and_metrics_are_on_the_admin_port() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    assert_eq!(get(moat.admin, "/healthz", &[]).status, 200);
    assert_eq!(get(moat.admin, "/readyz", &[]).status, 200);
    // The public port does not serve them: they are forwarded like any path.
    get(moat.addr, "/healthz", &[]);
    assert_eq!(upstream.requests()[0].target, "/healthz");
    get(moat.addr, "/a/../b", &[]);
    moat.wait_for_access_lines(2);
    let metrics = get(moat.admin, "/metrics", &[]);
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for expected in [
        r#"moat_requests_total{operation="unrouted",status="200"} 1"#,
        r#"moat_requests_total{operation="unrouted",status="400"} 1"#,
        r#"moat_rejections_total{stage="frame",code="invalid_path"} 1"#,
        "moat_request_duration_seconds_count 2",
        "moat_upstream_duration_seconds_count 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[test]
fn readiness_fails_while_the_upstream_is_down() {
    let dead = support::closed_port();
    let moat = Moat::start(&config(&format!("http://{dead}"), ""));
    assert_eq!(get(moat.admin, "/healthz", &[]).status, 200);
    assert_eq!(get(moat.admin, "/readyz", &[]).status, 503);
}

#[test]
fn every_request_gives_exactly_one_access_log_line() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let ok = get(moat.addr, "/one", &["X-Request-Id: req-ok"]);
    let bad = get(moat.addr, "/a//b", &["X-Request-Id: req-bad"]);
    assert_eq!((ok.status, bad.status), (200, 400));
    let log = moat.wait_for_access_lines(2);
    std::thread::sleep(Duration::from_millis(200));
    let log = if log.len() == 2 {
        moat.access_log()
    } else {
        log
    };
    assert_eq!(log.len(), 2, "{log:?}");
    let ok_line = log
        .iter()
        .find(|l| l["request_id"] == "req-ok")
        .expect("ok line");
    assert_eq!(ok_line["status"], 200);
    assert_eq!(ok_line["method"], "GET");
    assert_eq!(ok_line["client"], "127.0.0.1");
    assert_eq!(ok_line["completed"], true);
    assert!(ok_line["duration_ms"].as_f64().is_some());
    assert!(ok_line["upstream_ms"].as_f64().is_some());
    assert!(ok_line["timestamp"].is_string());
    let bad_line = log
        .iter()
        .find(|l| l["request_id"] == "req-bad")
        .expect("bad line");
    assert_eq!(bad_line["status"], 400);
    assert_eq!(bad_line["stage"], "frame");
    assert_eq!(bad_line["code"], "invalid_path");
}

#[test]
fn a_bad_config_exits_64_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\n  tiemout: 1s\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tiemout") && stderr.contains("line 4"),
        "{stderr}"
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
}

#[test]
fn healthcheck_exits_0_when_moat_is_up_and_1_when_not() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let up = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "healthcheck",
            "--url",
            &format!("http://{}/healthz", moat.admin),
        ])
        .status()
        .unwrap();
    assert!(up.success());
    let dead = support::closed_port();
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["healthcheck", "--url", &format!("http://{dead}/healthz")])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
}

#[test]
fn a_stream_that_stalls_past_idle_timeout_is_cut_off() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), "  idle_timeout: 300ms\n"));
    let started = Instant::now();
    let mut stream = support::open(moat.addr, b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .expect("closed, not timed out");
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("first"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the cut stream looked complete: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    let log = moat.wait_for_access_lines(1);
    assert_eq!(log[0]["completed"], false);
    assert!(log[0]["stream_error"].is_string(), "{log:?}");
}

#[test]
fn a_client_that_sends_its_head_too_slowly_is_disconnected() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(
        &upstream.url(),
        "limits:\n  header_read_timeout: 300ms\n",
    ));
    let started = Instant::now();
    let mut stream = support::open(moat.addr, b"GET /slowloris HTTP/1.1\r\nHost: x\r\n");
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the connection was held open"
    );
    assert_eq!(upstream.count(), 0);
}

#[test]
fn every_proxy_thread_serves_connections_on_the_one_port() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), "runtime: {threads: 3}\n"));
    // The kernel spreads connections over the three SO_REUSEPORT listeners by their
    // address hash: sixty fresh connections reach all of them, and every one is answered.
    let addr = moat.addr;
    let clients: Vec<_> = (0..60)
        .map(|i| std::thread::spawn(move || get(addr, &format!("/spread/{i}"), &[]).status))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 200);
    }
    assert_eq!(upstream.count(), 60);
}

#[test]
fn a_second_moat_on_a_port_in_use_fails_instead_of_sharing_it() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), "runtime: {threads: 2}\n"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    let second = format!(
        "listen: {}\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: {}\nruntime: {{threads: 2}}\n",
        moat.addr,
        upstream.url()
    );
    std::fs::write(&path, second).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`listen`"), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(get(moat.addr, "/still-served", &[]).status, 200);
}

#[test]
fn connections_beyond_max_connections_wait_until_a_slot_frees() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), "limits:\n  max_connections: 1\n"));
    // The one slot: an open keep-alive connection with an idle stream.
    let mut first = TcpStream::connect(moat.addr).unwrap();
    first
        .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(eventually(|| upstream.count() == 1));
    let addr = moat.addr;
    let second = std::thread::spawn(move || get(addr, "/two", &[]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        upstream.count(),
        1,
        "a second connection was served beyond the limit"
    );
    drop(first);
    assert_eq!(second.join().unwrap().status, 200);
    assert_eq!(upstream.count(), 2);
}

#[test]
fn check_warns_about_an_upstream_or_admin_listener_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let stdout = check(config("http://192.0.2.10:8000", ""));
    assert!(
        stdout.contains("the upstream is not on loopback"),
        "{stdout}"
    );
    assert!(!stdout.contains("admin_listen is not"), "{stdout}");

    // An admin listener off loopback shows its status page to that network: said too.
    let stdout = check(
        config("http://127.0.0.1:8000", "")
            .replace("admin_listen: 127.0.0.1:0", "admin_listen: 0.0.0.0:0"),
    );
    assert!(
        stdout.contains("warning: admin_listen is not on loopback"),
        "{stdout}"
    );
    assert!(!stdout.contains("the upstream is not"), "{stdout}");
}
