//! Defects found by hostile testing, one regression test each: inputs swapped for a FIFO or
//! `/dev/zero` (reload must neither hang nor read without end, and a revocation made
//! afterwards still applies), a failed reload that must notice its files being fixed,
//! keep-alive clients after an early refusal (Python's `http.client`), one key id in two
//! stores, RFC 9112 Host rules on both listeners, a large dotenv file, and overlays that
//! loosen the spec.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    Moat, Upstream, config, eventually, keyed_config, metric, moat_keys, predict_with_key,
    run_moat, text,
};

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

/// `ln -s target tmp && mv -T tmp link`: the atomic swap an operator or a volume makes.
fn swap_symlink(target: &Path, link: &Path) {
    let temporary = link.with_extension("swap");
    std::os::unix::fs::symlink(target, &temporary).unwrap();
    std::fs::rename(&temporary, link).unwrap();
}

/// The resident memory of `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .unwrap()
}

/// A keyed moat whose config also reads `env.dotenv`, with keys `victim` and `other`.
struct Keyed {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    store: PathBuf,
    victim: String,
    other: String,
}

impl Keyed {
    fn new() -> Keyed {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let store = path.join("keys.yaml");
        let victim = moat_keys(&store, &["new", "--id", "victim", "--scopes", "predict"]);
        let other = moat_keys(&store, &["new", "--id", "other", "--scopes", "predict"]);
        std::fs::write(path.join("extra.env"), "UNUSED=1\n").unwrap();
        Keyed {
            _dir: dir,
            dir: path,
            store,
            victim,
            other,
        }
    }

    fn config(&self, upstream: &Upstream) -> String {
        format!(
            "{}env:\n  dotenv: {}\n",
            keyed_config(upstream, &self.store),
            self.dir.join("extra.env").display()
        )
    }
}

#[test]
fn an_input_swapped_for_a_fifo_or_dev_zero_neither_hangs_reload_nor_keeps_a_revoked_key() {
    let upstream = Upstream::start();
    let keyed = Keyed::new();
    let moat = Moat::start(&keyed.config(&upstream));
    assert_eq!(predict_with_key(&moat, &keyed.victim).status, 200);
    let env = keyed.dir.join("extra.env");

    // The env file becomes a FIFO: the reload it triggers fails (no writer ever comes),
    // and a revocation made afterwards is refused all the same, within the usual second.
    let fifo = keyed.dir.join("pipe");
    mkfifo(&fifo);
    swap_symlink(&fifo, &env);
    std::thread::sleep(Duration::from_millis(600));
    moat_keys(&keyed.store, &["revoke", "victim"]);
    assert!(
        eventually(|| predict_with_key(&moat, &keyed.victim).status == 401),
        "the revoked key is still admitted: {}",
        moat.lines().join("\n")
    );
    assert_eq!(predict_with_key(&moat, &keyed.other).status, 200);
    // Log lines are flushed every 100 ms: the refusal may come first.
    assert!(
        eventually(|| moat.lines().iter().any(|l| l.contains("a FIFO"))),
        "the failed reload does not say why: {}",
        moat.lines().join("\n")
    );

    // Then `/dev/zero`: nothing is read past its cap, so memory stays where it was.
    let before = rss_kb(moat.pid());
    swap_symlink(Path::new("/dev/zero"), &env);
    std::thread::sleep(Duration::from_millis(600));
    moat_keys(&keyed.store, &["revoke", "other"]);
    assert!(eventually(
        || predict_with_key(&moat, &keyed.other).status == 401
    ));
    let after = rss_kb(moat.pid());
    eprintln!("RSS before the /dev/zero swap {before} kB, after the reload {after} kB");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    assert!(
        eventually(|| moat.lines().iter().any(|l| l.contains("a device"))),
        "{}",
        moat.lines().join("\n")
    );
    // Both key-store refreshes were counted apart from full reloads.
    assert!(metric(&moat, r#"moat_config_reloads_total{result="key_stores"}"#) >= 2);

    // The env file restored: a full reload succeeds again.
    std::fs::remove_file(&env).unwrap();
    std::fs::write(&env, "UNUSED=2\n").unwrap();
    assert!(eventually(|| metric(
        &moat,
        r#"moat_config_reloads_total{result="success"}"#
    ) >= 1));
}

#[test]
fn check_and_serve_refuse_a_fifo_or_a_device_at_once_naming_it() {
    let upstream = Upstream::start();
    let keyed = Keyed::new();
    let config_path = keyed.dir.join("moat.yaml");
    std::fs::write(&config_path, keyed.config(&upstream)).unwrap();
    let env = keyed.dir.join("extra.env");
    std::fs::remove_file(&env).unwrap();
    mkfifo(&env);
    // `run_moat` kills a command that does not finish within its wait: a hang fails here.
    let check = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    let said = text(&check);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains("not a regular file (a FIFO)"), "{said}");
    let serve = run_moat(&["serve", "--config", config_path.to_str().unwrap()], &[]);
    assert_eq!(serve.status.code(), Some(64), "{}", text(&serve));

    std::fs::remove_file(&env).unwrap();
    std::fs::write(&env, "UNUSED=1\n").unwrap();
    std::fs::remove_file(&keyed.store).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &keyed.store).unwrap();
    let check = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    let said = text(&check);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains("not a regular file (a device)"), "{said}");
}

#[test]
fn a_reload_that_failed_on_a_bad_env_file_recovers_when_the_file_is_fixed() {
    let upstream = Upstream::start();
    let keyed = Keyed::new();
    let moat = Moat::start(&keyed_config(&upstream, &keyed.store));
    let generation = |moat: &Moat| metric(moat, "moat_config_generation");
    let start = generation(&moat);
    // The config now names an env file with a line dotenv cannot read: the reload fails.
    let env = keyed.dir.join("extra.env");
    std::fs::write(&env, "GOOD=1\nthis line is not a variable\n").unwrap();
    std::fs::write(&moat.config_path, keyed.config(&upstream)).unwrap();
    assert!(eventually(|| metric(
        &moat,
        r#"moat_config_reloads_total{result="failure"}"#
    ) >= 1));
    assert_eq!(generation(&moat), start);
    // Fixing the env file alone — the config is not touched again — reloads.
    std::fs::write(&env, "GOOD=1\n").unwrap();
    assert!(
        eventually(|| generation(&moat) > start),
        "the fix was not seen: {}",
        moat.lines().join("\n")
    );
}

/// Python's `http.client` writes the head and the body of a POST separately, and reuses its
/// connection. Every refusal that leaves the body unread says `Connection: close`, so the
/// client reconnects instead of failing its next request.
#[test]
fn keep_alive_clients_survive_refusals_that_leave_the_body_unread() {
    let upstream = Upstream::start();
    let keyed = Keyed::new();
    let moat = Moat::start(&keyed_config(&upstream, &keyed.store));
    let script = format!(
        r#"
import http.client, json
conn = http.client.HTTPConnection("127.0.0.1", {port}, timeout=5)
body = json.dumps({{"instances": [[5.1, 3.5, 1.4, 0.2]]}}).encode()
statuses, errors, closes = [], 0, 0
for i in range(60):
    key = "moat_nobody_" + "x" * 43 if i % 2 else "{key}"
    try:
        conn.putrequest("POST", "/v1/models/iris:predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("X-API-Key", key)
        conn.putheader("X-Tenant", "t-1")
        conn.endheaders()
        conn.send(body)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        closes += response.getheader("Connection") == "close"
    except (OSError, http.client.HTTPException) as error:
        errors += 1
        conn.close()
print(json.dumps({{"statuses": statuses, "errors": errors, "closes": closes}}))
"#,
        port = moat.addr.port(),
        key = keyed.victim
    );
    let output = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got["errors"], 0, "{got}");
    assert_eq!(got["closes"], 30, "each 401 says it closes: {got}");
    let statuses = got["statuses"].as_array().unwrap();
    assert_eq!(statuses.len(), 60, "{got}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 30, "{got}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 30, "{got}");
}

#[test]
fn one_key_id_in_two_stores_is_refused_but_two_schemes_may_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    moat_keys(&a, &["new", "--id", "shared"]);
    moat_keys(&b, &["new", "--id", "shared"]);
    let config_path = dir.path().join("moat.yaml");
    let write = |second: &Path| {
        std::fs::write(
            &config_path,
            config(
                "http://127.0.0.1:9",
                &format!(
                    "auth:\n  schemes:\n    team_a: {{type: api_key, store: {}}}\n    team_b: {{type: api_key, header: X-Team-Key, store: {}}}\npolicy:\n  default: [{{team_a: []}}, {{team_b: []}}]\n",
                    a.display(),
                    second.display()
                ),
            ),
        )
        .unwrap();
    };
    write(&b);
    let check = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    let said = text(&check);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(
        said.contains("key id `shared` is in two key stores")
            && said.contains("team_a")
            && said.contains("team_b"),
        "{said}"
    );
    write(&a);
    let check = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}", text(&check));
}

fn head_of(response: &[u8]) -> String {
    String::from_utf8_lossy(response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buffer = Vec::new();
    let _ = stream.read_to_end(&mut buffer);
    String::from_utf8_lossy(&buffer).into_owned()
}

#[test]
fn host_rules_of_rfc_9112_hold_on_both_listeners() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), ""));
    let public = |request: &str| head_of(exchange(moat.addr, request).as_bytes());
    assert_eq!(
        public("GET /a HTTP/1.1\r\nHost: moat.test\r\nConnection: close\r\n\r\n"),
        "HTTP/1.1 200 OK"
    );
    for bad in [
        "GET /a HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: [::1]evil.example\r\nConnection: close\r\n\r\n",
    ] {
        let answer = exchange(moat.addr, bad);
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad:?}: {answer}");
        assert!(answer.contains("invalid_host"), "{answer}");
    }
    // HTTP/1.0 needs no Host (hyper answers a 1.0 client in 1.0).
    assert!(public("GET /a HTTP/1.0\r\n\r\n").ends_with(" 200 OK"));
    assert_eq!(upstream.count(), 2, "a refused request reached the model");

    let admin = |request: &str| head_of(exchange(moat.admin, request).as_bytes());
    assert_eq!(
        admin("GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        "HTTP/1.1 200 OK"
    );
    // The absolute-form target's authority wins over Host: evil.example is not an address.
    assert_eq!(
        admin(
            "GET http://evil.example/status.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        ),
        "HTTP/1.1 403 Forbidden"
    );
    for bad in [
        "GET /status.json HTTP/1.1\r\nHost: [::1]evil.example\r\nConnection: close\r\n\r\n",
        "GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "GET /status.json HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        assert_eq!(admin(bad), "HTTP/1.1 400 Bad Request", "{bad:?}");
    }
}

/// An upstream that answers every request with an HTTP/1.0 status line.
fn http10_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    format!("http://{addr}")
}

#[test]
fn an_http_1_0_upstream_is_relayed_as_http_1_1() {
    let moat = Moat::start(&config(&http10_upstream(), ""));
    let answer = exchange(
        moat.addr,
        "GET / HTTP/1.1\r\nHost: moat.test\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

/// 200,000 variables: read in about a second (the duplicate check used to compare each name
/// with every earlier one — minutes for this file, so `run_moat`'s wait would kill it).
#[test]
fn a_large_dotenv_file_is_read_in_linear_time() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("big.env");
    let mut lines = String::new();
    for i in 0..200_000 {
        lines.push_str(&format!("VAR_{i}=value{i}\n"));
    }
    std::fs::write(&env, lines).unwrap();
    let config_path = dir.path().join("moat.yaml");
    std::fs::write(
        &config_path,
        config(
            "http://127.0.0.1:9",
            &format!("env:\n  dotenv: {}\n", env.display()),
        ),
    )
    .unwrap();
    let check = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn moat_check_warns_when_an_overlay_removes_security_or_loosens_a_schema() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        r#"openapi: 3.1.0
info: {title: t, version: "1"}
security: [{api_key: []}]
components:
  securitySchemes:
    api_key: {type: apiKey, in: header, name: X-API-Key}
paths:
  /predict:
    post:
      operationId: predict
      requestBody:
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              properties:
                text: {type: string, maxLength: 100}
      responses: {"200": {description: ok}}
  /health:
    get:
      operationId: health
      responses: {"200": {description: ok}}
"#,
    )
    .unwrap();
    let overlay = dir.path().join("open.yaml");
    std::fs::write(
        &overlay,
        r#"overlay: 1.0.0
info: {title: open, version: "1"}
actions:
  - target: "$.paths['/health'].get"
    update: {security: []}
  - target: "$.paths['/predict'].post.requestBody.content['application/json'].schema.properties.text.maxLength"
    remove: true
"#,
    )
    .unwrap();
    let store = dir.path().join("keys.yaml");
    moat_keys(&store, &["new", "--id", "k"]);
    let config_path = dir.path().join("moat.yaml");
    std::fs::write(
        &config_path,
        config(
            "http://127.0.0.1:9",
            &format!(
                "openapi:\n  file: {}\n  overlays: [{}]\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\n",
                spec.display(),
                overlay.display(),
                store.display()
            ),
        ),
    )
    .unwrap();
    let check = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    let said = text(&check);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("makes `GET /health` public: it required credentials before"),
        "{said}"
    );
    assert!(
        said.contains("loosens a request schema") && said.contains("properties/text"),
        "{said}"
    );
    assert!(!said.contains("/predict` public"), "{said}");
}
