//! `moat check` in CI: `--offline` on the shipped config with no secret set and no model
//! running, `--format json` with a code, file and line for every finding, a fetch that
//! says each attempt and gives up within its bound, a spec cached for `--offline`, and the
//! TLS status in the summary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Upstream, closed_port, config, shipped_config};

/// `moat check ARGS` in `dir` with only `env` — no secret leaks in from the environment
/// running the tests — and how long it took; killed if it runs past a minute.
fn check_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("check")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let pipe = |mut reader: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = reader.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().unwrap()));
    let stderr = pipe(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("moat check {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (output, start.elapsed())
}

/// Stdout as the one JSON document it must be.
fn document(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The 1-based line of the first line of `file` that contains `text`.
fn line_of(file: &Path, text: &str) -> u64 {
    let content = std::fs::read_to_string(file).unwrap();
    let index = content.lines().position(|l| l.contains(text)).unwrap();
    index as u64 + 1
}

fn codes(findings: &Value) -> Vec<&str> {
    let list = findings.as_array().unwrap();
    list.iter().map(|f| f["code"].as_str().unwrap()).collect()
}

#[test]
fn offline_json_on_the_shipped_config_needs_no_secret_and_no_model() {
    let dir = shipped_config();
    let store = dir.path().join("config/keys.yaml");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (output, _) = check_in(dir.path(), &["--offline", "--format", "json"], &[]);
    let report = document(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["offline"], true);
    assert_eq!(report["errors"], Value::Array(Vec::new()));
    // The unset secret is a warning naming it, its file and its line.
    let moat_yaml = dir.path().join("config/moat.yaml");
    let secret = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["message"].as_str().unwrap().contains("`MOAT_JWT_SECRET`"))
        .unwrap_or_else(|| panic!("no warning names MOAT_JWT_SECRET: {report:#}"));
    assert_eq!(secret["code"], "unset_variable");
    assert_eq!(secret["file"], "config/moat.yaml");
    assert_eq!(secret["line"], line_of(&moat_yaml, "${MOAT_JWT_SECRET}"));
    assert!(
        secret["message"]
            .as_str()
            .unwrap()
            .contains("auth.schemes.bearer.secret"),
        "{secret}"
    );
    // A key store left 0644 by a checkout is not warned about.
    assert_eq!(codes(&report["warnings"]), ["unset_variable"], "{report:#}");
    let summary = &report["summary"];
    assert_eq!(summary["spec"]["source"], "file");
    assert_eq!(summary["operations_checked"], 6);
    assert_eq!(summary["operations"].as_array().unwrap().len(), 6);
    assert_eq!(summary["tls"]["enabled"], false);
    assert_eq!(
        summary["tls"]["status"],
        "off: plain HTTP (and h2c) on 0.0.0.0:8080"
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // As text: the same, for a person; online, the unset secret is an error again.
    let (text, _) = check_in(dir.path(), &["--offline"], &[]);
    let said = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{said}");
    assert!(
        said.contains("warning: `MOAT_JWT_SECRET` is not set"),
        "{said}"
    );
    assert!(said.contains("tls           off: plain HTTP"), "{said}");
    assert!(!said.contains("readable by other users"), "{said}");
    let (online, _) = check_in(dir.path(), &["--format", "json"], &[]);
    assert_eq!(online.status.code(), Some(1));
    assert_eq!(codes(&document(&online)["errors"]), ["unset_variable"]);
}

#[test]
fn json_errors_carry_file_line_and_code() {
    let dir = shipped_config();
    let moat_yaml = dir.path().join("config/moat.yaml");
    let original = std::fs::read_to_string(&moat_yaml).unwrap();
    let broken = original
        .replace("max_uri_bytes: 8192", "max_uri_bytes: 0")
        .replace("health_health_get: []", "health_helth_get: []");
    std::fs::write(&moat_yaml, broken).unwrap();
    let store = dir.path().join("config/keys.yaml");
    std::fs::write(&store, "keys:\n  - id: x\n    hash: not-a-hash\n").unwrap();
    let env = [("MOAT_JWT_SECRET", "short")];
    let (output, _) = check_in(dir.path(), &["--format", "json", "--offline"], &env);
    assert_eq!(output.status.code(), Some(1));
    let report = document(&output);
    assert_eq!(report["ok"], false);
    let errors = report["errors"].as_array().unwrap();
    let find = |code: &str| {
        errors
            .iter()
            .find(|e| e["code"] == code)
            .unwrap_or_else(|| panic!("no `{code}` error: {report:#}"))
    };
    for (code, text) in [
        ("must_be_positive", "max_uri_bytes: 0"),
        ("unknown_operation", "health_helth_get"),
        ("jwt_secret_too_short", "${MOAT_JWT_SECRET}"),
    ] {
        let error = find(code);
        assert_eq!(error["file"], "config/moat.yaml", "{error}");
        assert_eq!(error["line"], line_of(&moat_yaml, text), "{error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    let key = find("key_store_invalid");
    assert_eq!(key["file"], "config/keys.yaml");
    assert!(
        key["message"].as_str().unwrap().contains("argon2id"),
        "{key}"
    );
    assert_eq!(report["summary"]["errors"], errors.len());

    // A config that does not parse: its one error, at its line.
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        config("http://127.0.0.1:1", "").replace("url:", "tiemout: 1s\n  url:"),
    )
    .unwrap();
    let (output, _) = check_in(dir.path(), &["-c", "typo.yaml", "--format", "json"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = document(&output);
    let error = &report["errors"][0];
    assert_eq!(error["code"], "unknown_field", "{report:#}");
    assert_eq!(
        (&error["file"], &error["line"]),
        (&Value::from("typo.yaml"), &Value::from(4))
    );
}

#[test]
fn a_fetch_says_each_attempt_and_gives_up_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}/openapi.json", closed_port());
    let extra = format!("openapi:\n  url: {url}\n");
    std::fs::write(
        dir.path().join("moat.yaml"),
        config("http://127.0.0.1:1", &extra),
    )
    .unwrap();
    let args = [
        "-c",
        "moat.yaml",
        "--format",
        "json",
        "--fetch-timeout",
        "2s",
    ];
    let (output, took) = check_in(dir.path(), &args, &[]);
    assert_eq!(output.status.code(), Some(1));
    let progress = String::from_utf8_lossy(&output.stderr);
    let attempts: Vec<&str> = progress
        .lines()
        .filter(|l| l.starts_with("fetching "))
        .collect();
    assert_eq!(
        attempts,
        [
            format!("fetching {url} (attempt 1 of 2, timeout 1s)…"),
            format!("fetching {url} (attempt 2 of 2, timeout 1s)…"),
        ],
        "{progress}"
    );
    let report = document(&output);
    let error = &report["errors"][0];
    assert_eq!(error["code"], "spec_fetch_failed", "{report:#}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("2 attempts in 2s"),
        "{error}"
    );
    assert_eq!(error["line"], 6, "{error}");
    assert_eq!(report["summary"]["spec"]["source"], "skipped");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn offline_checks_against_the_copy_the_last_online_check_cached() {
    let model = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("openapi:\n  url: {}/openapi.json\n", model.url());
    std::fs::write(dir.path().join("moat.yaml"), config(&model.url(), &extra)).unwrap();
    let args = ["-c", "moat.yaml", "--format", "json"];
    let (online, _) = check_in(dir.path(), &args, &[]);
    let report = document(&online);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["summary"]["spec"]["source"], "url");
    let cache = report["summary"]["spec"]["cache"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cache.starts_with(".moat-cache/openapi-"), "{cache}");
    assert!(dir.path().join(&cache).is_file());
    let fetched = model.count();
    drop(model);

    let offline = ["-c", "moat.yaml", "--format", "json", "--offline"];
    let (output, _) = check_in(dir.path(), &offline, &[]);
    let report = document(&output);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["summary"]["spec"]["source"], "cache");
    assert_eq!(report["summary"]["operations_checked"], 2);
    assert_eq!(fetched, 1, "the online check fetched once");

    // Without a cached copy: the operations are skipped with a warning, the rest checked.
    std::fs::remove_file(dir.path().join(&cache)).unwrap();
    let (output, _) = check_in(dir.path(), &offline, &[]);
    let report = document(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(codes(&report["warnings"]), ["spec_skipped_offline"]);
    assert_eq!(report["summary"]["spec"]["source"], "skipped");
    assert_eq!(report["summary"]["operations_checked"], 0);
}

#[test]
fn offline_never_opens_a_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let extra = format!(
        "openapi:\n  url: http://{addr}/openapi.json\nauth:\n  schemes:\n    idp:\n      type: jwt\n      issuer: x\n      audience: y\n      algorithms: [RS256]\n      jwks_url: http://{addr}/jwks\npolicy:\n  default: [{{idp: []}}]\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("moat.yaml"),
        config(&format!("http://{addr}"), &extra),
    )
    .unwrap();
    let (output, _) = check_in(
        dir.path(),
        &["-c", "moat.yaml", "--offline", "--format", "json"],
        &[],
    );
    let report = document(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(
        codes(&report["warnings"]),
        ["spec_skipped_offline", "jwks_not_fetched"],
        "{report:#}"
    );
    assert_eq!(report["warnings"][1]["line"], 14, "{report:#}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "moat check --offline connected");
}

#[test]
fn the_summary_states_tls_with_the_certificates_names_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "moat test");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tls = "tls:\n  cert_file: cert.pem\n  key_file: key.pem\n";
    std::fs::write(
        dir.path().join("moat.yaml"),
        config("http://127.0.0.1:1", tls),
    )
    .unwrap();
    let (output, _) = check_in(dir.path(), &["-c", "moat.yaml", "--format", "json"], &[]);
    let report = document(&output);
    assert_eq!(report["ok"], true, "{report:#}");
    let tls = &report["summary"]["tls"];
    assert_eq!(tls["enabled"], true);
    assert_eq!(tls["common_name"], "moat test");
    assert_eq!(tls["names"], serde_json::json!(["localhost"]));
    assert!(tls["days_left"].as_i64().unwrap() > 365, "{tls}");
    let (text, _) = check_in(dir.path(), &["-c", "moat.yaml"], &[]);
    let said = String::from_utf8_lossy(&text.stdout);
    assert!(
        said.contains(
            "tls           on (127.0.0.1:0): cert.pem, CN=moat test, names localhost; expires "
        ),
        "{said}"
    );
}

#[test]
fn offline_a_secret_redis_url_unset_still_lets_the_rest_be_checked() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "openapi:\n  file: {}\nlimits:\n  store:\n    redis:\n      url: ${{REDIS_URL}}\n",
        support::fixture("model.yaml")
    );
    std::fs::write(
        dir.path().join("moat.yaml"),
        config("http://127.0.0.1:1", &extra),
    )
    .unwrap();
    let args = ["-c", "moat.yaml", "--offline", "--format", "json"];
    let (output, _) = check_in(dir.path(), &args, &[]);
    let report = document(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(
        codes(&report["warnings"]),
        ["unset_variable", "placeholder_unchecked"],
        "{report:#}"
    );
    assert_eq!(report["warnings"][0]["line"], 10);
    assert!(
        report["summary"]["operations_checked"].as_u64().unwrap() > 0,
        "{report:#}"
    );
}

/// An upstream URL with a password in it (`http://svc:${UP_PASS}@…`) is shown without its
/// user info, in both formats: CI logs are where a secret must not turn up.
#[test]
fn the_upstream_password_never_reaches_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = config("http://svc:${UP_PASS}@127.0.0.1:1", "");
    std::fs::write(dir.path().join("moat.yaml"), text).unwrap();
    let env = [("UP_PASS", "hunter2secret")];
    for format in ["json", "text"] {
        let args = ["-c", "moat.yaml", "--offline", "--format", format];
        let (output, _) = check_in(dir.path(), &args, &env);
        let printed = support::text(&output);
        assert!(printed.contains("http://127.0.0.1:1/"), "{printed}");
        assert!(!printed.contains("hunter2secret"), "{printed}");
        assert!(!printed.contains("svc:"), "{printed}");
    }
}
