//! End-to-end harness: the real `moat` binary on ephemeral loopback ports, a real upstream
//! HTTP server that records what it received, and a raw-bytes HTTP/1.1 client for requests
//! no well-behaved client library would send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long
#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

pub mod browser;

pub const WAIT: Duration = Duration::from_secs(10);

/// A request's head read byte by byte off a raw socket (so nothing after it is consumed);
/// `None` when the connection ends first.
pub fn read_head(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub version: http::Version,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A real HTTP server standing in for the model. Paths choose its behaviour:
/// `/slow/<ms>` waits before answering, `/sse` streams three events 300 ms apart,
/// `/forever` streams a chunk every 50 ms until the connection goes away, `/stall` sends
/// one chunk and then nothing for 30 s, anything else
/// answers 200 with a short JSON body. Every request is recorded.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Streams whose body was dropped before it ended (the peer went away).
    pub cancelled: Arc<AtomicUsize>,
    pub sse_finished: Arc<AtomicBool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let sse_finished = Arc::new(AtomicBool::new(false));
        let shared = (seen.clone(), cancelled.clone(), sse_finished.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(respond(request, shared).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            cancelled,
            sse_finished,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

type Shared = (Arc<Mutex<Vec<Seen>>>, Arc<AtomicUsize>, Arc<AtomicBool>);
type UpstreamBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn respond(request: Request<Incoming>, shared: Shared) -> Response<UpstreamBody> {
    let (seen, cancelled, sse_finished) = shared;
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        version: parts.version,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    });
    let path = parts.uri.path();
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/sse" {
        let stream = async_stream(move |tx| async move {
            for i in 1..=3 {
                if tx.send(format!("data: event {i}\n\n")).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            sse_finished.store(true, Ordering::SeqCst);
        });
        return streaming("text/event-stream", stream, None);
    }
    if path == "/stall" {
        let stream = async_stream(move |tx| async move {
            let _ = tx.send("first\n".to_owned()).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        return streaming("text/plain", stream, None);
    }
    if path == "/forever" {
        let stream = async_stream(move |tx| async move {
            for i in 0.. {
                if tx.send(format!("{{\"chunk\":{i}}}\n")).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        return streaming("application/x-ndjson", stream, Some(cancelled));
    }
    if path == "/openapi.json" {
        // A model that publishes its spec, for `openapi.url`: every fetch is recorded.
        let spec = serde_json::json!({"openapi": "3.1.0", "info": {"title": "recorder", "version": "1"},
            "paths": {"/x": {"get": {"responses": {"200": {"description": "ok"}}}},
                      "/v1/models": {"get": {"responses": {"200": {"description": "ok"}}}}}});
        return Response::new(Full::new(Bytes::from(spec.to_string())).boxed());
    }
    let reply = serde_json::json!({"ok": true, "target": target, "bytes": body.len()});
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())).boxed());
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    // A hop-by-hop header moat must not pass back to the client.
    response
        .headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    response
        .headers_mut()
        .insert("x-upstream", "yes".parse().unwrap());
    response
}

/// A channel fed by a producer task; the task stops when the receiver is dropped.
fn async_stream<F, Fut>(producer: F) -> tokio::sync::mpsc::Receiver<String>
where
    F: FnOnce(tokio::sync::mpsc::Sender<String>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(producer(tx));
    rx
}

/// Counts a stream dropped by hyper: only `/forever` carries one, and it never ends by
/// itself, so every drop is a peer that went away.
struct DropFlag(Option<Arc<AtomicUsize>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        if let Some(flag) = &self.0 {
            flag.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn streaming(
    content_type: &'static str,
    rx: tokio::sync::mpsc::Receiver<String>,
    cancelled: Option<Arc<AtomicUsize>>,
) -> Response<UpstreamBody> {
    let flag = DropFlag(cancelled);
    let stream = futures_util::stream::unfold((rx, flag), |(mut rx, flag)| async move {
        let item = rx.recv().await?;
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(item))),
            (rx, flag),
        ))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    response
}

/// A running `moat serve` with its stdout captured line by line.
pub struct Moat {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
    pub config_path: PathBuf,
}

/// A config for tests: ephemeral ports, the given upstream, and `extra` YAML appended.
pub fn config(upstream: &str, extra: &str) -> String {
    format!("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: {upstream}\n{extra}")
}

impl Moat {
    pub fn start(config_text: &str) -> Moat {
        Self::start_with_env(config_text, &[])
    }

    pub fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> Moat {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("moat.yaml");
        std::fs::write(&config_path, config_text).expect("write config");
        let mut moat = Self::start_at(&config_path, env);
        moat._dir = Some(dir);
        moat
    }

    /// `moat serve --config config_path`, the file already written by the caller.
    pub fn start_at(config_path: &std::path::Path, env: &[(&str, &str)]) -> Moat {
        let config_path = config_path.to_owned();
        let mut command = Command::new(env!("CARGO_BIN_EXE_moat"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("MOAT_LOG", "info")
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("DOTENV_PRIVATE_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn moat");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let err_sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                err_sink.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let found = lines.lock().unwrap().iter().find_map(|line| {
                let json: serde_json::Value = serde_json::from_str(line).ok()?;
                if json["message"] != "listening" {
                    return None;
                }
                Some((
                    json["listen"].as_str()?.parse().ok()?,
                    json["admin"].as_str()?.parse().ok()?,
                ))
            });
            if let Some((addr, admin)) = found {
                return Moat {
                    child,
                    addr,
                    admin,
                    lines,
                    _dir: None,
                    config_path,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "moat exited with {status} before listening:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
            assert!(Instant::now() < deadline, "moat did not start in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Access-log records, parsed.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|json| json["target"] == "moat::access")
            .collect()
    }

    /// Waits until `count` access-log lines were written.
    pub fn wait_for_access_lines(&self, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.access_log();
            if log.len() >= count || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// moat's peak resident memory so far, in bytes (`VmHWM` from /proc).
    pub fn peak_rss(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        kib * 1024
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Connects and sends `request` as it is, leaving the connection open for reading.
pub fn open(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).expect("write");
    stream
}

/// Sends `raw` bytes as they are and reads one response (the connection is closed after).
pub fn raw(addr: SocketAddr, raw: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(raw).expect("write");
    read_response(&mut stream)
}

/// A GET with `Connection: close` and the given extra header lines.
pub fn get(addr: SocketAddr, target: &str, headers: &[&str]) -> RawResponse {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: moat.test\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    raw(addr, request.as_bytes())
}

/// A GET to the admin listener as a browser sends it: `Host` is the address itself (the
/// status page refuses names, against DNS rebinding).
pub fn admin_get(addr: SocketAddr, target: &str) -> RawResponse {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    raw(addr, request.as_bytes())
}

pub fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buffer = Vec::new();
    let _ = stream.read_to_end(&mut buffer);
    parse_response(&buffer)
}

pub fn parse_response(buffer: &[u8]) -> RawResponse {
    let split = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buffer)));
    let head = String::from_utf8_lossy(&buffer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buffer[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// The Python of the model-server virtualenv (`scripts/test` makes `.venv`), or
/// `MOAT_TEST_PYTHON`; `None` (the test says it skipped) when there is none, unless CI's
/// `MOAT_REQUIRE_MODEL_SERVER` makes that a failure.
pub fn model_python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("MOAT_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("MOAT_REQUIRE_MODEL_SERVER").is_none(),
        "no Python with FastAPI at {}: run scripts/test",
        python.display()
    );
    eprintln!("skipped: no model-server virtualenv (scripts/test creates it)");
    None
}

/// `python -m uvicorn app:app` in `dir` on a free loopback port, not waited for (moat must
/// wait for the model itself); the child (kill it) and its port.
pub fn uvicorn(python: &std::path::Path, dir: &std::path::Path) -> (Child, u16) {
    let port = closed_port().port();
    let child = Command::new(python)
        .args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start uvicorn");
    (child, port)
}

/// A Python test server of `tests/` (a FastAPI app under uvicorn, from the virtualenv),
/// killed when dropped. `None` when the virtualenv is missing (see [`model_python`]).
pub struct PyServer {
    child: Child,
    pub port: u16,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyServer {
    /// Starts `dir/app.py` (relative to the crate) without waiting for it to listen.
    pub fn start(dir: &str) -> Option<PyServer> {
        let python = model_python()?;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
        let (child, port) = uvicorn(&python, &root);
        Some(PyServer { child, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server received (`GET /_test/log`, not in its spec: asked of it directly).
    pub fn log(&self) -> serde_json::Value {
        get(
            format!("127.0.0.1:{}", self.port).parse().expect("address"),
            "/_test/log",
            &[],
        )
        .json()
    }
}

/// Runs the moat binary with `args` and extra environment (no age identity inherited),
/// killing it if it runs past [`WAIT`] (a `serve` that should have refused to start).
pub fn run_moat(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moat"));
    command
        .args(args)
        .env_remove("MOAT_AGE_IDENTITY")
        .env_remove("MOAT_AGE_IDENTITY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("DOTENV_PRIVATE_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("run moat");
    let pipe = |mut reader: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = reader.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().expect("stdout")));
    let stderr = pipe(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("moat {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Stdout then stderr of a finished command, as text.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `moat keys ARGS --store STORE`, asserts it succeeded, and returns its stdout.
/// `moat keys ARGS… --store STORE` (a path or a `redis://` URL) run from outside the
/// repository, so no `config/moat.yaml` is picked up: (success, stdout, stderr).
pub fn moat_keys_output(store: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("keys")
        .args(args)
        .args(["--store", store])
        .env_remove("MOAT_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run moat keys");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// [`moat_keys_output`] that must succeed: its stdout, trimmed.
pub fn moat_keys_at(store: &str, args: &[&str]) -> String {
    let (ok, stdout, stderr) = moat_keys_output(store, args);
    assert!(ok, "moat keys {args:?}: {stderr}");
    stdout.trim().to_owned()
}

pub fn moat_keys(store: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("keys")
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .expect("run moat keys");
    assert!(
        output.status.success(),
        "moat keys {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The value of the first metric line on the admin port that starts with `line_start`.
pub fn metric(moat: &Moat, line_start: &str) -> u64 {
    let text = String::from_utf8_lossy(&get(moat.admin, "/metrics", &[]).body).into_owned();
    text.lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, for token claims.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A JWT of `claims` signed with HS256 and `secret`.
pub fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key"),
    )
    .expect("sign")
}

/// Waits up to [`WAIT`] for `condition`.
pub fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// An address where nothing listens.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub fn status_of(response: &Response<Incoming>) -> StatusCode {
    response.status()
}

/// Any request, with `Connection: close`; `Content-Length` is added for a non-empty body.
pub fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &[u8],
) -> RawResponse {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: moat.test\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes)
}

/// A JSON POST.
/// A predict call on `tests/fixtures/model.yaml`'s operation, with an API key.
pub fn predict_with_key(moat: &Moat, key: &str) -> RawResponse {
    post_json(
        moat.addr,
        "/v1/models/iris:predict",
        &[&format!("X-API-Key: {key}"), "X-Tenant: t-1"],
        r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
    )
}

pub fn post_json(addr: SocketAddr, target: &str, headers: &[&str], body: &str) -> RawResponse {
    let mut all = vec!["Content-Type: application/json"];
    all.extend_from_slice(headers);
    send(addr, "POST", target, &all, body.as_bytes())
}

/// The path of a file under `tests/fixtures/`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the shipped `config/` (moat.yaml, keys.yaml, openapi.json) in a fresh
/// directory, to run moat in as its working directory.
pub fn shipped_config() -> tempfile::TempDir {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    for file in ["moat.yaml", "keys.yaml", "openapi.json"] {
        std::fs::copy(
            root.join("config").join(file),
            dir.path().join("config").join(file),
        )
        .expect("copy the shipped config");
    }
    dir
}

/// A two-thread runtime for tests that drive async clients (h2, hyper) themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A config in front of `upstream` with the model fixture spec and every operation needing
/// an API key from `store`.
pub fn keyed_config(upstream: &Upstream, store: &std::path::Path) -> String {
    config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n",
            fixture("model.yaml"),
            store.display()
        ),
    )
}

/// A real `redis-server` (Debian's package) on a loopback port of its own, without
/// persistence; killed when dropped. `None` (the test skips) when it is not installed,
/// unless `MOAT_REQUIRE_REDIS` is set, as `scripts/test` does.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// With [`Redis::start_tls`]: the TLS port, and the server's certificate and key.
    pub tls: Option<(u16, PathBuf, PathBuf)>,
    /// Keeps its data across [`Redis::stop`] and [`Redis::resume`] (an append-only file
    /// fsynced on every write), as a production Redis would.
    persistent: bool,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Also listening for TLS (no client certificates asked) on a port of its own.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Option<Redis> {
        Self::launch(Some((
            closed_port().port(),
            cert.to_owned(),
            key.to_owned(),
        )))
    }

    pub fn start() -> Option<Redis> {
        Self::launch(None)
    }

    /// One whose data survives a stop and a resume.
    pub fn start_persistent() -> Option<Redis> {
        let mut redis = Self::launch(None)?;
        redis.persistent = true;
        redis.stop();
        redis.resume();
        Some(redis)
    }

    fn launch(tls: Option<(u16, PathBuf, PathBuf)>) -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("MOAT_REQUIRE_REDIS").is_none(),
                "redis-server is not installed: apt-get install redis-server (.ci/run does)"
            );
            eprintln!("skipped: no redis-server");
            return None;
        }
        let port = closed_port().port();
        let mut redis = Redis {
            child: None,
            port,
            tls,
            persistent: false,
            _dir: tempfile::tempdir().unwrap(),
        };
        redis.resume();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data goes with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it answers `PING`.
    pub fn resume(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"].as_slice()
            } else {
                ["--appendonly", "no"].as_slice()
            })
            .arg("--dir")
            .arg(self._dir.path());
        if let Some((port, cert, key)) = &self.tls {
            command
                .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        assert!(
            eventually(|| self.command("PING").is_some_and(|r| r.starts_with("+PONG"))),
            "redis-server did not answer on port {}",
            self.port
        );
    }

    /// One inline command; the raw reply.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = [0u8; 4096];
        let n = stream.read(&mut reply).ok()?;
        Some(String::from_utf8_lossy(&reply[..n]).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three primaries (no replicas) made from Debian's `redis-server` with
/// `cluster-enabled yes`, on ephemeral ports; stopped on drop.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start() -> Option<RedisCluster> {
        Redis::start()?; // skips (or fails under MOAT_REQUIRE_REDIS) without redis-server
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| closed_port().port()).collect();
        let mut nodes = Vec::new();
        for port in &ports {
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &closed_port().port().to_string(),
                ])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            nodes.push(child);
        }
        let cluster = RedisCluster {
            nodes,
            ports,
            _dir: dir,
        };
        for port in &cluster.ports {
            assert!(eventually(|| cluster
                .cli(*port, &["PING"])
                .contains("PONG")));
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &cluster.ports {
            assert!(
                eventually(|| cluster
                    .cli(*port, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")),
                "the cluster did not settle"
            );
        }
        Some(cluster)
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `redis-cli -c -p PORT ARGS…` (following redirects); its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-c", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
