//! A real browser for the admin page: Debian's headless `chromium`, driven over the
//! W3C WebDriver protocol by `chromedriver` (package `chromium-driver`), both installed by
//! `.ci/run`. The page is loaded as an operator's browser loads it — its script runs, its
//! Content-Security-Policy is enforced — and the rendered DOM is read back by script.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// `chromedriver` and `chromium`, or `None` (the test skips) when either is missing —
/// unless `MOAT_REQUIRE_BROWSER` is set, as `scripts/test` does.
fn programs() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str, var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/usr/bin").join(name)))
            .filter(|path| path.exists())
    };
    let found =
        find("chromedriver", "MOAT_TEST_CHROMEDRIVER").zip(find("chromium", "MOAT_TEST_CHROMIUM"));
    if found.is_none() {
        assert!(
            std::env::var_os("MOAT_REQUIRE_BROWSER").is_none(),
            "chromium and chromedriver are missing: run .ci/run (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: chromium or chromedriver is missing (.ci/run installs them)");
    }
    found
}

impl Browser {
    /// A fresh headless Chromium with an empty profile and a window of `width` × `height`.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let (chromedriver, chromium) = programs()?;
        let addr = super::closed_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + super::WAIT;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The flags the machine notes name: without the background-networking ones
        // Chromium keeps trying hosts a closed network refuses.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--window-size={width},{height}"),
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let created = browser.call(
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args}
            }}}),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        Some(browser)
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = body.to_string();
        // chromedriver refuses requests whose Host is not its own loopback address.
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let (status, body) = exchange(self.addr, &request);
        let value: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("chromedriver: {}", String::from_utf8_lossy(&body)));
        assert_eq!(status, 200, "{method} {path}: {value}");
        value["value"].clone()
    }

    fn session_path(&self, command: &str) -> String {
        format!("/session/{}/{command}", self.session)
    }

    pub fn open(&self, url: &str) {
        self.call("POST", &self.session_path("url"), &json!({"url": url}));
    }

    /// Resizes the window (W3C Set Window Rect).
    pub fn resize(&self, width: u32, height: u32) {
        let rect = json!({"width": width, "height": height});
        self.call("POST", &self.session_path("window/rect"), &rect);
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("execute/sync"),
            &json!({"script": script, "args": []}),
        )
    }

    /// Waits up to 20 s for `script` to return `true`.
    pub fn wait_until(&self, script: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.eval(script) == Value::Bool(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The rendered page as PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = self.call("GET", &self.session_path("screenshot"), &json!({}));
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }
}

/// Sends one request and reads its response by `Content-Length` (chromedriver keeps the
/// connection open whatever the request says).
fn exchange(addr: SocketAddr, request: &str) -> (u16, Vec<u8>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to chromedriver");
    // Loading a page and running a script take seconds at most; a minute means a hang.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("chromedriver answered {status_line:?}"));
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (status, body)
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium too; a panicking test still gets here.
        if !self.session.is_empty() {
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
                self.session, self.addr
            );
            let _ = std::panic::catch_unwind(|| exchange(self.addr, &request));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
