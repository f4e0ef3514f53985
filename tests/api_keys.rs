//! API keys end to end: real argon2id hashes, keys minted by `moat keys`, every refusal the
//! same 401, no hash for malformed keys or unknown ids, bearer before key, and a flood of
//! wrong secrets that must not starve a cached valid key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use moat::auth::api_key::hash_key;
use moat::auth::keystore::new_key;
use serde_json::Value;
use support::{Moat, Upstream, config, fixture, get, metric, moat_keys, post_json};

const PREDICT: &str = "/v1/models/iris:predict";
const BODY: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;

struct Keys {
    dir: tempfile::TempDir,
    valid: String,
    others: Vec<(&'static str, String)>,
}

/// A store with one good key and one key per restriction, each hashed for real.
fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let valid = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "good",
            "--scopes",
            "predict,models:read",
            "--owner",
            "team-risk",
        ],
    );
    let mut text = std::fs::read_to_string(&store).unwrap();
    let mut others = Vec::new();
    for (id, extra) in [
        ("expired", "    expires_at: 2020-01-01T00:00:00Z\n"),
        ("pending", "    not_before: 2099-01-01T00:00:00Z\n"),
        ("disabled", "    disabled: true\n"),
        ("far-away", "    allowed_cidrs: [10.0.0.0/8]\n"),
        ("list-only", "    operations: [list_models]\n"),
        ("no-scope", ""),
    ] {
        let key = new_key(id);
        let scopes = if id == "no-scope" {
            "[models:read]"
        } else {
            "[predict, models:read]"
        };
        text.push_str(&format!(
            "  - id: {id}\n    hash: \"{}\"\n    scopes: {scopes}\n{extra}",
            hash_key(&key, None).unwrap()
        ));
        others.push((id, key));
    }
    std::fs::write(&store, text).unwrap();
    Keys { dir, valid, others }
}

fn moat(upstream: &Upstream, keys: &Keys, requirement: &str) -> Moat {
    let extra = format!(
        "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key:\n      type: api_key\n      store: {}\n    bearer:\n      type: jwt\n      issuer: https://login.example.com/\n      audience: model-api\n      algorithms: [HS256]\n      secret: 0123456789abcdef0123456789abcdef-hmac\npolicy:\n  default: [{{api_key: []}}]\n  operations:\n    predict: {requirement}\n",
        fixture("model.yaml"),
        keys.dir.path().join("keys.yaml").display()
    );
    Moat::start(&config(&upstream.url(), &extra))
}

fn predict(moat: &Moat, key: &str) -> support::RawResponse {
    support::predict_with_key(moat, key)
}

#[test]
fn a_valid_key_is_forwarded_with_its_identity_and_without_the_key() {
    let keys = keys();
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    let response = predict(&moat, &keys.valid);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let seen = &upstream.requests()[0];
    assert_eq!(seen.header("x-moat-key-id"), Some("good"));
    assert_eq!(seen.header("x-moat-subject"), Some("team-risk"));
    assert_eq!(seen.header("x-moat-scopes"), Some("predict models:read"));
    assert_eq!(seen.header("x-api-key"), None, "the key was forwarded");
    // The second use is answered from the verification cache.
    assert_eq!(predict(&moat, &keys.valid).status, 200);
    assert_eq!(
        metric(
            &moat,
            r#"moat_key_verifications_total{result="valid",cache="miss"}"#
        ),
        1
    );
    assert_eq!(
        metric(
            &moat,
            r#"moat_key_verifications_total{result="valid",cache="hit"}"#
        ),
        1
    );
    assert!(
        !moat.lines().join("\n").contains(&keys.valid),
        "the key reached the log"
    );
}

#[test]
fn every_key_failure_gets_the_same_401() {
    let keys = keys();
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    // Well-formed, existing id, wrong secret.
    let wrong_secret = new_key("good");
    let mut cases: Vec<(&str, String)> = vec![
        ("malformed", "not-a-key".to_owned()),
        ("unknown id", new_key("nobody")),
        ("wrong secret", wrong_secret),
    ];
    for (id, key) in &keys.others {
        if matches!(*id, "expired" | "pending" | "disabled" | "far-away") {
            cases.push((id, key.clone()));
        }
    }
    let mut bodies = Vec::new();
    for (case, key) in &cases {
        let response = predict(&moat, key);
        assert_eq!(response.status, 401, "{case}");
        assert_eq!(
            response.header("www-authenticate"),
            Some(r#"ApiKey realm="moat""#),
            "{case}"
        );
        let mut problem: Value = response.json();
        problem.as_object_mut().unwrap().remove("request_id");
        bodies.push(problem);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "401 bodies differ: {bodies:?}"
    );
    assert_eq!(bodies[0]["code"], "invalid_api_key");
    assert_eq!(upstream.count(), 0);
    // Malformed keys and unknown ids never cost a hash.
    assert_eq!(
        metric(
            &moat,
            r#"moat_key_verifications_total{result="malformed",cache="none"}"#
        ),
        1
    );
    assert_eq!(
        metric(
            &moat,
            r#"moat_key_verifications_total{result="unknown",cache="none"}"#
        ),
        1
    );
}

#[test]
fn scopes_and_the_operations_allowlist_are_403() {
    let keys = keys();
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    let key_of = |id: &str| {
        keys.others
            .iter()
            .find(|(i, _)| *i == id)
            .unwrap()
            .1
            .clone()
    };
    let no_scope = predict(&moat, &key_of("no-scope"));
    assert_eq!(no_scope.status, 403);
    assert_eq!(no_scope.json()["code"], "insufficient_scope");
    assert_eq!(
        no_scope.header("www-authenticate"),
        None,
        "an API key's 403 carries no Bearer challenge"
    );
    let list_only = key_of("list-only");
    let refused = predict(&moat, &list_only);
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["code"], "operation_not_allowed");
    let allowed = get(
        moat.addr,
        "/v1/models",
        &[&format!("X-API-Key: {list_only}")],
    );
    assert_eq!(allowed.status, 200);
    assert_eq!(upstream.count(), 1);
}

#[test]
fn a_missing_or_invalid_bearer_token_means_no_key_is_ever_hashed() {
    let keys = keys();
    let upstream = Upstream::start();
    // Both credentials are required; the bearer is checked first.
    let moat = moat(&upstream, &keys, "[{api_key: [], bearer: []}]");
    let no_token = predict(&moat, &keys.valid);
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.json()["code"], "credentials_missing");
    let bad_token = post_json(
        moat.addr,
        PREDICT,
        &[
            &format!("X-API-Key: {}", keys.valid),
            "Authorization: Bearer not.a.token",
            "X-Tenant: t-1",
        ],
        BODY,
    );
    assert_eq!(bad_token.status, 401);
    assert_eq!(bad_token.json()["code"], "invalid_token");
    let hashed = metric(
        &moat,
        r#"moat_key_verifications_total{result="valid",cache="miss"}"#,
    ) + metric(
        &moat,
        r#"moat_key_verifications_total{result="invalid",cache="miss"}"#,
    );
    assert_eq!(
        hashed, 0,
        "a key was hashed for a request without a valid token"
    );
}

#[test]
fn a_flood_of_wrong_secrets_does_not_starve_a_cached_valid_key() {
    let keys = keys();
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    assert_eq!(predict(&moat, &keys.valid).status, 200);
    let addr = moat.addr;
    let flood: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for _ in 0..20 {
                    let wrong = new_key("good");
                    let response = post_json(
                        addr,
                        PREDICT,
                        &[&format!("X-API-Key: {wrong}"), "X-Tenant: t-1"],
                        BODY,
                    );
                    statuses.push(response.status);
                }
                statuses
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let flood_started = Instant::now();
    while flood_started.elapsed() < Duration::from_secs(2) {
        let started = Instant::now();
        assert_eq!(predict(&moat, &keys.valid).status, 200);
        latencies.push(started.elapsed());
    }
    let statuses: Vec<u16> = flood.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "valid key under a flood of {} wrong secrets: {} requests, p50 {:?}, p99 {:?}, max {:?}; flood answers: {} x 401, {} x 503",
        statuses.len(),
        latencies.len(),
        percentile(0.5),
        percentile(0.99),
        latencies[latencies.len() - 1],
        statuses.iter().filter(|s| **s == 401).count(),
        statuses.iter().filter(|s| **s == 503).count(),
    );
}

#[test]
fn rate_limits_apply_per_key_and_per_client_including_failed_attempts() {
    let keys = keys();
    let store = keys.dir.path().join("keys.yaml");
    let limited = new_key("limited");
    let mut text = std::fs::read_to_string(&store).unwrap();
    text.push_str(&format!(
        "  - id: limited\n    hash: \"{}\"\n    scopes: [predict]\n    rate_limit: {{per_second: 1, burst: 2}}\n",
        hash_key(&limited, None).unwrap()
    ));
    std::fs::write(&store, text).unwrap();
    let upstream = Upstream::start();
    let by_key = moat(&upstream, &keys, "[{api_key: [predict]}]");
    assert_eq!(predict(&by_key, &limited).status, 200);
    assert_eq!(predict(&by_key, &limited).status, 200);
    let refused = predict(&by_key, &limited);
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["code"], "rate_limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Another key is not affected.
    assert_eq!(predict(&by_key, &keys.valid).status, 200);

    let extra = format!(
        "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key:\n      type: api_key\n      store: {}\npolicy:\n  default: [{{api_key: []}}]\n  client_rate_limit: {{per_second: 1, burst: 3}}\n",
        fixture("model.yaml"),
        store.display()
    );
    let by_client = Moat::start(&config(&upstream.url(), &extra));
    for _ in 0..3 {
        assert_eq!(
            predict(&by_client, &new_key("good")).status,
            401,
            "wrong keys count too"
        );
    }
    let after_failures = predict(&by_client, &keys.valid);
    assert_eq!(
        after_failures.status, 429,
        "a client that spent its budget on wrong keys"
    );
}

fn check(config_text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    std::fs::write(&path, config_text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn spec_schemes_must_match_their_binding_and_keys_in_query_are_refused() {
    let keys = keys();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    let store = keys.dir.path().join("keys.yaml");
    let write_spec = |location: &str, name: &str| {
        std::fs::write(
            &spec,
            format!(
                "openapi: 3.1.0\ninfo: {{title: t, version: '1'}}\nsecurity: [{{key: []}}]\npaths:\n  /p:\n    get:\n      operationId: p\n      responses: {{}}\ncomponents:\n  securitySchemes:\n    key: {{type: apiKey, in: {location}, name: {name}}}\n"
            ),
        )
        .unwrap();
    };
    let moat_config = format!(
        "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\nopenapi:\n  file: {}\nauth:\n  schemes:\n    key: {{type: api_key, store: {}}}\n",
        spec.display(),
        store.display()
    );
    write_spec("header", "X-API-Key");
    let (ok, output) = check(&moat_config);
    assert!(ok, "{output}");
    assert!(
        output.contains("key[]"),
        "check prints the requirement: {output}"
    );
    write_spec("query", "api_key");
    let (ok, output) = check(&moat_config);
    assert!(!ok && output.contains("set `query: api_key`"), "{output}");
    let in_query = moat_config.replace("store:", "query: api_key, store:");
    let (ok, output) = check(&in_query);
    assert!(
        !ok && output.contains("allow_api_key_in_query_or_cookie"),
        "{output}"
    );
    let (ok, output) = check(&format!(
        "{in_query}policy:\n  allow_api_key_in_query_or_cookie: true\n"
    ));
    assert!(ok, "{output}");
    write_spec("header", "X-Other-Key");
    let (ok, output) = check(&moat_config);
    assert!(
        !ok && output.contains("set `header: X-Other-Key`"),
        "{output}"
    );
}

#[test]
fn keys_in_the_query_or_a_cookie_work_when_allowed_and_never_reach_the_model() {
    let keys = keys();
    let upstream = Upstream::start();
    let store = keys.dir.path().join("keys.yaml");
    let extra = format!(
        "openapi:\n  file: {}\n  reject_unknown_query: true\nauth:\n  schemes:\n    q: {{type: api_key, query: api_key, store: {store}}}\n    c: {{type: api_key, cookie: moat_key, store: {store}}}\npolicy:\n  allow_api_key_in_query_or_cookie: true\n  default: [{{q: []}}, {{c: []}}]\n",
        fixture("model.yaml"),
        store = store.display()
    );
    let moat = Moat::start(&config(&upstream.url(), &extra));
    let by_query = get(
        moat.addr,
        &format!("/v1/models?limit=5&api_key={}", keys.valid),
        &[],
    );
    assert_eq!(
        by_query.status,
        200,
        "{}",
        String::from_utf8_lossy(&by_query.body)
    );
    let by_cookie = get(
        moat.addr,
        "/v1/models?limit=5",
        &[&format!("Cookie: theme=dark; moat_key={}", keys.valid)],
    );
    assert_eq!(by_cookie.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen[0].target, "/v1/models?limit=5");
    assert_eq!(seen[1].header("cookie"), Some("theme=dark"));
    assert_eq!(get(moat.addr, "/v1/models?api_key=wrong", &[]).status, 401);
}

#[test]
fn the_long_policy_form_names_an_operation_by_method_and_template() {
    let keys = keys();
    let upstream = Upstream::start();
    let extra = format!(
        "openapi:\n  file: {}\nauth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n  operations:\n    \"GET /v1/models\": {{security: [], mode: shadow}}\n",
        fixture("model.yaml"),
        keys.dir.path().join("keys.yaml").display()
    );
    let moat = Moat::start(&config(&upstream.url(), &extra));
    // Public, and in shadow mode: an invalid parameter is logged and forwarded.
    assert_eq!(get(moat.addr, "/v1/models?limit=0", &[]).status, 200);
    assert_eq!(get(moat.addr, "/v1/models/iris", &[]).status, 401);
    let (ok, output) = check(&format!(
        "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\nopenapi:\n  file: {}\npolicy:\n  operations:\n    nosuchop: []\n",
        fixture("model.yaml")
    ));
    assert!(
        !ok && output.contains("policy.operations.nosuchop"),
        "{output}"
    );
}

#[test]
fn concurrent_first_uses_of_one_key_share_a_single_hash() {
    let keys = keys();
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    let addr = moat.addr;
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let key = keys.valid.clone();
            std::thread::spawn(move || {
                post_json(
                    addr,
                    PREDICT,
                    &[&format!("X-API-Key: {key}"), "X-Tenant: t-1"],
                    BODY,
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        metric(
            &moat,
            r#"moat_key_verifications_total{result="valid",cache="miss"}"#
        ),
        1
    );
}

#[test]
fn a_full_verification_queue_answers_503_with_retry_after() {
    let keys = keys();
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    let addr = moat.addr;
    // Far more distinct wrong keys at once than the pool's queue holds (16 per core).
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(120));
    let threads: Vec<_> = (0..120)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let wrong = new_key("good");
                barrier.wait();
                let response = post_json(
                    addr,
                    PREDICT,
                    &[&format!("X-API-Key: {wrong}"), "X-Tenant: t-1"],
                    BODY,
                );
                (
                    response.status,
                    response.header("retry-after").map(str::to_owned),
                )
            })
        })
        .collect();
    let answers: Vec<(u16, Option<String>)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        answers.iter().all(|(s, _)| *s == 401 || *s == 503),
        "{answers:?}"
    );
    let overloaded: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        !overloaded.is_empty(),
        "the queue never filled: {answers:?}"
    );
    assert!(
        overloaded
            .iter()
            .all(|(_, retry)| retry.as_deref() == Some("1"))
    );
    // The valid key still gets through afterwards.
    assert_eq!(predict(&moat, &keys.valid).status, 200);
}

#[test]
fn revoke_and_rotate_through_the_cli_take_effect_on_the_next_start() {
    let keys = keys();
    let store = keys.dir.path().join("keys.yaml");
    let moat_keys = |args: &[&str]| moat_keys(&store, args);
    let rotated = moat_keys(&["rotate", "good", "--grace", "1h"]);
    assert!(
        rotated.starts_with("moat_good-r2_"),
        "the new key is printed once"
    );
    let far_away = keys
        .others
        .iter()
        .find(|(id, _)| *id == "far-away")
        .unwrap()
        .1
        .clone();
    moat_keys(&["revoke", "far-away"]);
    let listing = moat_keys(&["list"]);
    assert!(
        listing.contains("good-r2") && listing.contains("disabled"),
        "{listing}"
    );
    assert!(!listing.contains(&rotated), "list shows a key");
    let store_text = std::fs::read_to_string(&store).unwrap();
    let full_hash = store_text
        .lines()
        .find_map(|line| line.trim().strip_prefix("hash: \""))
        .map(|hash| hash.trim_end_matches('"').to_owned())
        .unwrap();
    assert!(!listing.contains(&full_hash), "list shows a full hash");
    assert!(
        !listing.contains('$') && !listing.contains("argon2id"),
        "the default list shows something of a hash: {listing}"
    );
    let with_hashes = moat_keys(&["list", "--hashes"]);
    assert!(
        !with_hashes.contains('$') && with_hashes.contains("argon2id m=19456,t=2,p=1"),
        "--hashes shows part of a hash, or not its cost: {with_hashes}"
    );
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    assert_eq!(
        predict(&moat, &rotated).status,
        200,
        "the rotated key works"
    );
    assert_eq!(
        predict(&moat, &keys.valid).status,
        200,
        "the old key works during the grace period"
    );
    assert_eq!(
        predict(&moat, &far_away).status,
        401,
        "a revoked key is refused"
    );
    let seen = upstream.requests();
    assert_eq!(seen[0].header("x-moat-key-id"), Some("good-r2"));
    assert_eq!(
        seen[0].header("x-moat-subject"),
        Some("team-risk"),
        "the owner carries over"
    );
}

/// A store written as JSON loads, so `moat keys` must edit it too: what `list` shows,
/// `revoke` and `rotate` find. It stays JSON (a record a line: the format for large stores),
/// and nothing is said about a rewrite.
#[test]
fn revoke_and_rotate_work_on_a_json_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.json");
    let (batch, web) = (new_key("batch"), new_key("web"));
    let json = serde_json::json!({"keys": [
        {"id": "batch", "hash": hash_key(&batch, None).unwrap(), "scopes": ["predict"],
         "owner": "team-risk", "rate_limit": {"per_second": 5, "burst": 10}},
        {"id": "web", "hash": hash_key(&web, None).unwrap(), "scopes": ["predict", "models:read"]},
    ]});
    std::fs::write(&store, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600)).unwrap();
    let listing = moat_keys(&store, &["list"]);
    assert!(
        listing.contains("batch") && listing.contains("web"),
        "{listing}"
    );

    let revoke = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["keys", "revoke", "web", "--store"])
        .arg(&store)
        .env_remove("MOAT_KEY_PEPPER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&revoke.stderr);
    assert!(revoke.status.success(), "{stderr}");
    assert!(!stderr.contains("rewritten"), "{stderr}");
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(text.starts_with("{\"keys\": [\n  {"), "{text}");
    let rotated = moat_keys(&store, &["rotate", "batch", "--grace", "1h"]);
    assert!(rotated.starts_with("moat_batch-r2_"), "{rotated}");
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the store's mode after an edit");
    let listing = moat_keys(&store, &["list"]);
    assert!(
        listing.contains("batch-r2") && listing.contains("disabled"),
        "{listing}"
    );

    let upstream = Upstream::start();
    let moat = Moat::start(&support::keyed_config(&upstream, &store));
    assert_eq!(predict(&moat, &rotated).status, 200, "the rotated key");
    assert_eq!(
        predict(&moat, &batch).status,
        200,
        "the old key, in its grace period"
    );
    assert_eq!(predict(&moat, &web).status, 401, "the revoked key");
    let seen = upstream.requests();
    assert_eq!(
        seen[0].header("x-moat-subject"),
        Some("team-risk"),
        "owner carried over"
    );
    let text = std::fs::read_to_string(&store).unwrap();
    assert_eq!(
        text.matches("\"rate_limit\": ").count(),
        2,
        "the rate limit carried over to the new key:\n{text}"
    );
}

/// Past the YAML parser's default node budget (~25,000 records of this shape stopped a
/// store before): a key among 40,000 records works, and a further `moat keys new` writes.
#[test]
fn a_store_of_forty_thousand_keys_loads_and_serves() {
    let keys = keys();
    let store = keys.dir.path().join("keys.yaml");
    let mut text = std::fs::read_to_string(&store).unwrap();
    // Records with well-formed hashes of no key: argon2 is not run for them.
    let hash = hash_key(&new_key("filler"), None).unwrap();
    for i in 0..40_000 {
        text.push_str(&format!(
            "  - id: \"fill{i:05}\"\n    hash: \"{hash}\"\n    scopes: [\"predict\",\"models:read\"]\n    owner: \"team-{}\"\n",
            i % 50
        ));
    }
    std::fs::write(&store, text).unwrap();
    let minted = moat_keys(&store, &["new", "--id", "late", "--scopes", "predict"]);
    let upstream = Upstream::start();
    let moat = moat(&upstream, &keys, "[{api_key: [predict]}]");
    assert_eq!(predict(&moat, &keys.valid).status, 200);
    assert_eq!(predict(&moat, &minted).status, 200);
    let config = moat.config_path.to_str().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["check", "--config", config])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("(40008 keys; "), "{report}");
    assert!(report.contains("of the 64 MiB a store may be"), "{report}");
}
