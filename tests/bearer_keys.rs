//! API keys in `Authorization: Bearer`, as OpenAI-compatible clients send them: a spec's
//! `HTTPBearer` scheme bound to an `api_key` scheme with `bearer: true`. A key-shaped bearer
//! is a key (malformed ones refused before any hash), any other bearer is left to the JWT
//! scheme, and a requirement that would need both in one header is refused at load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use support::{Moat, Upstream, config, get, hs256, metric, moat_keys, now, post_json};

const SECRET: &str = "0123456789abcdef0123456789abcdef-hmac";
const CHAT: &str = r#"{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}]}"#;

fn spec() -> String {
    format!(
        "{}/tests/fixtures/openai-compatible.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `HTTPBearer` bound to the key store (bearer slot), and a JWT scheme `token` beside it.
fn bearer_config(
    upstream: &Upstream,
    store: &std::path::Path,
    key_extra: &str,
    policy: &str,
) -> String {
    config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    HTTPBearer: {{type: api_key, store: {}{key_extra}}}\n    token: {{type: jwt, issuer: iss, audience: aud, algorithms: [HS256], secret: {SECRET}}}\npolicy:\n{policy}",
            spec(),
            store.display()
        ),
    )
}

/// `moat_key_verifications_total{result, cache}`.
fn verifications(moat: &Moat, result: &str, cache: &str) -> u64 {
    metric(
        moat,
        &format!(r#"moat_key_verifications_total{{result="{result}",cache="{cache}"}}"#),
    )
}

fn chat(moat: &Moat, authorization: &str) -> support::RawResponse {
    post_json(
        moat.addr,
        "/v1/chat/completions",
        &[&format!("Authorization: {authorization}")],
        CHAT,
    )
}

#[test]
fn a_key_in_the_bearer_slot_is_checked_as_a_key_and_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &[
            "new", "--id", "sdk", "--scopes", "chat", "--owner", "team-llm",
        ],
    );
    let upstream = Upstream::start();
    let text = bearer_config(
        &upstream,
        &store,
        ", bearer: true",
        "  default: [{HTTPBearer: []}]\n",
    );
    let moat = Moat::start(&text);

    let response = chat(&moat, &format!("Bearer {key}"));
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let seen = upstream.requests().pop().unwrap();
    assert_eq!(
        seen.header("authorization"),
        None,
        "the key reached the model"
    );
    assert_eq!(seen.header("x-moat-key-id"), Some("sdk"));
    assert_eq!(seen.header("x-moat-subject"), Some("team-llm"));
    // `bearer` is case-insensitive, as RFC 9110 has it.
    assert_eq!(
        get(
            moat.addr,
            "/v1/models",
            &[&format!("Authorization: bearer {key}")]
        )
        .status,
        200
    );

    // A malformed and an unknown key: the same 401, with the challenge a bearer client
    // reads, and no argon2 hash for either.
    let misses = verifications(&moat, "valid", "miss");
    for wrong in [
        "Bearer moat_sdk_short",
        "Bearer moat_nobody_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let refused = chat(&moat, wrong);
        assert_eq!(refused.status, 401, "{wrong}");
        assert_eq!(refused.json()["code"], "invalid_api_key");
        assert_eq!(
            refused.header("www-authenticate"),
            Some(r#"Bearer realm="moat", error="invalid_token""#)
        );
    }
    assert_eq!(verifications(&moat, "malformed", "none"), 1);
    assert_eq!(verifications(&moat, "unknown", "none"), 1);
    assert_eq!(verifications(&moat, "valid", "miss"), misses);
    // A key in the bearer slot and in the header: which one counts is not for moat to guess.
    let both = post_json(
        moat.addr,
        "/v1/chat/completions",
        &[
            &format!("Authorization: Bearer {key}"),
            &format!("X-API-Key: {key}"),
        ],
        CHAT,
    );
    assert_eq!(both.status, 401);
    // Still 200 in the header alone (`bearer: true` is alongside `header`).
    assert_eq!(
        get(moat.addr, "/v1/models", &[&format!("X-API-Key: {key}")]).status,
        200
    );
}

#[test]
fn a_jwt_in_the_bearer_slot_is_still_a_jwt_and_a_short_scope_gets_the_bearer_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &["new", "--id", "reader", "--scopes", "models:read"],
    );
    let upstream = Upstream::start();
    let policy = "  operations:\n    list_models: [{HTTPBearer: [models:read]}, {token: [models:read]}]\n    chat_completions: [{HTTPBearer: [chat]}, {token: [chat]}]\n";
    let moat = Moat::start(&bearer_config(&upstream, &store, ", bearer: true", policy));

    let token = hs256(
        SECRET,
        &serde_json::json!({"iss": "iss", "aud": "aud", "sub": "alice", "scope": "chat", "exp": now() + 300}),
    );
    let response = chat(&moat, &format!("Bearer {token}"));
    assert_eq!(response.status, 200);
    assert_eq!(
        upstream.requests().pop().unwrap().header("x-moat-subject"),
        Some("alice")
    );
    // A broken JWT is a token refusal, and never hashed as a key.
    let hashes = verifications(&moat, "valid", "miss");
    let broken = chat(&moat, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln");
    assert_eq!(broken.json()["code"], "invalid_token");
    assert_eq!(verifications(&moat, "valid", "miss"), hashes);

    // The key may list models, not chat: 403 with the RFC 6750 challenge.
    assert_eq!(
        get(
            moat.addr,
            "/v1/models",
            &[&format!("Authorization: Bearer {key}")]
        )
        .status,
        200
    );
    let denied = chat(&moat, &format!("Bearer {key}"));
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["code"], "insufficient_scope");
    assert_eq!(
        denied.header("www-authenticate"),
        Some(r#"Bearer realm="moat", error="insufficient_scope", scope="chat""#)
    );
}

#[test]
fn bindings_that_cannot_work_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    moat_keys(&store, &["new", "--id", "k", "--scopes", "chat"]);
    let upstream = Upstream::start();
    let check = |text: &str| {
        let path = dir.path().join("moat.yaml");
        std::fs::write(&path, text).unwrap();
        let output = support::run_moat(&["check", "--config", path.to_str().unwrap()], &[]);
        (output.status.success(), support::text(&output))
    };
    // The spec sends HTTPBearer as a bearer; a key scheme reading only X-API-Key would
    // refuse every OpenAI client.
    let (ok, said) = check(&bearer_config(
        &upstream,
        &store,
        "",
        "  default: [{HTTPBearer: []}]\n",
    ));
    assert!(!ok && said.contains("set `bearer: true`"), "{said}");
    // One Authorization header cannot carry a JWT and a key at once.
    let both = "  default: [{HTTPBearer: [], token: []}]\n";
    let (ok, said) = check(&bearer_config(&upstream, &store, ", bearer: true", both));
    assert!(
        !ok && said.contains("both are read from the one `Authorization: Bearer` header"),
        "{said}"
    );
    let (ok, said) = check(&bearer_config(
        &upstream,
        &store,
        ", bearer: true",
        "  default: [{HTTPBearer: []}]\n",
    ));
    assert!(ok, "{said}");
    assert!(
        said.contains("HTTPBearer") && said.contains("Authorization: Bearer"),
        "{said}"
    );
}

/// The official `openai` Python client, configured only with `base_url` and `api_key` (a
/// moat key), against moat in front of a real OpenAI-protocol server (FastAPI, HTTPBearer on
/// every operation, spec fetched from it): models, a chat completion, a streamed one, and a
/// wrong key raised as the SDK's `AuthenticationError`. The model never sees the key.
#[test]
fn the_official_openai_client_works_unchanged_with_a_moat_key() {
    let Some(python) = support::model_python() else {
        return;
    };
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai-server");
    let (mut server, port) = support::uvicorn(&python, &root);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(&store, &["new", "--id", "sdk", "--scopes", "chat"]);
    let model = format!("http://127.0.0.1:{port}");
    let moat = Moat::start(&config(
        &model,
        &format!(
            "openapi:\n  url: {model}/openapi.json\n  fetch_timeout: 60s\nauth:\n  schemes:\n    HTTPBearer: {{type: api_key, bearer: true, store: {}}}\n",
            store.display()
        ),
    ));
    let output = std::process::Command::new(&python)
        .arg(root.join("client.py"))
        .arg(format!("http://{}", moat.addr))
        .arg(&key)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(output.status.success(), "{}", support::text(&output));
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got["models"], serde_json::json!(["llama-3.1-8b"]));
    assert_eq!(
        got["owned_by"], "no-authorization",
        "the key reached the model"
    );
    assert_eq!(got["reply"], "hello from the model");
    assert_eq!(got["fingerprint"], "no-authorization");
    assert_eq!(
        got["streamed"],
        serde_json::json!(["", "hello", " from", " the", " model", ""])
    );
    assert_eq!(got["wrong_key"], 401);
    let lines = moat.wait_for_access_lines(4);
    let keyed = lines.iter().filter(|l| l["key_id"] == "sdk").count();
    assert!(keyed >= 3, "{lines:?}");
}

/// `moat explain` walks a request with a key in the bearer slot like any other, and never
/// echoes the key.
#[test]
fn explain_reads_a_key_in_the_bearer_slot() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(&store, &["new", "--id", "sdk", "--scopes", "chat"]);
    let upstream = Upstream::start();
    let path = dir.path().join("moat.yaml");
    let policy = "  default: [{HTTPBearer: [chat]}]\n";
    std::fs::write(
        &path,
        bearer_config(&upstream, &store, ", bearer: true", policy),
    )
    .unwrap();
    let explain = |authorization: &str| {
        let header = format!("Authorization: {authorization}");
        let output = support::run_moat(
            &[
                "explain",
                "--config",
                path.to_str().unwrap(),
                "POST",
                "/v1/chat/completions",
                "-H",
                &header,
                "--data",
                CHAT,
            ],
            &[],
        );
        (output.status.code(), support::text(&output))
    };
    let (code, report) = explain(&format!("Bearer {key}"));
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("HTTPBearer: valid key `sdk`, scopes [chat]"),
        "{report}"
    );
    assert!(report.contains("would be forwarded"), "{report}");
    assert!(
        !report.contains(&key[10..]),
        "the key was echoed:\n{report}"
    );
    let (code, report) = explain("Bearer moat_sdk_short");
    assert_ne!(code, Some(0));
    assert!(report.contains("401 invalid_api_key"), "{report}");
    assert!(report.contains("malformed key"), "{report}");
}
