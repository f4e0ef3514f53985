//! LLM operations end to end: moat in front of a real FastAPI server that speaks the OpenAI
//! protocol as vLLM does (`tests/openai-server/app.py`: JSON with `usage`, SSE chunks one
//! token each, the usage chunk, `data: [DONE]`, chunked transfer), its spec fetched from
//! `/openapi.json`, keys minted with `moat keys new` and sent as `Authorization: Bearer`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    Moat, PyServer, RawResponse, Redis, config, eventually, metric, moat_keys, post_json,
};

/// The OpenAI-compatible test server, shaped as vLLM's.
struct Model;

impl Model {
    fn start() -> Option<PyServer> {
        PyServer::start("tests/openai-server")
    }
}

/// moat in front of `model`, its spec fetched from it, the spec's `HTTPBearer` bound to
/// the key store; `extra` is appended (a `policy:` or `limits:` section).
fn llm_config(model: &PyServer, store: &Path, extra: &str) -> String {
    config(
        &model.url(),
        &format!(
            "openapi:\n  url: {}/openapi.json\n  fetch_timeout: 60s\nauth:\n  schemes:\n    HTTPBearer: {{type: api_key, bearer: true, store: {}}}\n{extra}",
            model.url(),
            store.display()
        ),
    )
}

/// The messages every request sends; the prompt moat estimates from their JSON.
const MESSAGES: &str = r#"[{"role":"user","content":"hi"}]"#;

fn prompt_estimate() -> u64 {
    MESSAGES.len().div_ceil(4) as u64
}

fn body(model: &str, extra: &str) -> String {
    format!(r#"{{"model":"{model}","messages":{MESSAGES}{extra}}}"#)
}

fn chat(moat: &Moat, key: &str, body: &str) -> RawResponse {
    post_json(
        moat.addr,
        "/v1/chat/completions",
        &[&format!("Authorization: Bearer {key}")],
        body,
    )
}

fn code(response: &RawResponse) -> String {
    response.json()["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `data:` payloads of an SSE body.
fn events_of(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Tokens of content in streamed chat chunks.
fn streamed_tokens(events: &[String]) -> usize {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count()
}

fn tokens_metric(moat: &Moat, key: &str, kind: &str) -> u64 {
    metric(
        moat,
        &format!(r#"moat_llm_tokens_total{{key="{key}",kind="{kind}"}}"#),
    )
}

/// The access-log line of the `nth` request to the chat operation.
fn chat_line(moat: &Moat, count: usize, nth: usize) -> serde_json::Value {
    let lines = moat.wait_for_access_lines(count);
    lines
        .into_iter()
        .filter(|l| l["path"] == "/v1/chat/completions")
        .nth(nth)
        .unwrap()
}

#[test]
fn allowlist_cap_and_budget_with_the_unused_reservation_returned() {
    let Some(model) = Model::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "app",
            "--models",
            "llama-3.1-8b,counter",
            "--max-tokens",
            "50",
            "--token-budget",
            "300/day",
        ],
    );
    let moat = Moat::start(&llm_config(&model, &store, ""));

    let other = chat(&moat, &key, &body("gpt-5", r#","max_tokens":5"#));
    assert_eq!(
        (other.status, code(&other)),
        (403, "model_not_allowed".into())
    );
    let over = chat(&moat, &key, &body("counter", r#","max_tokens":51"#));
    assert_eq!(
        (over.status, code(&over)),
        (400, "max_tokens_exceeded".into())
    );
    assert!(over.json()["detail"].as_str().unwrap().contains("50"));
    assert_eq!(
        model.log()["requests"],
        serde_json::json!([]),
        "refusals reached the model"
    );

    // Each reserves 8 + 50 = 58 of 300 and uses 1 + 4: ten pass only if the unused part
    // of each reservation comes back.
    for _ in 0..10 {
        let reply = chat(&moat, &key, &body("llama-3.1-8b", r#","max_tokens":50"#));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["usage"]["total_tokens"], 5);
    }
    // 250 left; each uses 1 + 50: four fit, then 46 are left, short of a reservation of 58.
    for _ in 0..4 {
        let reply = chat(&moat, &key, &body("counter", r#","max_tokens":50"#));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let refused = chat(&moat, &key, &body("counter", r#","max_tokens":50"#));
    assert_eq!(
        (refused.status, code(&refused)),
        (429, "token_budget_exceeded".into())
    );
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    // Without max_tokens the key's cap is the reservation: it does not fit either.
    let uncapped = chat(&moat, &key, &body("llama-3.1-8b", ""));
    assert_eq!(uncapped.status, 429);
    // A small one still fits in what is left.
    let small = chat(&moat, &key, &body("llama-3.1-8b", r#","max_tokens":4"#));
    assert_eq!(small.status, 200);
    // The bound admitted went with every request, in both fields a server may read.
    let received = model.log()["requests"].as_array().unwrap().clone();
    assert_eq!(received.len(), 15);
    assert!(
        received
            .iter()
            .all(|r| r["max_tokens"].is_number() && r["max_tokens"] == r["max_completion_tokens"]),
        "{received:?}"
    );

    assert_eq!(tokens_metric(&moat, "app", "prompt"), 15);
    assert_eq!(
        tokens_metric(&moat, "app", "completion"),
        10 * 4 + 4 * 50 + 4
    );
    assert_eq!(
        metric(&moat, r#"moat_llm_reservations_refused_total{key="app"}"#),
        2
    );
    let line = chat_line(&moat, 19, 12);
    assert_eq!(
        (
            line["prompt_tokens"].clone(),
            line["completion_tokens"].clone()
        ),
        (1.into(), 50.into())
    );
}

#[test]
fn a_stream_is_cut_at_the_budget_and_the_model_sees_the_cancel() {
    let Some(model) = Model::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &["new", "--id", "runner", "--token-budget", "100/day"],
    );
    let moat = Moat::start(&llm_config(&model, &store, ""));
    // No max_tokens and no cap: the request reserves all 100 and is cut when its prompt
    // estimate and its streamed tokens reach them. `runaway` would stream 1000.
    let reply = chat(&moat, &key, &body("runaway", r#","stream":true"#));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let events = events_of(&reply.body);
    assert_eq!(streamed_tokens(&events), 100 - prompt_estimate() as usize);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let error: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(error["error"]["code"], "token_budget_exceeded");
    assert!(
        eventually(|| model.log()["cancelled"] == 1),
        "the model did not see the cancel: {}",
        model.log()
    );
    assert_eq!(
        metric(&moat, r#"moat_llm_streams_cut_total{key="runner"}"#),
        1
    );
    let line = chat_line(&moat, 1, 0);
    assert_eq!(line["stream_cut"], true);
    assert_eq!(line["completion_tokens"], 100 - prompt_estimate());
    // The budget is spent: the next request does not get even its prompt in.
    let next = chat(&moat, &key, &body("llama-3.1-8b", ""));
    assert_eq!(
        (next.status, code(&next)),
        (429, "token_budget_exceeded".into())
    );
}

#[test]
fn with_stream_usage_streams_report_usage_to_moat_only() {
    let Some(model) = Model::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "app",
            "--max-tokens",
            "8",
            "--token-budget",
            "1000/day",
        ],
    );
    let moat = Moat::start(&llm_config(
        &model,
        &store,
        "policy:\n  stream_usage: true\n",
    ));
    let reply = chat(&moat, &key, &body("counter", r#","stream":true"#));
    assert_eq!(reply.status, 200);
    let events = events_of(&reply.body);
    assert_eq!(streamed_tokens(&events), 8, "the cap was not written in");
    assert!(
        !events.iter().any(|e| e.contains(r#""choices": []"#)),
        "the usage chunk the client did not ask for reached it: {events:?}"
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let received = &model.log()["requests"][0];
    assert_eq!(received["max_tokens"], 8);
    assert_eq!(received["stream_options"]["include_usage"], true);
    // Settled from the model's usage: 1 prompt token (not the estimate) + 8.
    let line = chat_line(&moat, 1, 0);
    assert_eq!(
        (
            line["prompt_tokens"].clone(),
            line["completion_tokens"].clone()
        ),
        (1.into(), 8.into())
    );
    // A client that asks for usage gets it.
    let asked = chat(
        &moat,
        &key,
        &body(
            "counter",
            r#","stream":true,"stream_options":{"include_usage":true}"#,
        ),
    );
    let events = events_of(&asked.body);
    assert!(events.iter().any(|e| e.contains(r#""choices": []"#)));
}

#[test]
fn concurrent_streams_past_the_cap_are_refused_until_one_ends() {
    let Some(model) = Model::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &["new", "--id", "s", "--max-concurrent-streams", "1"],
    );
    let moat = Moat::start(&llm_config(&model, &store, ""));
    let stream = body("runaway", r#","stream":true"#);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: moat.test\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{stream}",
        stream.len()
    );
    let mut open = TcpStream::connect(moat.addr).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    open.write_all(request.as_bytes()).unwrap();
    let mut first = [0u8; 2048];
    let n = open.read(&mut first).unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );

    let second = chat(&moat, &key, &stream);
    assert_eq!(
        (second.status, code(&second)),
        (429, "too_many_streams".into())
    );
    assert_eq!(second.header("retry-after"), Some("1"));
    let plain = chat(&moat, &key, &body("llama-3.1-8b", ""));
    assert_eq!(
        plain.status, 200,
        "a request that does not stream is not capped"
    );

    // The client goes away: its stream ends upstream too, and frees the slot.
    drop(open);
    assert!(
        eventually(|| model.log()["cancelled"] == 1),
        "{}",
        model.log()
    );
    assert!(eventually(|| chat(
        &moat,
        &key,
        &body("llama-3.1-8b", r#","stream":true"#)
    )
    .status
        == 200));
}

#[test]
fn two_moats_share_token_budgets_in_redis() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let Some(model) = Model::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let runner = moat_keys(
        &store,
        &["new", "--id", "runner", "--tokens-per-minute", "60"],
    );
    let limits = format!(
        "limits:\n  store:\n    redis:\n      url: {}\n",
        redis.url()
    );
    let (a, b, app) = two_moats_spend_one_budget(&model, &store, &limits);
    let counter = |pattern: &str| {
        let keys = redis
            .command(&format!("KEYS moat:tokens:{pattern}"))
            .unwrap();
        let name = keys
            .lines()
            .find(|l| l.starts_with("moat:"))
            .unwrap()
            .to_owned();
        redis.command(&format!("GET {name}")).unwrap()
    };
    assert!(
        eventually(|| counter("app:day:*").contains("153")),
        "{}",
        counter("app:day:*")
    );
    // Embeddings count their prompt only (the estimate reserved, the model's count settled).
    let embedded = post_json(
        a.addr,
        "/v1/embeddings",
        &[&format!("Authorization: Bearer {app}")],
        r#"{"model":"counter","input":"a b c"}"#,
    );
    assert_eq!(embedded.status, 200);
    assert!(
        eventually(|| counter("app:day:*").contains("156")),
        "{}",
        counter("app:day:*")
    );

    // A stream on one moat is cut at what the other left of the minute's budget (both in
    // one minute: not started in its last seconds).
    let second_of_minute = support::now() % 60;
    if second_of_minute > 45 {
        std::thread::sleep(Duration::from_secs(61 - second_of_minute));
    }
    let first = chat(&a, &runner, &body("llama-3.1-8b", r#","max_tokens":4"#));
    assert_eq!(first.status, 200);
    let reply = chat(&b, &runner, &body("runaway", r#","stream":true"#));
    let events = events_of(&reply.body);
    assert_eq!(
        streamed_tokens(&events),
        60 - 5 - prompt_estimate() as usize,
        "{events:?}"
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(metric(&b, r#"moat_llm_streams_cut_total{key="runner"}"#), 1);
}

/// docs/llm.md's "LLM servers" section as a user follows it: its vLLM config (pointed at the
/// test server instead of vLLM's port) and its `moat keys new` command, checked with
/// `moat check` and served.
#[test]
fn the_readme_vllm_config_and_key_command_work_as_written() {
    let Some(model) = Model::start() else {
        return;
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/llm.md")).unwrap();
    let section = readme
        .split("## LLM servers")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let block = |fence: &str, first: &str| -> String {
        section
            .split(fence)
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.starts_with(first))
            .unwrap()
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let command = block("```sh\n", "moat keys new").replace("\\\n", " ");
    let args: Vec<&str> = command.split_whitespace().skip(2).collect();
    let key = moat_keys(&store, &args);
    let config_text = block("```yaml\n", "# config/moat.yaml in front of vLLM")
        .replace("http://127.0.0.1:8000", &model.url())
        .replace("\"0.0.0.0:8080\"", "127.0.0.1:0\nadmin_listen: 127.0.0.1:0")
        .replace("config/keys.yaml", &store.display().to_string())
        .replace("openapi.json\n", "openapi.json\n  fetch_timeout: 60s\n");
    let config_path = dir.path().join("moat.yaml");
    std::fs::write(&config_path, &config_text).unwrap();

    // The model listens before `moat check` fetches its spec (it would retry otherwise).
    assert!(eventually(
        || TcpStream::connect(("127.0.0.1", model.port)).is_ok()
    ));
    let check = support::run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    let said = support::text(&check);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("llm           chat_completions_v1_chat_completions_post (POST /v1/chat/completions): openai, detected from the path"),
        "{said}"
    );
    assert!(
        said.contains("(POST /v1/completions): openai, detected"),
        "{said}"
    );
    assert!(
        !said.contains("(POST /v1/embeddings): openai"),
        "`llm: none` was ignored: {said}"
    );

    let moat = Moat::start_at(&config_path, &[]);
    let reply = chat(&moat, &key, &body("llama-3.1-8b", r#","max_tokens":16"#));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let other = chat(&moat, &key, &body("mistral-7b", ""));
    assert_eq!(code(&other), "model_not_allowed");
    let over = chat(&moat, &key, &body("llama-3.1-8b", r#","max_tokens":4097"#));
    assert_eq!(code(&over), "max_tokens_exceeded");
    assert_eq!(tokens_metric(&moat, "chat-frontend", "completion"), 4);
}

#[test]
fn a_misspelled_llm_profile_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:8000\nopenapi:\n  file: {}\npolicy:\n  operations:\n    predict: {{llm: opeani}}\n",
            support::fixture("model.yaml")
        ),
    )
    .unwrap();
    let check = support::run_moat(&["check", "--config", path.to_str().unwrap()], &[]);
    let said = support::text(&check);
    assert!(!check.status.success());
    assert!(said.contains("opeani") && said.contains("openai"), "{said}");
}

/// The official `openai` client sees a stream moat cut as the SDK's `APIError` carrying
/// moat's code, after the tokens that fit; the next call is its `RateLimitError`.
/// Runs one of `tests/openai-server/`'s scripts (the official `openai` client) against moat
/// with `key`; what it printed, as JSON.
fn openai_client(python: &Path, script: &str, moat: &Moat, key: &str) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openai-server")
        .join(script);
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(format!("http://{}", moat.addr))
        .arg(key)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", support::text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_openai_client_raises_the_cut_as_an_api_error() {
    let Some(model) = Model::start() else {
        return;
    };
    let python = support::model_python().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(&store, &["new", "--id", "sdk", "--token-budget", "40/hour"]);
    let moat = Moat::start(&llm_config(&model, &store, ""));
    let got = openai_client(&python, "budget_client.py", &moat, &key);
    // The SDK writes `messages` compactly, as `MESSAGES` is.
    assert_eq!(got["received"], 40 - prompt_estimate(), "{got}");
    assert_eq!(got["error"]["type"], "APIError", "{got}");
    assert_eq!(got["error"]["code"], "token_budget_exceeded", "{got}");
    assert_eq!(got["after"], 429);
    assert!(eventually(|| model.log()["cancelled"] == 1));
}

/// The official `openai` client prints moat's reason: a refusal on an LLM operation carries
/// OpenAI's `error` object beside the problem's fields, and the SDK builds its exception
/// text from `error.message`.
#[test]
fn the_openai_client_shows_moats_reason_for_each_refusal() {
    let Some(model) = Model::start() else {
        return;
    };
    let python = support::model_python().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "sdk",
            "--models",
            "llama-3.1-8b",
            "--token-budget",
            "50/hour",
        ],
    );
    let moat = Moat::start(&llm_config(&model, &store, ""));
    let got = openai_client(&python, "refusals_client.py", &moat, &key);
    let cases = [
        ("401", "AuthenticationError", "the API key is not valid"),
        (
            "403",
            "PermissionDeniedError",
            "may not use the model the request names",
        ),
        ("400", "BadRequestError", "/temperature: "),
        ("429", "RateLimitError", "resets in "),
    ];
    for (status, kind, reason) in cases {
        let refusal = &got[status];
        assert_eq!(refusal["type"], kind, "{got}");
        let text = refusal["text"].as_str().unwrap();
        assert!(
            text.contains(reason),
            "{status}: {reason:?} not in {text:?}"
        );
    }
    // The 400 says what the bound is, never the value sent.
    let bad_request = got["400"]["text"].as_str().unwrap();
    assert!(bad_request.contains("maximum of 2"), "{bad_request}");
    assert!(
        !bad_request.contains("the value 7") && !bad_request.contains(": 7"),
        "{bad_request}"
    );
    assert!(
        got["429"]["text"]
            .as_str()
            .unwrap()
            .contains("token budget"),
        "{got}"
    );
}

#[test]
fn two_moats_share_token_budgets_on_a_redis_cluster() {
    let Some(cluster) = support::RedisCluster::start() else {
        return;
    };
    let Some(model) = Model::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let limits = format!(
        "limits:\n  store:\n    redis:\n      url: {}\n      timeout: 500ms\n",
        cluster.url()
    );
    two_moats_spend_one_budget(&model, &store, &limits);
    // The day's counter: on the one node that owns the slot of `{app}`, settled to 153.
    let counted = || {
        cluster
            .ports
            .iter()
            .map(|port| cluster.cli(*port, &["--scan", "--pattern", "moat:tokens:{app}:day:*"]))
            .filter(|name| !name.trim().is_empty())
            .map(|name| cluster.cli(cluster.ports[0], &["GET", name.trim()]))
            .collect::<Vec<_>>()
    };
    assert!(eventually(|| counted() == ["153\n"]), "{:?}", counted());
}

/// Key `app` minted (`--max-tokens 50 --token-budget 200/day`) and two moats on `limits` (a
/// shared store): each call reserves 58 and uses 51, so three fit in 200 across both moats
/// and the fourth is refused. The two moats and the key, for what the caller checks next.
fn two_moats_spend_one_budget(
    model: &PyServer,
    store: &Path,
    limits: &str,
) -> (Moat, Moat, String) {
    let app = moat_keys(
        store,
        &[
            "new",
            "--id",
            "app",
            "--max-tokens",
            "50",
            "--token-budget",
            "200/day",
        ],
    );
    let a = Moat::start(&llm_config(model, store, limits));
    let b = Moat::start(&llm_config(model, store, limits));
    for moat in [&a, &b, &a] {
        let reply = chat(moat, &app, &body("counter", r#","max_tokens":50"#));
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let refused = chat(&b, &app, &body("counter", r#","max_tokens":50"#));
    assert_eq!(
        (refused.status, code(&refused)),
        (429, "token_budget_exceeded".into())
    );
    (a, b, app)
}
