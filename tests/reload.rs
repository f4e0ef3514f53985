//! Live reload: a revoked key is refused within seconds without a restart, a broken config
//! leaves the old one serving, SIGHUP reloads, and a request in flight during a swap
//! completes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Moat, Upstream, config, eventually, fixture, get, keyed_config, metric, moat_keys};

fn mint(store: &std::path::Path, id: &str) -> String {
    moat_keys(store, &["new", "--id", id, "--scopes", "predict"])
}

fn revoke(store: &std::path::Path, id: &str) {
    let revoked = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["keys", "revoke", id, "--store"])
        .arg(store)
        .status()
        .unwrap();
    assert!(revoked.success());
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
    revoke(&store, "ops");
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
    let good_store = std::fs::read_to_string(&store).unwrap();
    let upstream = Upstream::start();
    let good_config = keyed_config(&upstream, &store);
    let moat = Moat::start(&good_config);
    let failures = || metric(&moat, r#"moat_config_reloads_total{result="failure"}"#);
    let successes = || metric(&moat, r#"moat_config_reloads_total{result="success"}"#);

    // Each step waits for its own counter to move (one save may count more than once).
    let failed = failures();
    std::fs::write(&moat.config_path, "listen: [this is: not valid\n").unwrap();
    assert!(eventually(|| failures() > failed));
    assert_eq!(
        list(&moat, &key),
        200,
        "the old configuration stopped serving"
    );
    let succeeded = successes();
    std::fs::write(&moat.config_path, &good_config).unwrap();
    assert!(eventually(|| successes() > succeeded));

    let failed = failures();
    std::fs::write(&store, "keys: [{id: broken}]\n").unwrap();
    assert!(eventually(|| failures() > failed));
    assert_eq!(list(&moat, &key), 200);
    let succeeded = successes();
    std::fs::write(&store, &good_store).unwrap();
    assert!(eventually(|| successes() > succeeded));
    let failed = failures();

    // A spec that no longer compiles: the same.
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      parameters: [{name: q, in: query, schema: {type: strin}}]\n      responses: {}\n").unwrap();
    std::fs::write(
        &moat.config_path,
        good_config.replace(&fixture("model.yaml"), spec.to_str().unwrap()),
    )
    .unwrap();
    assert!(eventually(|| failures() > failed));
    assert_eq!(list(&moat, &key), 200);
    // The log is flushed in batches: wait for the line.
    let pointer = "spec.yaml#/paths/~1a/get/parameters/0/schema";
    assert!(
        eventually(|| moat.lines().join("\n").contains(pointer)),
        "{}",
        moat.lines().join("\n")
    );
}

/// Kubernetes updates a mounted Secret or ConfigMap by writing a new timestamped directory
/// and renaming a `..data` symlink over the old one; the files are symlinks through it.
#[test]
fn a_kubernetes_style_symlink_swap_of_the_key_store_is_seen() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("secret");
    std::fs::create_dir(&mount).unwrap();
    let first = mount.join("..2026_11_29_10_00_00.1");
    std::fs::create_dir(&first).unwrap();
    let key = mint(&first.join("keys.yaml"), "ops");
    symlink("..2026_11_29_10_00_00.1", mount.join("..data")).unwrap();
    symlink("..data/keys.yaml", mount.join("keys.yaml")).unwrap();
    let upstream = Upstream::start();
    let moat = Moat::start(&keyed_config(&upstream, &mount.join("keys.yaml")));
    assert_eq!(list(&moat, &key), 200);

    // The update: a new directory whose store no longer has `ops`, swapped in atomically.
    let second = mount.join("..2026_11_29_10_05_00.2");
    std::fs::create_dir(&second).unwrap();
    let other = mint(&second.join("keys.yaml"), "ops-next");
    symlink("..2026_11_29_10_05_00.2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    assert!(
        eventually(|| list(&moat, &key) == 401),
        "the swapped-out key still works"
    );
    assert_eq!(list(&moat, &other), 200);
}

/// After a reload that points the config at a store in another directory, that
/// directory is watched too.
#[test]
fn files_named_by_a_reloaded_config_are_watched() {
    let upstream = Upstream::start();
    let first_dir = tempfile::tempdir().unwrap();
    let first_store = first_dir.path().join("keys.yaml");
    let old_key = mint(&first_store, "old");
    let moat = Moat::start(&keyed_config(&upstream, &first_store));
    let second_dir = tempfile::tempdir().unwrap();
    let second_store = second_dir.path().join("keys.yaml");
    let new_key = mint(&second_store, "new");
    std::fs::write(&moat.config_path, keyed_config(&upstream, &second_store)).unwrap();
    assert!(eventually(|| list(&moat, &new_key) == 200));
    assert_eq!(list(&moat, &old_key), 401);
    let revoked = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["keys", "revoke", "new", "--store"])
        .arg(&second_store)
        .status()
        .unwrap();
    assert!(revoked.success());
    assert!(
        eventually(|| list(&moat, &new_key) == 401),
        "a change in the newly named directory was not seen"
    );
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

/// A `${VAR}` read from `VAR_FILE` (a Docker or Kubernetes secret) is re-read when the file
/// changes: rotating the HMAC secret takes effect without a restart.
#[test]
fn a_rotated_secret_file_is_picked_up() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("jwt_secret");
    let old_secret = "old-secret-0123456789abcdef0123456789ab";
    let new_secret = "new-secret-0123456789abcdef0123456789ab";
    std::fs::write(&secret_file, format!("{old_secret}\n")).unwrap();
    let upstream = Upstream::start();
    let moat = Moat::start_with_env(
        &config(
            &upstream.url(),
            "auth:\n  schemes:\n    bearer: {type: jwt, issuer: iss, audience: aud, algorithms: [HS256], secret: \"${MOAT_T_JWT}\"}\npolicy:\n  default: [{bearer: []}]\n",
        ),
        &[("MOAT_T_JWT_FILE", secret_file.to_str().unwrap())],
    );
    let call = |secret: &str| {
        let claims = serde_json::json!({"iss": "iss", "aud": "aud", "sub": "s", "exp": support::now() + 600});
        let token = support::hs256(secret, &claims);
        get(
            moat.addr,
            "/x",
            &[&format!("Authorization: Bearer {token}")],
        )
        .status
    };
    assert_eq!(call(old_secret), 200);
    let temporary = secrets.path().join(".jwt_secret.new");
    std::fs::write(&temporary, format!("{new_secret}\n")).unwrap();
    std::fs::rename(&temporary, &secret_file).unwrap();
    assert!(
        eventually(|| call(new_secret) == 200),
        "the new secret was not picked up"
    );
    assert_eq!(call(old_secret), 401);
}

/// A reload that fails because the store it names does not exist yet still watches that
/// store's directory, so creating the store brings it in without a SIGHUP.
#[test]
fn a_store_created_after_a_failed_reload_is_seen() {
    let upstream = Upstream::start();
    let first_dir = tempfile::tempdir().unwrap();
    let first_store = first_dir.path().join("keys.yaml");
    mint(&first_store, "old");
    let moat = Moat::start(&keyed_config(&upstream, &first_store));
    let second_dir = tempfile::tempdir().unwrap();
    let second_store = second_dir.path().join("keys.yaml");
    std::fs::write(&moat.config_path, keyed_config(&upstream, &second_store)).unwrap();
    assert!(eventually(|| metric(
        &moat,
        r#"moat_config_reloads_total{result="failure"}"#
    ) >= 1));
    let key = mint(&second_store, "new");
    assert!(
        eventually(|| list(&moat, &key) == 200),
        "the store created after the failed reload was not picked up"
    );
}

/// Two replicas on one key store show the same digest in `/metrics` and `/readyz`; after a
/// revocation both show the same new one, so an operator can prove every replica dropped
/// the key.
#[test]
fn replicas_on_one_key_store_report_the_same_digest_before_and_after_a_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    mint(&store, "ops");
    mint(&store, "ci");
    let upstream = Upstream::start();
    let replicas = [
        Moat::start(&keyed_config(&upstream, &store)),
        Moat::start(&keyed_config(&upstream, &store)),
    ];
    let digest = |moat: &Moat| -> String {
        let metrics = get(moat.admin, "/metrics", &[]);
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("moat_keystore_info{"))
            .unwrap_or_else(|| panic!("no moat_keystore_info in {text}"))
            .to_owned();
        assert!(
            text.contains(r#"moat_keystore_age_seconds{scheme="api_key"}"#),
            "{text}"
        );
        line.split("digest=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    };
    let before = digest(&replicas[0]);
    assert_eq!(before.len(), 16);
    assert_eq!(digest(&replicas[1]), before);
    assert_eq!(
        metric(&replicas[0], r#"moat_keystore_keys{scheme="api_key"}"#),
        2
    );
    let ready = get(replicas[0].admin, "/readyz", &[]);
    let ready = String::from_utf8_lossy(&ready.body).into_owned();
    assert!(
        ready.starts_with("ready\n")
            && ready.contains(&format!("key store api_key: digest {before}, 2 keys")),
        "{ready}"
    );

    revoke(&store, "ops");
    assert!(eventually(
        || digest(&replicas[0]) != before && digest(&replicas[1]) != before
    ));
    assert_eq!(digest(&replicas[0]), digest(&replicas[1]));
}

/// With `max_store_age`, a store that can no longer be read keeps serving until it is that
/// old, then every key gets 503 and `/readyz` says why; once the file is back, keys work
/// again. An unchanged, readable store stays young however long nothing changes.
#[test]
fn keys_fail_closed_once_the_store_could_not_be_read_for_max_store_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "ops");
    let upstream = Upstream::start();
    let text = config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}, max_store_age: 3s}}\npolicy:\n  default: [{{api_key: []}}]\n",
            fixture("model.yaml"),
            store.display()
        ),
    );
    let moat = Moat::start(&text);
    // Re-read every second (a quarter of 3 s, at least 1 s): still fresh after 4 s.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(list(&moat, &key), 200);
    assert!(metric(&moat, r#"moat_keystore_age_seconds{scheme="api_key"}"#) < 3);

    // The mount goes away: the last good store serves, then fails closed.
    let away = dir.path().join("keys.yaml.away");
    std::fs::rename(&store, &away).unwrap();
    assert_eq!(list(&moat, &key), 200, "a store is not stale at once");
    assert!(
        eventually(|| list(&moat, &key) == 503),
        "a stale store kept serving"
    );
    let refused = get(moat.addr, "/v1/models", &[&format!("X-API-Key: {key}")]);
    assert_eq!(refused.json()["code"], "key_store_stale");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let ready = get(moat.admin, "/readyz", &[]);
    let body = String::from_utf8_lossy(&ready.body).into_owned();
    assert_eq!(ready.status, 503, "{body}");
    assert!(
        body.contains("key store api_key: not re-read for"),
        "{body}"
    );
    assert!(
        moat.lines()
            .iter()
            .any(|l| l.contains("cannot re-read the key store")),
        "the failing re-read was not logged"
    );

    std::fs::rename(&away, &store).unwrap();
    assert!(
        eventually(|| list(&moat, &key) == 200),
        "keys stayed refused"
    );
    assert_eq!(get(moat.admin, "/readyz", &[]).status, 200);
}
