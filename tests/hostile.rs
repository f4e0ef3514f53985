//! Hostile clients and upstreams: an HTTP/2 client that resets most of its streams after
//! they reached the model is closed, every connection carries a bounded number of requests,
//! an upstream whose framing headers disagree cannot truncate a response, an upstream's
//! `Upgrade` never reaches the client, and a request its client abandoned before any
//! response is logged as 499.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use support::{Moat, Upstream, config, eventually, get, metric};

use support::runtime;

/// An HTTP/2 (prior knowledge) client connection to moat, driven in the background.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn get_request(path: &str) -> Request<()> {
    Request::get(format!("http://moat.test{path}"))
        .body(())
        .unwrap()
}

#[test]
fn a_client_that_resets_most_of_its_streams_is_closed_and_the_model_sees_a_bounded_number() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let accepted = runtime().block_on(async {
        let mut client = h2_client(moat.addr).await;
        let mut accepted = 0;
        // The paced reset: 20 streaming requests, a pause long enough for them to reach
        // the model, all 20 reset; 100 rounds if moat lets it.
        'rounds: for _ in 0..100 {
            let mut open = Vec::new();
            for _ in 0..20 {
                let Ok(ready) = client.clone().ready().await else {
                    break 'rounds;
                };
                client = ready;
                match client.send_request(get_request("/forever"), true) {
                    Ok((response, stream)) => {
                        accepted += 1;
                        open.push((response, stream));
                    }
                    Err(_) => break 'rounds,
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            for (_, mut stream) in open {
                stream.send_reset(h2::Reason::CANCEL);
            }
        }
        accepted
    });
    assert!(accepted < 1000, "the connection carried {accepted} streams");
    let reached = upstream.count();
    assert!(
        reached <= 150,
        "the model received {reached} abandoned requests"
    );
    assert_eq!(
        metric(
            &moat,
            r#"moat_connections_closed_total{reason="client_resets"}"#
        ),
        1
    );
    assert!(eventually(|| moat
        .lines()
        .iter()
        .filter(|line| line.contains("client reset most of its streams"))
        .count()
        == 1));
    // A polite client on another connection is served as before.
    assert_eq!(get(moat.addr, "/ok", &[]).status, 200);
}

#[test]
fn every_connection_carries_at_most_max_requests_per_connection() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(
        &upstream.url(),
        "limits:\n  max_requests_per_connection: 5\n",
    ));
    // HTTP/1.1 keep-alive: the fifth response says `Connection: close`, then the socket ends.
    let mut stream = TcpStream::connect(moat.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for n in 1..=5 {
        stream
            .write_all(b"GET /ok HTTP/1.1\r\nHost: moat.test\r\n\r\n")
            .unwrap();
        let response = read_one(&mut stream);
        assert_eq!(response.status, 200);
        let close = response.header("connection") == Some("close");
        assert_eq!(close, n == 5, "request {n}: {:?}", response.headers);
    }
    let _ = stream.write_all(b"GET /ok HTTP/1.1\r\nHost: moat.test\r\n\r\n");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "a sixth request was answered");

    // HTTP/2: five streams, then GOAWAY; the connection ends.
    let answered = runtime().block_on(async {
        let client = h2_client(moat.addr).await;
        let mut answered = 0;
        for _ in 0..8 {
            let Ok(mut ready) = client.clone().ready().await else {
                break;
            };
            let Ok((response, _)) = ready.send_request(get_request("/ok"), true) else {
                break;
            };
            match response.await {
                Ok(response) if response.status() == 200 => answered += 1,
                _ => break,
            }
        }
        answered
    });
    assert_eq!(answered, 5);
    assert_eq!(upstream.count(), 10);
    assert_eq!(
        metric(
            &moat,
            r#"moat_connections_closed_total{reason="max_requests"}"#
        ),
        2
    );
}

#[test]
fn a_request_abandoned_before_its_response_is_logged_as_499() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    runtime().block_on(async {
        let mut client = h2_client(moat.addr).await;
        client = client.ready().await.unwrap();
        let (_response, mut stream) = client
            .send_request(get_request("/slow/3000"), true)
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), async {
                while upstream.count() == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .is_ok()
        );
        stream.send_reset(h2::Reason::CANCEL);
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let log = moat.wait_for_access_lines(1);
    assert_eq!(log[0]["status"], 499, "{log:?}");
    assert_eq!(log[0]["completed"], false);
    assert_eq!(
        metric(
            &moat,
            r#"moat_client_cancelled_requests_total{phase="before_response"}"#
        ),
        1
    );
    assert_eq!(
        metric(
            &moat,
            r#"moat_requests_total{operation="unrouted",status="499"}"#
        ),
        1
    );
}

/// One `Content-Length` response off a keep-alive connection.
fn read_one(stream: &mut TcpStream) -> support::RawResponse {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "the connection closed mid-head"
        );
        received.push(byte[0]);
    }
    let head = support::parse_response(&received);
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    received.extend_from_slice(&body);
    support::parse_response(&received)
}

/// A raw-socket upstream that answers every request with `response`, as it is.
fn raw_upstream(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                if support::read_head(&mut stream).is_some() {
                    let _ = stream.write_all(response);
                }
            });
        }
    });
    addr
}

#[test]
fn an_upstream_content_length_beside_chunked_framing_never_truncates_the_response() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n12\r\nhello world, whole\r\n0\r\n\r\n",
    );
    let moat = Moat::start(&config(&format!("http://{upstream}"), ""));
    let response = get(moat.addr, "/x", &[]);
    match response.status {
        200 => {
            assert_eq!(
                response.body, b"hello world, whole",
                "{:?}",
                response.headers
            );
            assert_ne!(
                response.header("content-length"),
                Some("3"),
                "the conflicting length was passed on"
            );
        }
        502 => {}
        other => panic!("status {other}"),
    }
}

#[test]
fn an_upstream_upgrade_header_never_reaches_the_client() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nUpgrade: websocket\r\nConnection: upgrade, x-private\r\nX-Private: 1\r\nX-Kept: yes\r\n\r\nok",
    );
    let moat = Moat::start(&config(&format!("http://{upstream}"), ""));
    let response = get(moat.addr, "/x", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");
    assert_eq!(response.header("upgrade"), None, "{:?}", response.headers);
    assert_eq!(
        response.header("x-private"),
        None,
        "a header Connection named"
    );
    assert_eq!(response.header("x-kept"), Some("yes"));
}
