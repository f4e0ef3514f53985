//! A key store in Redis shared by three moat processes, against a real `redis-server`: a key
//! minted with `moat keys new --store redis://…` works on all three, revoked it is refused
//! by all three (the lag measured and printed), a write made past moat's script is found by
//! the version check, Redis killed leaves the held keys working until `max_store_age`, a
//! moat started while Redis is down refuses every key until it is back, and every replica
//! catches up without a restart when it is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    Moat, Redis, Upstream, config, eventually, fixture, get, metric, moat_keys_at as keys,
    moat_keys_output as keys_output,
};

fn redis_store_config(upstream: &Upstream, max_store_age: &str) -> String {
    config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key:\n      type: api_key\n      store:\n        redis:\n          url: ${{REDIS_URL}}\n          timeout: 1s\n      max_store_age: {max_store_age}\npolicy:\n  default: [{{api_key: []}}]\n",
            fixture("model.yaml"),
        ),
    )
}

fn status(moat: &Moat, key: &str) -> u16 {
    support::predict_with_key(moat, key).status
}

fn ready(moat: &Moat) -> (u16, String) {
    let response = get(moat.admin, "/readyz", &[]);
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

/// How long until `check` holds on every replica, polled every 5 ms.
fn until_all(replicas: &[Moat], mut check: impl FnMut(&Moat) -> bool) -> Duration {
    let started = Instant::now();
    assert!(
        eventually(|| replicas.iter().all(&mut check)),
        "not on every replica within the wait"
    );
    started.elapsed()
}

#[test]
fn three_replicas_share_one_redis_key_store_and_revocation_reaches_all_of_them() {
    let Some(mut redis) = Redis::start_persistent() else {
        return;
    };
    let url = redis.url();
    let upstream = Upstream::start();
    let alpha = keys(&url, &["new", "--id", "alpha", "--scopes", "predict"]);
    let text = redis_store_config(&upstream, "3s");
    let env = [("REDIS_URL", url.as_str())];
    let mut replicas = vec![
        Moat::start_with_env(&text, &env),
        Moat::start_with_env(&text, &env),
        Moat::start_with_env(&text, &env),
    ];
    for moat in &replicas {
        assert_eq!(status(moat, &alpha), 200);
        let (code, body) = ready(moat);
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains("key store api_key: redis version 1, 1 keys"),
            "{body}"
        );
    }

    // A key minted while they serve: pushed to each, no reload, no restart.
    let beta = keys(&url, &["new", "--id", "beta", "--scopes", "predict"]);
    let minted = until_all(&replicas, |moat| status(moat, &beta) == 200);
    println!("a new key admitted by all three replicas {minted:?} after `moat keys new` returned");

    // Revoked: refused by all three.
    keys(&url, &["revoke", "alpha"]);
    let revoked = until_all(&replicas, |moat| status(moat, &alpha) == 401);
    println!(
        "a revoked key refused by all three replicas {revoked:?} after `moat keys revoke` returned"
    );
    for moat in &replicas {
        assert_eq!(metric(moat, "moat_keystore_version{"), 3);
        let lag = metric_f64(moat, "moat_keystore_apply_lag_seconds{");
        println!(
            "  replica's own figure, write in Redis to serving: {:.1} ms",
            lag * 1000.0
        );
        assert!(lag < 5.0, "a lag of {lag} s");
        assert_eq!(status(moat, &beta), 200, "an untouched key keeps working");
    }
    let listed = keys(&url, &["list"]);
    assert!(
        listed.contains("alpha") && listed.contains("disabled"),
        "{listed}"
    );

    // Written past moat's script (no message): the version check finds it.
    let record = redis.command("HGET {moat:keys:}records beta").unwrap();
    let json = record
        .lines()
        .nth(1)
        .unwrap()
        .replace("\"scopes\"", "\"disabled\":true,\"scopes\"");
    redis_cli(&redis, &["HSET", "{moat:keys:}records", "beta", &json]);
    redis_cli(&redis, &["INCR", "{moat:keys:}version"]);
    until_all(&replicas, |moat| status(moat, &beta) == 401);

    // Redis gone: the held keys keep working until max_store_age (3 s), then 503.
    let gamma = keys(&url, &["new", "--id", "gamma", "--scopes", "predict"]);
    until_all(&replicas, |moat| status(moat, &gamma) == 200);
    redis.stop();
    let gone = Instant::now();
    for moat in &replicas {
        assert_eq!(status(moat, &gamma), 200, "a held key, Redis just gone");
    }
    until_all(&replicas, |moat| {
        let response = support::predict_with_key(moat, &gamma);
        response.status == 503 && response.json()["code"] == "key_store_stale"
    });
    // max_store_age counts from Redis's last answer: a version check, every second here.
    assert!(
        gone.elapsed() >= Duration::from_secs(2),
        "stale before max_store_age"
    );
    let (code, body) = ready(&replicas[0]);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not confirmed by Redis for"), "{body}");

    // A replica started while Redis is down serves no key, and says why.
    let late = Moat::start_with_env(&text, &env);
    assert_eq!(support::predict_with_key(&late, &gamma).status, 503);
    let (code, body) = ready(&late);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("Redis not reached yet"), "{body}");

    // Back (with its data): every replica catches up by itself.
    redis.resume();
    replicas.push(late);
    until_all(&replicas, |moat| status(moat, &gamma) == 200);
    for moat in &replicas {
        assert_eq!(status(moat, &alpha), 401);
        assert_eq!(ready(moat).0, 200);
    }
}

fn redis_cli(redis: &Redis, args: &[&str]) {
    let status = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(status.success(), "redis-cli {args:?}");
}

fn metric_f64(moat: &Moat, line_start: &str) -> f64 {
    let text = String::from_utf8_lossy(&get(moat.admin, "/metrics", &[]).body).into_owned();
    text.lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn a_file_store_moves_into_redis_and_back_and_an_import_runs_twice_to_the_same_end() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let file_store = file.to_str().unwrap();
    let first = keys(file_store, &["new", "--id", "first", "--scopes", "predict"]);
    let second = keys(
        file_store,
        &[
            "new", "--id", "second", "--scopes", "predict", "--quota", "100/day",
        ],
    );

    let (ok, _, said) = keys_output(&url, &["import", file_store]);
    assert!(ok, "{said}");
    assert!(said.contains("2 records added, 0 already there"), "{said}");
    let (ok, _, said) = keys_output(&url, &["import", file_store]);
    assert!(ok, "{said}");
    assert!(said.contains("0 records added, 2 already there"), "{said}");

    let upstream = Upstream::start();
    let text = redis_store_config(&upstream, "1m");
    let moat = Moat::start_with_env(&text, &[("REDIS_URL", url.as_str())]);
    assert_eq!(status(&moat, &first), 200);
    assert_eq!(status(&moat, &second), 200);

    // Revoked in Redis: an old import run again must not bring the key back.
    keys(&url, &["revoke", "first"]);
    let (ok, _, said) = keys_output(&url, &["import", file_store]);
    assert!(!ok, "an import overwrote a revocation");
    assert!(
        said.contains("holds 1 of these ids with another record (first)"),
        "{said}"
    );
    until_all(std::slice::from_ref(&moat), |moat| {
        status(moat, &first) == 401
    });

    // And back out, as JSON: a file moat serves the same keys, the revocation included.
    let exported = dir.path().join("exported.json");
    let (ok, _, said) = keys_output(&url, &["export", exported.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.contains("2 records written"), "{said}");
    let from_file = Moat::start(&config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n",
            fixture("model.yaml"),
            exported.display()
        ),
    ));
    assert_eq!(status(&from_file, &second), 200);
    assert_eq!(status(&from_file, &first), 401);
    assert!(
        std::fs::read_to_string(&exported)
            .unwrap()
            .starts_with("{\"keys\": [")
    );
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn litellm_keys_imported_by_their_sha256_verify_once_and_are_stored_as_argon2id() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    // LiteLLM's keys: `sk-` and 22 random characters; its table holds their SHA-256.
    let key = "sk-Xq3v9LmN2pR8tY6wZ1aB4c";
    let export = dir.path().join("litellm.json");
    std::fs::write(
        &export,
        format!(
            r#"[{{"token": "{}", "key_alias": "acme-prod", "user_id": "acme", "models": [], "expires": null, "blocked": false, "spend": 12.5}},
               {{"token": "{}", "key_alias": "other", "blocked": true}},
               {{"token": "{}", "key_alias": "unused"}}]"#,
            sha256_hex(key),
            sha256_hex("sk-someoneelse0000000000"),
            sha256_hex("sk-neverpresented0000000")
        ),
    )
    .unwrap();
    let export = export.to_str().unwrap();
    let (ok, _, said) = keys_output(
        &url,
        &["import", export, "--from", "litellm", "--scopes", "predict"],
    );
    assert!(ok, "{said}");
    assert!(said.contains("3 records added"), "{said}");
    let legacy = keys(&url, &["list", "--legacy", "--hashes"]);
    assert!(
        legacy.contains("acme-prod") && legacy.contains("sha256 (legacy)"),
        "{legacy}"
    );

    let upstream = Upstream::start();
    let moat = Moat::start_with_env(
        &redis_store_config(&upstream, "1m"),
        &[("REDIS_URL", url.as_str())],
    );
    assert_eq!(status(&moat, key), 200, "the imported key, by its SHA-256");
    assert_eq!(status(&moat, "sk-Xq3v9LmN2pR8tY6wZ1aB4d"), 401);
    assert_eq!(
        status(&moat, "sk-someoneelse0000000000"),
        401,
        "blocked in LiteLLM: disabled"
    );

    // Re-hashed and written back: Redis holds an argon2id hash and no SHA-256 for it.
    assert!(
        eventually(|| {
            let record = redis
                .command("HGET {moat:keys:}records acme-prod")
                .unwrap_or_default();
            record.contains("$argon2id$") && !record.contains("legacy_sha256")
        }),
        "the record was not re-hashed"
    );
    // A key whose secret was shown is re-hashed even when its record refuses it (LiteLLM
    // had it blocked): the store keeps no SHA-256 of a key anyone has shown.
    assert!(eventually(
        || !keys(&url, &["list", "--legacy"]).contains("other")
    ));
    let legacy = keys(&url, &["list", "--legacy"]);
    assert!(
        !legacy.contains("acme-prod") && legacy.contains("unused"),
        "{legacy}"
    );
    // Applied to the serving snapshot: the key now verifies by argon2id.
    until_all(std::slice::from_ref(&moat), |moat| {
        metric(moat, "moat_keystore_version{") == 5
    });
    assert_eq!(status(&moat, key), 200, "the key, by its argon2id hash");
    assert_eq!(status(&moat, "sk-Xq3v9LmN2pR8tY6wZ1aB4d"), 401);
    let log = moat.lines().join("\n");
    assert!(!log.contains(key), "the key is in the log");

    // Rotated to a moat key: the replacement names its record, and carries no legacy tag.
    let rotated = keys(
        &url,
        &[
            "rotate",
            "unused",
            "--grace",
            "1h",
            "--new-id",
            "unused-moat",
        ],
    );
    assert!(rotated.starts_with("moat_unused-moat_"), "{rotated}");
    until_all(std::slice::from_ref(&moat), |moat| {
        status(moat, &rotated) == 200
    });
    let record = redis
        .command("HGET {moat:keys:}records unused-moat")
        .unwrap();
    assert!(!record.contains("legacy"), "{record}");
}

#[test]
fn an_unkey_export_in_a_file_store_is_rehashed_in_the_file_and_keys_arrive_as_bearers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    std::fs::write(&store, "# imported from Unkey\nkeys: []\n").unwrap();
    let key = "uk_3ZJ7kq9WmTn2Xr8VbY5cLd";
    let hash = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        (0..32)
            .map(|i| u8::from_str_radix(&sha256_hex(key)[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    );
    let export = dir.path().join("unkey.json");
    std::fs::write(&export, format!(r#"{{"keys": [{{"id": "key_2a", "name": "mobile", "hash": "{hash}", "enabled": true}}]}}"#)).unwrap();
    let (ok, _, said) = keys_output(
        store.to_str().unwrap(),
        &[
            "import",
            export.to_str().unwrap(),
            "--from",
            "unkey",
            "--scopes",
            "predict",
        ],
    );
    assert!(ok, "{said}");

    let upstream = Upstream::start();
    let moat = Moat::start(&config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}, bearer: true}}\npolicy:\n  default: [{{api_key: []}}]\n",
            fixture("model.yaml"),
            store.display()
        ),
    ));
    let bearer = |key: &str| {
        support::post_json(
            moat.addr,
            "/v1/models/iris:predict",
            &[&format!("Authorization: Bearer {key}"), "X-Tenant: t-1"],
            r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
        )
        .status
    };
    assert_eq!(bearer(key), 200, "a legacy key in the bearer slot");
    assert!(
        eventually(|| std::fs::read_to_string(&store)
            .unwrap()
            .contains("$argon2id$")),
        "the file was not rewritten"
    );
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(text.starts_with("# imported from Unkey"), "{text}");
    assert!(!text.contains("legacy_sha256"), "{text}");
    assert!(eventually(|| moat
        .lines()
        .iter()
        .any(|l| l.contains("configuration reloaded"))));
    assert_eq!(bearer(key), 200, "by its argon2id hash, after the reload");
    assert_eq!(bearer("uk_3ZJ7kq9WmTn2Xr8VbY5cLe"), 401);
}
