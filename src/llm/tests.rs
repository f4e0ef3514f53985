//! Unit tests of `llm`: admission of LLM requests against key rules and budgets.

use super::*;
use crate::config::{LimitStore, Period, TokenBudget};
use crate::limit::KeyLimits;

fn principal(key: &str) -> Principal {
    Principal {
        subject: None,
        key_id: Some(key.to_owned()),
        scopes: Vec::new(),
    }
}

fn rules(models: Option<&[&str]>, max_tokens: Option<u64>, inject: bool) -> Rules {
    let rules = KeyRules {
        models: models.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
        max_tokens,
    };
    Rules::new(vec![("k".to_owned(), rules)], inject).unwrap()
}

fn budget(tokens: u64, streams: Option<u32>) -> RateLimits {
    let limits = KeyLimits {
        tokens: [
            Some(TokenBudget {
                tokens,
                per: Period::Day,
            }),
            None,
        ],
        streams,
        ..KeyLimits::default()
    };
    RateLimits::new(
        &LimitStore::Memory,
        None,
        &[("k".into(), limits)],
        None,
        None,
    )
    .unwrap()
}

fn run(
    rules: &Rules,
    limits: &RateLimits,
    body: &str,
    mode: Mode,
) -> Result<(Bytes, Option<Grant>, HeaderMap, Vec<Rejection>), Rejection> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
    let mut shadowed = Vec::new();
    let mut enforce = |verdict: Result<(), Rejection>| match (verdict, mode) {
        (Err(rejection), Mode::Shadow) => {
            shadowed.push(rejection);
            Ok(())
        }
        (verdict, _) => verdict,
    };
    let caller = principal("k");
    let future = admit(
        rules,
        limits,
        Some(&caller),
        &mut headers,
        Bytes::from(body.to_owned()),
        &mut enforce,
        mode,
    );
    let (body, grant, _) = block_on(future)?;
    Ok((body, grant, headers, shadowed))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

const CHAT: &str = r#"{"model": "small", "messages": [{"role": "user", "content": "12345678"}]"#;

fn chat(extra: &str) -> String {
    format!("{CHAT}{extra}}}")
}

#[test]
fn the_model_allowlist_is_enforced_even_in_shadow_mode() {
    let rules = rules(Some(&["small"]), None, false);
    let limits = budget(1000, None);
    assert!(run(&rules, &limits, &chat(""), Mode::Enforce).is_ok());
    let other = chat("").replace("small", "large");
    for mode in [Mode::Enforce, Mode::Shadow] {
        assert_eq!(
            run(&rules, &limits, &other, mode).err(),
            Some(Rejection::ModelNotAllowed)
        );
    }
    let unnamed = r#"{"messages": []}"#;
    assert_eq!(
        run(&rules, &limits, unnamed, Mode::Enforce).err(),
        Some(Rejection::ModelNotAllowed)
    );
}

#[test]
fn the_cap_refuses_more_and_is_the_reservation_of_a_request_without_max_tokens() {
    let rules = rules(None, Some(100), false);
    let limits = budget(1000, None);
    assert_eq!(
        run(
            &rules,
            &limits,
            &chat(r#", "max_tokens": 101"#),
            Mode::Enforce
        )
        .err(),
        Some(Rejection::MaxTokensExceeded { cap: 100 })
    );
    let prompt = request::estimate(r#"[{"role": "user", "content": "12345678"}]"#.len());
    let (body, grant, _, _) = run(&rules, &limits, &chat(""), Mode::Enforce).unwrap();
    assert_eq!(grant.unwrap().reserved(), Some(prompt + 100));
    assert_eq!(body, chat(""), "the body changed without inject_max_tokens");
    let (_, _, headers, _) = run(&rules, &limits, &chat(""), Mode::Enforce).unwrap();
    assert!(
        !headers.contains_key(ACCEPT_ENCODING),
        "the model may compress what moat counts"
    );
    let (_, grant, _, _) = run(
        &rules,
        &limits,
        &chat(r#", "max_tokens": 10, "n": 3"#),
        Mode::Enforce,
    )
    .unwrap();
    assert_eq!(grant.unwrap().reserved(), Some(prompt + 30));
}

#[test]
fn inject_writes_the_cap_and_asks_a_stream_for_usage() {
    let rules = rules(None, Some(64), true);
    let limits = budget(1000, None);
    let (body, grant, headers, _) =
        run(&rules, &limits, &chat(r#", "stream": true"#), Mode::Enforce).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["max_tokens"], 64);
    assert_eq!(value["stream_options"]["include_usage"], true);
    assert_eq!(headers[CONTENT_LENGTH], body.len().to_string());
    assert!(grant.unwrap().hide_usage);
    // A client that asked for usage itself gets it, and its own max_tokens stays.
    let asked =
        chat(r#", "stream": true, "max_tokens": 5, "stream_options": {"include_usage": true}"#);
    let (body, grant, _, _) = run(&rules, &limits, &asked, Mode::Enforce).unwrap();
    assert_eq!(body, asked);
    assert!(!grant.unwrap().hide_usage);
}

#[test]
fn a_reservation_that_does_not_fit_is_refused_and_given_back_when_dropped() {
    let rules = rules(None, Some(400), false);
    let limits = budget(1000, None);
    let (_, first, _, _) = run(&rules, &limits, &chat(""), Mode::Enforce).unwrap();
    let (_, second, _, _) = run(&rules, &limits, &chat(""), Mode::Enforce).unwrap();
    let Err(Rejection::TokenBudgetExceeded { tokens: 1000, .. }) =
        run(&rules, &limits, &chat(""), Mode::Enforce)
    else {
        panic!("a third reservation of 400+ fit in 1000");
    };
    // Shadow mode lets it through unreserved, and says so.
    let (_, grant, _, shadowed) = run(&rules, &limits, &chat(""), Mode::Shadow).unwrap();
    assert_eq!(grant.unwrap().reserved(), None);
    assert_eq!(shadowed.len(), 1);
    drop((first, second));
    assert!(run(&rules, &limits, &chat(""), Mode::Enforce).is_ok());
}

#[test]
fn without_max_tokens_or_a_cap_a_request_reserves_what_is_left() {
    let rules = rules(None, None, false);
    let limits = budget(1000, None);
    let (_, grant, _, _) = run(&rules, &limits, &chat(""), Mode::Enforce).unwrap();
    assert_eq!(grant.as_ref().unwrap().reserved(), Some(1000));
    assert!(matches!(
        run(&rules, &limits, &chat(""), Mode::Enforce),
        Err(Rejection::TokenBudgetExceeded { .. })
    ));
}

#[test]
fn streams_past_the_key_cap_are_refused_until_one_ends() {
    let rules = rules(None, Some(10), false);
    let limits = budget(1_000_000, Some(1));
    let stream = chat(r#", "stream": true"#);
    let (_, open, _, _) = run(&rules, &limits, &stream, Mode::Enforce).unwrap();
    assert_eq!(
        run(&rules, &limits, &stream, Mode::Enforce).err(),
        Some(Rejection::TooManyStreams { limit: 1 })
    );
    assert!(
        run(&rules, &limits, &chat(""), Mode::Enforce).is_ok(),
        "not a stream"
    );
    drop(open);
    assert!(run(&rules, &limits, &stream, Mode::Enforce).is_ok());
}

#[test]
fn the_usual_paths_are_detected_and_llm_none_turns_detection_off() {
    let chat = Operation::for_tests("chat", "POST", "/v1/chat/completions");
    assert_eq!(
        Profile::resolve(None, &chat),
        Some(Profile { detected: true })
    );
    assert_eq!(Profile::resolve(Some(LlmSetting::None), &chat), None);
    let predict = Operation::for_tests("predict", "POST", "/predict");
    assert_eq!(Profile::resolve(None, &predict), None);
    assert_eq!(
        Profile::resolve(Some(LlmSetting::Openai), &predict),
        Some(Profile { detected: false })
    );
    let get = Operation::for_tests("models", "GET", "/v1/embeddings");
    assert_eq!(Profile::resolve(None, &get), None);
}
