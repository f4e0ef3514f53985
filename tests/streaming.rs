//! A body no check reads — no spec, or a media type moat does not parse — goes to the model
//! as it arrives: the model has its first megabyte before the client has sent its second,
//! moat's memory does not grow with the body, and the body's limits still hold in flight
//! (413 past `max_body_bytes`, 408 past `body_read_timeout`) without the model ever getting
//! a complete request. The upstream is a plain socket server that records the bytes as they
//! come, so what it saw is what went over the wire.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use support::{Moat, config, read_response};

const MIB: usize = 1024 * 1024;

/// A minimal HTTP/1.1 server over a raw socket: it reports how many bytes of one request it
/// has received as they arrive, then how the request ended — answered 200 when the body
/// reached its declared length or the chunked terminator, or cut off (the connection closed
/// first).
struct SocketModel {
    url: String,
    progress: mpsc::Receiver<Event>,
}

#[derive(Debug, PartialEq)]
enum Event {
    /// Body bytes received so far (head excluded).
    Received(usize),
    Complete(usize),
    CutOff(usize),
}

impl SocketModel {
    fn start() -> SocketModel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (events, progress) = mpsc::channel();
        thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            serve_one(stream, &events);
        });
        SocketModel { url, progress }
    }

    /// Waits until the model has received at least `bytes` of body, or reports how it ended.
    fn wait_for(&self, bytes: usize) -> Event {
        loop {
            match self.progress.recv_timeout(Duration::from_secs(10)).unwrap() {
                Event::Received(n) if n < bytes => continue,
                event => return event,
            }
        }
    }

    /// How the request ended.
    fn end(&self) -> Event {
        loop {
            match self.progress.recv_timeout(Duration::from_secs(10)).unwrap() {
                Event::Received(_) => continue,
                event => return event,
            }
        }
    }
}

fn serve_one(mut stream: TcpStream, events: &mpsc::Sender<Event>) {
    let mut seen = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buffer).unwrap_or(0);
        seen.extend_from_slice(&buffer[..n]);
        let Some(head_end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            if n == 0 {
                let _ = events.send(Event::CutOff(0));
                return;
            }
            continue;
        };
        let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
        let body = &seen[head_end + 4..];
        let _ = events.send(Event::Received(body.len()));
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>().unwrap());
        let complete = match length {
            Some(length) => body.len() >= length,
            None => body.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            let _ = events.send(Event::Complete(body.len()));
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            let _ = stream.write_all(answer);
            return;
        }
        if n == 0 {
            let _ = events.send(Event::CutOff(body.len()));
            return;
        }
    }
}

fn post_head(headers: &str) -> String {
    format!(
        "POST /v1/blob HTTP/1.1\r\nHost: moat.test\r\nContent-Type: application/octet-stream\r\n\
         {headers}Connection: close\r\n\r\n"
    )
}

#[test]
fn the_model_gets_the_body_while_the_client_is_still_sending_it_and_memory_does_not_grow() {
    let model = SocketModel::start();
    let moat = Moat::start(&config(&model.url, "limits:\n  max_body_bytes: 67108864\n"));
    let before = moat.peak_rss();
    let length = 48 * MIB;
    let mut client = support::open(
        moat.addr,
        post_head(&format!("Content-Length: {length}\r\n")).as_bytes(),
    );
    let chunk = vec![b'x'; MIB];
    for _ in 0..(length / MIB - 1) {
        client.write_all(&chunk).unwrap();
    }
    // All but the last megabyte sent: most of it is already at the model.
    let at_model = model.wait_for(length - 4 * MIB);
    assert!(
        matches!(at_model, Event::Received(n) if n >= length - 4 * MIB),
        "{at_model:?}"
    );
    client.write_all(&chunk).unwrap();
    assert_eq!(model.end(), Event::Complete(length));
    let response = read_response(&mut client);
    assert_eq!(response.status, 200);
    let grown = moat.peak_rss().saturating_sub(before);
    eprintln!(
        "48 MiB streamed; moat's peak RSS grew by {} KiB",
        grown / 1024
    );
    assert!(grown < 16 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}

#[test]
fn a_streamed_body_past_the_limit_is_refused_413_and_never_reaches_the_model_whole() {
    let model = SocketModel::start();
    let moat = Moat::start(&config(&model.url, "limits:\n  max_body_bytes: 1048576\n"));
    // Chunked: no length to refuse up front, so the limit is found in flight.
    let mut client = support::open(
        moat.addr,
        post_head("Transfer-Encoding: chunked\r\n").as_bytes(),
    );
    let chunk = format!("{:x}\r\n{}\r\n", 256 * 1024, "y".repeat(256 * 1024));
    for _ in 0..8 {
        if client.write_all(chunk.as_bytes()).is_err() {
            break; // moat answered and closed: the rest has nowhere to go
        }
    }
    let _ = client.write_all(b"0\r\n\r\n");
    let response = read_response(&mut client);
    assert_eq!(
        response.status,
        413,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["code"], "body_too_large");
    assert!(matches!(model.end(), Event::CutOff(n) if n <= 2 * MIB));
}

#[test]
fn a_client_that_stalls_mid_body_is_refused_408_and_the_model_gets_no_complete_request() {
    let model = SocketModel::start();
    let moat = Moat::start(&config(&model.url, "limits:\n  body_read_timeout: 300ms\n"));
    let mut client = support::open(
        moat.addr,
        post_head("Content-Length: 200000\r\n").as_bytes(),
    );
    client.write_all(&[b'z'; 100_000]).unwrap();
    // The model already has what was sent; then the client goes quiet.
    assert_eq!(model.wait_for(100_000), Event::Received(100_000));
    let response = read_response(&mut client);
    assert_eq!(
        response.status,
        408,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["code"], "body_timeout");
    assert_eq!(model.end(), Event::CutOff(100_000));
}

#[test]
fn an_opaque_media_type_of_a_declared_operation_is_streamed_and_a_json_one_is_read_first() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /v1/blob:\n    post:\n      \
         requestBody:\n        required: true\n        content:\n          \
         application/octet-stream: {}\n          application/json:\n            \
         schema: {type: object}\n      responses: {'200': {description: ok}}\n",
    )
    .unwrap();
    let model = SocketModel::start();
    let moat = Moat::start(&config(
        &model.url,
        &format!("openapi:\n  file: {}\n", spec.display()),
    ));
    let mut client = support::open(
        moat.addr,
        post_head("Content-Length: 200000\r\n").as_bytes(),
    );
    client.write_all(&[b'z'; 100_000]).unwrap();
    assert_eq!(model.wait_for(100_000), Event::Received(100_000));
    client.write_all(&[b'z'; 100_000]).unwrap();
    assert_eq!(model.end(), Event::Complete(200_000));
    assert_eq!(read_response(&mut client).status, 200);

    // JSON is parsed and checked before any of it is forwarded: an invalid one never
    // reaches the model (its listener is still waiting for a first request).
    let head = "POST /v1/blob HTTP/1.1\r\nHost: moat.test\r\nContent-Type: application/json\r\n\
                Content-Length: 7\r\nConnection: close\r\n\r\n[1,2,3]";
    let refused = support::raw(moat.addr, head.as_bytes());
    assert_eq!(refused.status, 400);
    assert!(
        model
            .progress
            .recv_timeout(Duration::from_millis(200))
            .is_err(),
        "the model heard of a refused body"
    );
}

/// A model that answers `/early` at once without reading the upload (and then neither reads
/// nor closes), and answers anything else normally.
fn early_answering_model() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                if head.starts_with(b"POST /early") {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly");
                    thread::sleep(Duration::from_secs(10));
                } else {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                }
            });
        }
    });
    url
}

#[test]
fn a_model_that_answers_before_the_upload_ends_holds_up_no_other_request() {
    let model = early_answering_model();
    // Without its own connection the next request would wait for the upload to end:
    // past the response timeout, a 504.
    let moat = Moat::start(&config(
        &model,
        "  response_timeout: 2s\nlimits:\n  max_body_bytes: 8388608\n",
    ));
    let head = "POST /early HTTP/1.1\r\nHost: moat.test\r\nContent-Type: application/octet-stream\r\n\
                Content-Length: 4194304\r\n\r\n";
    let mut uploading = support::open(moat.addr, head.as_bytes());
    uploading.write_all(&[b'u'; 128 * 1024]).unwrap();
    let mut answer = [0u8; 12];
    uploading.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    // The upload is still open on moat's connection to the model; the next request must
    // not wait for it.
    let next = support::raw(
        moat.addr,
        b"GET /next HTTP/1.1\r\nHost: moat.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(next.status, 200);
    assert_eq!(&next.body[..], b"ok");
}

/// A chunked body that announces itself and ends empty, on an operation that requires one:
/// refused when enforced, forwarded (and counted) in shadow mode — as a body read whole is.
#[test]
fn an_empty_streamed_body_that_is_required_is_refused_only_when_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /v1/blob:\n    post:\n      \
         operationId: blob\n      requestBody:\n        required: true\n        content:\n          \
         application/octet-stream: {}\n      responses: {'200': {description: ok}}\n",
    )
    .unwrap();
    let empty = "POST /v1/blob HTTP/1.1\r\nHost: moat.test\r\nContent-Type: application/octet-stream\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n";
    for (mode, status) in [("enforce", 400), ("shadow", 200)] {
        let upstream = support::Upstream::start();
        let moat = Moat::start(&config(
            &upstream.url(),
            &format!(
                "openapi:\n  file: {}\npolicy:\n  operations:\n    blob: {{mode: {mode}}}\n",
                spec.display()
            ),
        ));
        let response = support::raw(moat.addr, empty.as_bytes());
        assert_eq!(
            response.status,
            status,
            "{mode}: {}",
            String::from_utf8_lossy(&response.body)
        );
        if status == 400 {
            assert_eq!(response.json()["code"], "body_required");
        }
    }
}
