//! Limits and quotas shared by replicas through a real `redis-server`: two moat processes
//! admit together what one would, Redis stopped mid-test gives each `on_error` mode what
//! it says, and moat recovers by itself when Redis is back. Plus quotas in memory, with the
//! `RateLimit-*` fields, made with `moat keys new --quota` as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::time::{Duration, Instant};

use support::{Moat, Redis, Upstream, config, eventually, fixture, get, metric, moat_keys};

/// `moat keys new --id ID --scopes predict EXTRA…`, as an operator mints a key; the key.
fn mint(store: &std::path::Path, id: &str, extra: &[&str]) -> String {
    let mut args = vec!["new", "--id", id, "--scopes", "predict"];
    args.extend_from_slice(extra);
    moat_keys(store, &args)
}

fn predict(moat: &Moat, key: &str) -> support::RawResponse {
    support::predict_with_key(moat, key)
}

/// A config over `store`, with `limits.store` set to `store_section` (YAML under `limits:`).
fn limited_config(
    upstream: &Upstream,
    store: &std::path::Path,
    limits: &str,
    policy: &str,
) -> String {
    config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n{policy}limits:\n{limits}",
            fixture("model.yaml"),
            store.display()
        ),
    )
}

fn redis_limits(on_error: &str) -> String {
    format!(
        "  store:\n    redis:\n      url: ${{REDIS_URL}}\n      key_prefix: \"moat-test:\"\n      timeout: 200ms\n      on_error: {on_error}\n"
    )
}

#[test]
fn two_replicas_share_one_keys_rate_limit_and_quota_and_a_clients_limit() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let bursty = mint(&store, "bursty", &["--rate-limit", "1/4"]);
    let metered = mint(&store, "metered", &["--quota", "6/day"]);
    let upstream = Upstream::start();
    let text = limited_config(&upstream, &store, &redis_limits("deny"), "");
    let env = [("REDIS_URL", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let replicas = [
        Moat::start_with_env(&text, &env),
        Moat::start_with_env(&text, &env),
    ];

    // The bucket: a burst of 4 for both replicas together, refilled at 1/s.
    let started = Instant::now();
    let mut admitted = 0;
    for i in 0..10 {
        let response = predict(&replicas[i % 2], &bursty);
        match response.status {
            200 => admitted += 1,
            429 => assert_eq!(response.json()["code"], "rate_limited"),
            other => panic!(
                "unexpected {other}: {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
    }
    let refilled = started.elapsed().as_secs();
    assert!(
        (4..=4 + refilled).contains(&admitted),
        "{admitted} admitted by two replicas sharing a burst of 4 ({refilled} s)"
    );

    // The quota: 6 a day across both, each response saying what is left.
    let mut remaining = Vec::new();
    for i in 0..9 {
        let response = predict(&replicas[i % 2], &metered);
        if response.status == 200 {
            assert_eq!(response.header("ratelimit-limit"), Some("6"));
            remaining.push(response.header("ratelimit-remaining").unwrap().to_owned());
        } else {
            assert_eq!(response.status, 429, "request {i}");
            let problem = response.json();
            assert_eq!(problem["code"], "quota_exceeded");
            let retry: u64 = response.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=86_400).contains(&retry), "Retry-After {retry}");
            assert_eq!(response.header("ratelimit-remaining"), Some("0"));
        }
    }
    assert_eq!(remaining, ["5", "4", "3", "2", "1", "0"]);
    assert_eq!(upstream.count() as u64, admitted + 6);
    let counter = redis.command("KEYS moat-test:quota:metered:day:*").unwrap();
    assert!(
        counter.starts_with("*1"),
        "one counter per key and day: {counter}"
    );
    for replica in &replicas {
        assert!(
            metric(
                replica,
                r#"moat_limit_decisions_total{source="redis",decision="admit"}"#
            ) > 0
        );
        let ready = String::from_utf8_lossy(&get(replica.admin, "/readyz", &[]).body).into_owned();
        assert!(ready.contains("limit store redis: answering"), "{ready}");
    }

    // A client's limit: taken in each process before credentials, and shared after them.
    let open = mint(&store, "open", &[]);
    let policy = "  client_rate_limit: {per_second: 1, burst: 3}\n";
    let text = limited_config(&upstream, &store, &redis_limits("deny"), policy);
    let replicas = [
        Moat::start_with_env(&text, &env),
        Moat::start_with_env(&text, &env),
    ];
    let started = Instant::now();
    let admitted = (0..8)
        .filter(|i| predict(&replicas[i % 2], &open).status == 200)
        .count() as u64;
    let refilled = started.elapsed().as_secs();
    assert!(
        (3..=3 + refilled).contains(&admitted),
        "{admitted} admitted from one client by two replicas sharing a burst of 3"
    );
}

#[test]
fn redis_going_away_gives_each_on_error_mode_its_answer_and_moat_recovers() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let upstream = Upstream::start();
    let env = [("REDIS_URL", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut moats = Vec::new();
    for mode in ["deny", "allow", "local"] {
        let key = mint(&store, mode, &["--rate-limit", "1/2"]);
        let text = limited_config(&upstream, &store, &redis_limits(mode), "");
        let moat = Moat::start_with_env(&text, &env);
        assert_eq!(predict(&moat, &key).status, 200, "{mode} before the outage");
        moats.push((mode, moat, key));
    }
    // Every key has spent one of its two in Redis; the in-process buckets are untouched.
    redis.stop();
    for (mode, moat, key) in &moats {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let started = Instant::now();
            let response = predict(moat, key);
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{mode}: a request waited {:?} on a Redis that is gone",
                started.elapsed()
            );
            if response.status == 503 {
                assert_eq!(response.json()["code"], "limit_store_unavailable");
                assert_eq!(response.header("retry-after"), Some("1"));
            }
            statuses.push(response.status);
        }
        let expected: &[u16] = match *mode {
            "deny" => &[503, 503, 503, 503],
            "allow" => &[200, 200, 200, 200],
            // The process's own bucket: a burst of 2, then refused.
            _ => &[200, 200, 429, 429],
        };
        assert_eq!(statuses, expected, "on_error: {mode}");
        let source = format!(r#"moat_limit_decisions_total{{source="on_error_{mode}""#);
        assert!(metric(moat, &source) > 0, "{source}");
        assert!(metric(moat, "moat_limit_store_errors_total{") > 0);
        let ready = String::from_utf8_lossy(&get(moat.admin, "/readyz", &[]).body).into_owned();
        assert!(ready.contains("limit store redis: failing for"), "{ready}");
    }

    // Back, empty: every replica reconnects on its own and counts in Redis again.
    redis.resume();
    for (mode, moat, key) in &moats {
        assert!(
            eventually(|| {
                let before = metric(
                    moat,
                    r#"moat_limit_decisions_total{source="redis",decision="admit"}"#,
                );
                predict(moat, key);
                metric(
                    moat,
                    r#"moat_limit_decisions_total{source="redis",decision="admit"}"#,
                ) > before
            }),
            "{mode}: moat did not go back to Redis"
        );
    }
    let (_, deny, _) = &moats[0];
    let ready = String::from_utf8_lossy(&get(deny.admin, "/readyz", &[]).body).into_owned();
    assert!(ready.contains("limit store redis: answering"), "{ready}");
}

#[test]
fn a_quota_in_memory_counts_down_in_ratelimit_fields_and_says_when_it_resets() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "trial", &["--quota", "2/hour"]);
    let listed = moat_keys(&store, &["list"]);
    assert!(listed.contains("quota=2/hour"), "{listed}");
    let upstream = Upstream::start();
    let moat = Moat::start(&limited_config(&upstream, &store, "  store: memory\n", ""));
    let first = predict(&moat, &key);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-limit"), Some("2"));
    assert_eq!(first.header("ratelimit-remaining"), Some("1"));
    assert_eq!(first.header("ratelimit-policy"), Some("2;w=3600"));
    let reset: u64 = first.header("ratelimit-reset").unwrap().parse().unwrap();
    let to_the_hour = 3600 - support::now() % 3600;
    assert!(
        reset.abs_diff(to_the_hour) <= 2,
        "reset {reset}, hour ends in {to_the_hour}"
    );
    assert_eq!(
        predict(&moat, &key).header("ratelimit-remaining"),
        Some("0")
    );
    let spent = predict(&moat, &key);
    assert_eq!(spent.status, 429);
    assert_eq!(spent.json()["code"], "quota_exceeded");
    let retry: u64 = spent.header("retry-after").unwrap().parse().unwrap();
    assert!(retry.abs_diff(to_the_hour) <= 2);
    assert_eq!(upstream.count(), 2);
    // A wrong `--quota` is refused by the command, naming the format.
    let bad = support::run_moat(
        &[
            "keys",
            "new",
            "--id",
            "x",
            "--quota",
            "5/week",
            "--store",
            store.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(
        support::text(&bad).contains("REQUESTS/PERIOD"),
        "{}",
        support::text(&bad)
    );
}

#[test]
fn a_redis_url_that_is_not_one_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    mint(&store, "k", &[]);
    let upstream = Upstream::start();
    let text = limited_config(&upstream, &store, &redis_limits("deny"), "");
    let path = dir.path().join("moat.yaml");
    std::fs::write(&path, text).unwrap();
    let output = support::run_moat(
        &["check", "--config", path.to_str().unwrap()],
        &[("REDIS_URL", "postgres://admin:hunter2-secret@db:5432")],
    );
    let said = support::text(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("limits.store.redis"), "{said}");
    assert!(!said.contains("hunter2"), "the password leaked: {said}");
}

/// `rediss://` with a private CA (`ca_file`): the limits are counted over TLS; without the
/// CA the server is not trusted and `on_error` answers.
#[test]
fn limits_are_counted_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca);
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_file = write("ca.pem", ca_cert.pem());
    let cert_file = write("redis.pem", server_cert.pem());
    let key_file = write("redis.key", server_key.serialize_pem());
    let Some(redis) = Redis::start_tls(&cert_file, &key_file) else {
        return;
    };
    let tls_port = redis.tls.as_ref().unwrap().0;

    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "tls", &["--quota", "2/day"]);
    let upstream = Upstream::start();
    let url = format!("rediss://localhost:{tls_port}");
    let env = [("REDIS_URL", url.as_str())];
    // A TLS handshake by a debug build on a loaded CI machine can take more than 200 ms.
    let limits = redis_limits("deny").replace("timeout: 200ms", "timeout: 3s");
    let limits = format!("{limits}      ca_file: {}\n", ca_file.display());
    let moat = Moat::start_with_env(&limited_config(&upstream, &store, &limits, ""), &env);
    assert_eq!(predict(&moat, &key).status, 200);
    assert_eq!(predict(&moat, &key).status, 200);
    assert_eq!(predict(&moat, &key).json()["code"], "quota_exceeded");
    let counter = redis.command("KEYS moat-test:quota:tls:*").unwrap();
    assert!(counter.starts_with("*1"), "{counter}");

    // The system's roots do not know the private CA: nothing is counted, deny answers.
    let untrusted = Moat::start_with_env(
        &limited_config(&upstream, &store, &redis_limits("deny"), ""),
        &env,
    );
    let refused = predict(&untrusted, &key);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json()["code"], "limit_store_unavailable");
    assert!(metric(&untrusted, "moat_limit_store_errors_total{") > 0);
}

/// An ACL user with a password in the URL (from `REDIS_URL_FILE`, as a mounted secret):
/// counted with the right password; with a wrong one, refused by `on_error` and the
/// password appears in no log line.
#[test]
fn an_acl_user_and_password_from_a_secret_file_and_no_password_in_logs() {
    let Some(redis) = Redis::start() else { return };
    let created = redis
        .command("ACL SETUSER moat on >acl-pass-7f3e ~moat-test:* +@all")
        .unwrap();
    assert!(created.starts_with("+OK"), "{created}");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "acl", &["--quota", "1/day"]);
    let upstream = Upstream::start();
    let text = limited_config(&upstream, &store, &redis_limits("deny"), "");
    let secret = |name: &str, password: &str| {
        let path = dir.path().join(name);
        let url = format!("redis://moat:{password}@127.0.0.1:{}/0", redis.port);
        std::fs::write(&path, url).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good = secret("redis_url", "acl-pass-7f3e");
    let moat = Moat::start_with_env(&text, &[("REDIS_URL_FILE", good.as_str())]);
    assert_eq!(predict(&moat, &key).status, 200);
    assert_eq!(predict(&moat, &key).json()["code"], "quota_exceeded");

    let bad = secret("wrong_url", "wrong-pass-91c2");
    let refused = Moat::start_with_env(&text, &[("REDIS_URL_FILE", bad.as_str())]);
    let response = predict(&refused, &key);
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["code"], "limit_store_unavailable");
    assert!(
        eventually(|| refused
            .lines()
            .iter()
            .any(|l| l.contains("Redis limit store failed"))),
        "the failure was not logged"
    );
    for line in refused.lines().iter().chain(moat.lines().iter()) {
        assert!(
            !line.contains("wrong-pass-91c2") && !line.contains("acl-pass-7f3e"),
            "a Redis password in the log: {line}"
        );
    }
}

fn env_of(redis: &Redis) -> Vec<(&'static str, String)> {
    vec![("REDIS_URL", redis.url())]
}

fn start_replicas(text: &str, env: &[(&'static str, String)], count: usize) -> Vec<Moat> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (0..count)
        .map(|_| Moat::start_with_env(text, &env))
        .collect()
}

/// A burst across `replicas`, round robin: (admitted, refused with 429, other statuses).
fn burst(replicas: &[Moat], key: &str, requests: usize) -> (u64, u64, Vec<u16>) {
    let (mut admitted, mut limited, mut other) = (0, 0, Vec::new());
    for i in 0..requests {
        match predict(&replicas[i % replicas.len()], key).status {
            200 => admitted += 1,
            429 => limited += 1,
            status => other.push(status),
        }
    }
    (admitted, limited, other)
}

/// Redis restarted between two bursts: each replica's idle connections are stale, and the
/// first check on each is sent again on a fresh one — never decided by `on_error`.
#[test]
fn a_redis_restart_between_two_bursts_leaves_the_second_exact_on_every_on_error() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let upstream = Upstream::start();
    for mode in ["deny", "allow", "local"] {
        let key = mint(&store, &format!("burst-{mode}"), &["--rate-limit", "1/10"]);
        let text = limited_config(&upstream, &store, &redis_limits(mode), "");
        let replicas = start_replicas(&text, &env_of(&redis), 3);
        let started = Instant::now();
        let (admitted, _, other) = burst(&replicas, &key, 15);
        let refill = started.elapsed().as_secs();
        assert!(other.is_empty(), "{mode}: {other:?}");
        assert!((10..=10 + refill).contains(&admitted), "{mode}: {admitted}");

        redis.stop();
        redis.resume();
        // Redis is back and empty: the bucket is full again, and counted there only.
        let started = Instant::now();
        let (admitted, _, other) = burst(&replicas, &key, 15);
        let refill = started.elapsed().as_secs();
        assert!(
            other.is_empty(),
            "{mode}: a 503 once Redis answers: {other:?}"
        );
        assert!(
            (10..=10 + refill).contains(&admitted),
            "{mode}: {admitted} admitted by a burst of 10 after the restart"
        );
        for replica in &replicas {
            assert_eq!(
                metric(
                    replica,
                    &format!(r#"moat_limit_decisions_total{{source="on_error_{mode}""#)
                ),
                0,
                "{mode}: on_error decided while Redis answered"
            );
        }
    }
}

/// Redis gone: after the first failure the circuit opens and checks are decided at once,
/// then it half-opens, probes, and closes by itself when Redis is back.
#[test]
fn with_redis_gone_checks_are_decided_at_once_and_the_circuit_recovers() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "steady", &["--rate-limit", "1000/1000"]);
    let upstream = Upstream::start();
    let limits = "  store:\n    redis:\n      url: ${REDIS_URL}\n      timeout: 500ms\n      on_error: allow\n";
    let text = limited_config(&upstream, &store, limits, "");
    let moat = start_replicas(&text, &env_of(&redis), 1).remove(0);
    assert_eq!(predict(&moat, &key).status, 200);
    redis.stop();
    let mut timings = Vec::new();
    for _ in 0..40 {
        let started = Instant::now();
        assert_eq!(predict(&moat, &key).status, 200, "on_error: allow");
        timings.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let slow = timings
        .iter()
        .filter(|t| **t >= Duration::from_millis(250))
        .count();
    let mut sorted = timings.clone();
    sorted.sort();
    eprintln!(
        "Redis stopped, timeout 500ms: 40 requests over ~2 s, {slow} took ≥ 250 ms; p50 {:?}, max {:?}",
        sorted[20], sorted[39]
    );
    let state = metric(&moat, "moat_limit_store_state");
    assert!(
        state == 1 || state == 2,
        "circuit state {state} with Redis gone"
    );
    assert!(
        metric(
            &moat,
            r#"moat_limit_store_errors_total{kind="circuit_open"}"#
        ) > 0
    );

    redis.resume();
    let redis_admits = r#"moat_limit_decisions_total{source="redis",decision="admit"}"#;
    let before = metric(&moat, redis_admits);
    assert!(
        eventually(|| {
            predict(&moat, &key);
            metric(&moat, redis_admits) > before
        }),
        "the circuit did not close"
    );
    assert_eq!(metric(&moat, "moat_limit_store_state"), 0);
}

/// The number of `EVAL`/`EVALSHA` calls Redis has served (`INFO commandstats`).
fn script_calls(redis: &Redis) -> u64 {
    let info = redis.command("INFO commandstats").unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn a_key_with_only_llm_limits_costs_no_redis_call_outside_llm_operations() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let budget = mint(&store, "budget", &["--token-budget", "1000/day"]);
    let streams = mint(&store, "streams", &["--max-concurrent-streams", "2"]);
    let upstream = Upstream::start();
    let text = limited_config(&upstream, &store, &redis_limits("deny"), "");
    let moat = start_replicas(&text, &env_of(&redis), 1).remove(0);
    let before = script_calls(&redis);
    for key in [&budget, &streams] {
        for _ in 0..5 {
            assert_eq!(predict(&moat, key).status, 200);
        }
    }
    assert_eq!(
        script_calls(&redis),
        before,
        "a request no limit applies to went to Redis"
    );
    // And with Redis gone, `on_error: deny` has nothing to deny.
    redis.stop();
    assert_eq!(predict(&moat, &budget).status, 200);
    assert_eq!(predict(&moat, &streams).status, 200);
}

#[test]
fn counters_expire_a_minute_after_their_window_ends() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = mint(&store, "daily", &["--quota", "100/day"]);
    let upstream = Upstream::start();
    let text = limited_config(&upstream, &store, &redis_limits("deny"), "");
    let moat = start_replicas(&text, &env_of(&redis), 1).remove(0);
    assert_eq!(predict(&moat, &key).status, 200);
    let now = support::now();
    let day_ends = now - now % 86_400 + 86_400;
    let counter = redis.command("KEYS moat-test:quota:daily:day:*").unwrap();
    let name = counter
        .lines()
        .find(|l| l.starts_with("moat-test:"))
        .unwrap();
    let expires = redis.command(&format!("EXPIRETIME {name}")).unwrap();
    let expires: u64 = expires.trim().trim_start_matches(':').parse().unwrap();
    assert_eq!(expires, day_ends + 60, "{name}");
}

/// Every response of a key with a quota carries the `RateLimit-*` fields: admitted, refused
/// by the key's bucket (the quota unspent), refused by validation after stage 5 (spent).
#[test]
fn every_response_of_a_quota_key_carries_the_ratelimit_fields() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let upstream = Upstream::start();
    for (name, limits) in [
        ("memory", "  store: memory\n".to_owned()),
        ("redis", redis_limits("deny")),
    ] {
        let key = mint(
            &store,
            &format!("quota-{name}"),
            &["--quota", "5/day", "--rate-limit", "1/2"],
        );
        let text = limited_config(&upstream, &store, &limits, "");
        let moat = start_replicas(&text, &env_of(&redis), 1).remove(0);
        let remaining = |response: &support::RawResponse| {
            (
                response.status,
                response.header("ratelimit-limit").map(str::to_owned),
                response.header("ratelimit-remaining").map(str::to_owned),
            )
        };
        let first = predict(&moat, &key);
        assert_eq!(
            remaining(&first),
            (200, Some("5".into()), Some("4".into())),
            "{name}"
        );
        let invalid = support::post_json(
            moat.addr,
            "/v1/models/iris:predict",
            &[&format!("X-API-Key: {key}"), "X-Tenant: t-1"],
            r#"{"instances": "x"}"#,
        );
        assert_eq!(
            remaining(&invalid),
            (400, Some("5".into()), Some("3".into())),
            "{name}"
        );
        let limited = predict(&moat, &key);
        assert_eq!(limited.json()["code"], "rate_limited", "{name}");
        assert_eq!(
            remaining(&limited),
            (429, Some("5".into()), Some("3".into())),
            "{name}"
        );
    }
}
