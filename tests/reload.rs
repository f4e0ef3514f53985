//! Live reload: a revoked key is refused within seconds without a restart, a broken config
//! leaves the old one serving, SIGHUP reloads, and a request in flight during a swap
//! completes.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Moat, Upstream, config, eventually, fixture, get, metric, moat_keys};

fn mint(store: &std::path::Path, id: &str) -> String {
    moat_keys(store, &["new", "--id", id, "--scopes", "predict"])
}

fn keyed_config(upstream: &Upstream, store: &std::path::Path) -> String {
    config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n",
            fixture("model.yaml"),
            store.display()
        ),
    )
}

fn list(moat: &Moat, key: &str) -> u16 {
    get(moat.addr, "/v1/models", &[&format!("X-API-Key: {key}")]).status
}

#[test]
fn a_revoked_key_is_refused_within_seconds_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "ops");
    let upstream = Upstream::start();
    let moat = Moat::start(&keyed_config(&upstream, &store));
    assert_eq!(list(&moat, &key), 200);
    let revoked = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["keys", "revoke", "ops", "--store"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(revoked.success());
    assert!(
        eventually(|| list(&moat, &key) == 401),
        "the revoked key still works"
    );
    assert!(metric(&moat, r#"moat_config_reloads_total{result="success"}"#) >= 1);
    assert!(metric(&moat, "moat_config_generation") >= 1);
    // A key minted while serving works without a restart too.
    let fresh = mint(&store, "ops-2");
    assert!(eventually(|| list(&moat, &fresh) == 200));
}

#[test]
fn a_broken_config_is_counted_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "ops");
    let upstream = Upstream::start();
    let moat = Moat::start(&keyed_config(&upstream, &store));
    std::fs::write(&moat.config_path, "listen: [this is: not valid\n").unwrap();
    assert!(eventually(|| metric(
        &moat,
        r#"moat_config_reloads_total{result="failure"}"#
    ) >= 1));
    assert_eq!(
        list(&moat, &key),
        200,
        "the old configuration stopped serving"
    );
    std::fs::write(&store, "keys: [{id: broken}]\n").unwrap();
    assert!(eventually(|| metric(
        &moat,
        r#"moat_config_reloads_total{result="failure"}"#
    ) >= 2));
    assert_eq!(list(&moat, &key), 200);
    let log = moat.lines().join("\n");
    assert!(log.contains("reload failed"), "{log}");
}

#[test]
fn sighup_reloads_and_a_request_in_flight_during_the_swap_completes() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let write_spec = |paths: &str| {
        std::fs::write(
            &spec,
            format!("openapi: 3.1.0\ninfo: {{title: t, version: '1'}}\npaths:\n{paths}"),
        )
        .unwrap();
    };
    write_spec("  /slow/{ms}:\n    get:\n      responses: {}\n");
    // Files are not watched here, so only SIGHUP can bring the change in.
    let moat = Moat::start(&config(
        &upstream.url(),
        &format!("openapi:\n  file: {}\nwatch_files: false\n", spec.display()),
    ));
    assert_eq!(get(moat.addr, "/new", &[]).status, 404);
    let addr = moat.addr;
    let in_flight = std::thread::spawn(move || get(addr, "/slow/1500", &[]).status);
    assert!(eventually(|| upstream.count() == 1));
    write_spec(
        "  /slow/{ms}:\n    get:\n      responses: {}\n  /new:\n    post:\n      responses: {}\n",
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        support::send(addr, "POST", "/new", &[], b"").status,
        404,
        "reloaded without SIGHUP"
    );
    moat.signal("HUP");
    assert!(
        eventually(|| support::send(addr, "POST", "/new", &[], b"").status == 200),
        "the new route never appeared"
    );
    assert_eq!(
        in_flight.join().unwrap(),
        200,
        "the request in flight was cut off"
    );
    std::thread::sleep(Duration::from_millis(10));
}
