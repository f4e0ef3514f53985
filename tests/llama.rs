//! Token caps and budgets a caller cannot talk past, against a server that behaves as
//! llama.cpp's does (`tests/llama-server/app.py`: reads only `max_tokens`, takes 0 or none
//! as "no limit", ignores `stream_options`, streams a chunk per byte-level token with `""`
//! for partial characters, refuses a body with a duplicate key), driven by the official
//! `openai` client as a hostile caller would (`tests/llama-server/hostile_client.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::path::{Path, PathBuf};

use support::{Moat, PyServer, config, eventually, metric, moat_keys, post_json};

fn llama_config(model: &PyServer, store: &Path, extra: &str) -> String {
    config(
        &model.url(),
        &format!(
            "openapi:\n  url: {}/openapi.json\n  fetch_timeout: 60s\nauth:\n  schemes:\n    HTTPBearer: {{type: api_key, bearer: true, store: {}}}\n{extra}",
            model.url(),
            store.display()
        ),
    )
}

/// Every body the server received parses as one object with no member twice (the server
/// refuses one that does not, so a 200 says as much; this says which request it was).
fn bodies(model: &PyServer) -> Vec<serde_json::Value> {
    model.log()["bodies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|body| serde_json::from_str(body.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn a_hostile_openai_client_gets_no_more_tokens_than_its_key_allows() {
    let Some(model) = PyServer::start("tests/llama-server") else {
        return;
    };
    let python = support::model_python().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let capped = moat_keys(&store, &["new", "--id", "capped", "--max-tokens", "16"]);
    let cjk = moat_keys(&store, &["new", "--id", "cjk", "--token-budget", "300/day"]);
    let emoji = moat_keys(
        &store,
        &["new", "--id", "emoji", "--token-budget", "300/day"],
    );
    let deaf = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "deaf",
            "--max-tokens",
            "16",
            "--token-budget",
            "200/day",
        ],
    );
    let moat = Moat::start(&llama_config(&model, &store, ""));
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/llama-server/hostile_client.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(format!("http://{}", moat.addr))
        .args([&capped, &cjk, &emoji, &deaf])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", support::text(&output));
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    // 1. `max_tokens: 0` is "no limit" to llama.cpp: refused, on both operations.
    for zero in ["zero_chat", "zero_completion"] {
        assert_eq!(got[zero]["status"], 400, "{got}");
        assert_eq!(got[zero]["code"], "invalid_llm_request", "{got}");
    }
    // 2. `max_completion_tokens` alone is written into the `max_tokens` llama.cpp reads.
    assert_eq!(got["max_completion_tokens"]["status"], 200, "{got}");
    assert_eq!(
        got["max_completion_tokens"]["completion_tokens"], 8,
        "{got}"
    );
    // 3. No `max_tokens` on a capped key: the cap is written in, JSON or stream.
    assert_eq!(got["no_max_tokens"]["completion_tokens"], 16, "{got}");
    assert_eq!(got["no_max_tokens_stream"], 16, "{got}");
    assert_eq!(got["over_cap"]["code"], "max_tokens_exceeded", "{got}");
    // 5. Budgets of 300 spent on byte-level tokens (three a CJK character, four an
    // emoji): what the streams delivered stays within the budget.
    for name in ["cjk", "emoji"] {
        let tokens = got[name]["tokens"].as_u64().unwrap();
        let streams = got[name]["streams"].as_u64().unwrap();
        assert!(streams >= 1 && tokens <= 300, "{name}: {got}");
        assert!(tokens > 200, "{name}: the budget was not used: {got}");
    }
    // 4. A server that ignores the bound: its JSON answer is withheld, not relayed; its
    // stream is cut at the cap, and the error says so (the budget is not spent).
    assert_eq!(got["deaf_json"]["status"], 502, "{got}");
    assert_eq!(
        got["deaf_json"]["code"], "upstream_exceeded_max_tokens",
        "{got}"
    );
    assert_eq!(got["deaf_stream"]["tokens"], 16, "{got}");
    assert_eq!(got["deaf_stream"]["error"], "max_tokens_reached", "{got}");
    assert_eq!(got["after_cut"]["status"], 200, "{got}");
    assert!(
        eventually(|| model.log()["cancelled"] == 1),
        "{}",
        model.log()
    );

    // What reached the model: every bounded request named its bound in both fields, and
    // no refused one reached it.
    let received = bodies(&model);
    assert!(!received.is_empty());
    for body in &received {
        assert!(
            body["max_tokens"].as_u64().is_some_and(|n| n >= 1),
            "{body}"
        );
        assert_eq!(body["max_tokens"], body["max_completion_tokens"], "{body}");
    }
    assert_eq!(
        metric(&moat, r#"moat_llm_streams_cut_total{key="deaf"}"#),
        1
    );
}

/// With `stream_usage`, `"max_tokens": null` and `"stream_options": null` are replaced, not
/// sent twice, and a server that ignores `include_usage` (llama.cpp) is counted per chunk.
#[test]
fn null_fields_are_replaced_never_sent_twice() {
    let Some(model) = PyServer::start("tests/llama-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "k",
            "--max-tokens",
            "12",
            "--token-budget",
            "1000/day",
        ],
    );
    let moat = Moat::start(&llama_config(
        &model,
        &store,
        "policy:\n  stream_usage: true\n",
    ));
    let body = r#"{"model":"cjk","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":null,"stream_options":null,"n_predict":null}"#;
    let reply = post_json(
        moat.addr,
        "/v1/chat/completions",
        &[&format!("Authorization: Bearer {key}")],
        body,
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let sent = &bodies(&model)[0];
    assert_eq!(sent["max_tokens"], 12);
    assert_eq!(sent["n_predict"], 12);
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // 12 byte-level tokens are four CJK characters: counted 12, not 4.
    let line = moat.wait_for_access_lines(1).remove(0);
    assert_eq!(line["completion_tokens"], 12, "{line}");
}
