//! Unit tests of `llm`: admission of LLM requests against key rules and budgets.

use super::*;
use bytes::Bytes;
use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, HeaderValue};

use crate::auth::Principal;
use crate::config::{LimitStore, Mode, Period, PolicyConfig, TokenBudget};
use crate::limit::KeyLimits;
use crate::limit::RateLimits;
use crate::reject::Rejection;

fn principal(key: &str) -> Principal {
    Principal {
        subject: None,
        key_id: Some(key.into()),
        scopes: Default::default(),
    }
}

fn rules(models: Option<&[&str]>, max_tokens: Option<u64>, stream_usage: bool) -> Rules {
    let rules = KeyRules {
        models: models.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
        max_tokens,
    };
    let policy = PolicyConfig {
        stream_usage,
        ..PolicyConfig::default()
    };
    Rules::new(vec![("k".to_owned(), rules)], &policy).unwrap()
}

/// Budget-less limits: a key whose only rule is its record's LLM rules.
fn no_budget() -> RateLimits {
    RateLimits::new(&LimitStore::Memory, None, &[], None, None).unwrap()
}

fn sent(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
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
    let future = check_request(
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
fn the_cap_refuses_more_and_is_written_into_a_request_without_max_tokens() {
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
    let (body, grant, headers, _) = run(&rules, &limits, &chat(""), Mode::Enforce).unwrap();
    assert_eq!(grant.unwrap().reserved(), Some(prompt + 100));
    let value = sent(&body);
    assert_eq!(
        (&value["max_tokens"], &value["max_completion_tokens"]),
        (&100.into(), &100.into())
    );
    assert_eq!(headers[CONTENT_LENGTH], body.len().to_string());
    assert!(
        !headers.contains_key(ACCEPT_ENCODING),
        "the model may compress what moat counts"
    );
    let (body, grant, _, _) = run(
        &rules,
        &limits,
        &chat(r#", "max_tokens": 10, "n": 3"#),
        Mode::Enforce,
    )
    .unwrap();
    let grant = grant.unwrap();
    assert_eq!(grant.reserved(), Some(prompt + 30));
    assert_eq!(grant.admitted(), 30, "10 for each of 3 choices");
    assert_eq!(sent(&body)["max_completion_tokens"], 10);
}

#[test]
fn a_cap_without_a_budget_is_written_and_limits_the_answer_too() {
    let rules = rules(None, Some(16), false);
    let (body, grant, _, _) = run(&rules, &no_budget(), &chat(""), Mode::Enforce).unwrap();
    assert_eq!(sent(&body)["max_tokens"], 16);
    let grant = grant.unwrap();
    assert_eq!((grant.reserved(), grant.admitted()), (None, 16));
    // `max_completion_tokens` alone is written into `max_tokens` too; a smaller own
    // bound is never raised.
    let (body, _, _, _) = run(
        &rules,
        &no_budget(),
        &chat(r#", "max_completion_tokens": 8"#),
        Mode::Enforce,
    )
    .unwrap();
    assert_eq!(
        (
            sent(&body)["max_tokens"].clone(),
            sent(&body)["max_completion_tokens"].clone()
        ),
        (8.into(), 8.into())
    );
    // A key without rules or budget: the client's bytes, unbounded.
    let free = rules_for_nobody();
    let (body, grant, _, _) = run(&free, &no_budget(), &chat(""), Mode::Enforce).unwrap();
    assert_eq!(body, chat(""));
    assert_eq!(grant.unwrap().admitted(), 0);
}

fn rules_for_nobody() -> Rules {
    Rules::new(Vec::new(), &PolicyConfig::default()).unwrap()
}

#[test]
fn zero_is_not_unlimited_it_is_refused() {
    let rules = rules(None, Some(16), false);
    for zero in [
        r#", "max_tokens": 0"#,
        r#", "max_completion_tokens": 0"#,
        r#", "n_predict": -1"#,
    ] {
        assert!(
            matches!(
                run(&rules, &no_budget(), &chat(zero), Mode::Enforce),
                Err(Rejection::InvalidLlmRequest(_))
            ),
            "{zero}"
        );
    }
}

#[test]
fn stream_usage_asks_a_stream_for_usage_and_null_fields_are_replaced_not_repeated() {
    let rules = rules(None, Some(64), true);
    let limits = budget(1000, None);
    let (body, grant, headers, _) = run(
        &rules,
        &limits,
        &chat(r#", "stream": true, "max_tokens": null, "stream_options": null"#),
        Mode::Enforce,
    )
    .unwrap();
    assert!(
        crate::validate::json::parse(&body, 64).is_ok(),
        "a member sent twice"
    );
    let value = sent(&body);
    assert_eq!(value["max_tokens"], 64);
    assert_eq!(value["stream_options"]["include_usage"], true);
    assert_eq!(headers[CONTENT_LENGTH], body.len().to_string());
    assert!(grant.unwrap().hide_usage);
    // A client that asked for usage itself gets it.
    let asked =
        chat(r#", "stream": true, "max_tokens": 5, "stream_options": {"include_usage": true}"#);
    let (body, grant, _, _) = run(&rules, &limits, &asked, Mode::Enforce).unwrap();
    assert_eq!(sent(&body)["max_tokens"], 5);
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
    // Shadow mode lets it through unreserved, as the client sent it, and says so.
    let (body, grant, _, shadowed) = run(&rules, &limits, &chat(""), Mode::Shadow).unwrap();
    assert_eq!(grant.unwrap().reserved(), None);
    assert_eq!(shadowed.len(), 1);
    assert_eq!(body, chat(""));
    drop((first, second));
    assert!(run(&rules, &limits, &chat(""), Mode::Enforce).is_ok());
}

#[test]
fn without_max_tokens_or_a_cap_a_request_reserves_what_is_left_and_that_is_its_bound() {
    let rules = rules(None, None, false);
    let limits = budget(1000, None);
    let (body, grant, _, _) = run(&rules, &limits, &chat(""), Mode::Enforce).unwrap();
    assert_eq!(grant.as_ref().unwrap().reserved(), Some(1000));
    let prompt = request::estimate(r#"[{"role": "user", "content": "12345678"}]"#.len());
    assert_eq!(sent(&body)["max_tokens"], 1000 - prompt);
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
fn an_event_stream_is_known_whatever_the_case_of_its_content_type() {
    let grant = Grant {
        reservation: None,
        limit: None,
        generates: true,
        slot: None,
        prompt_estimate: 0,
        hide_usage: false,
        key: "k".into(),
    };
    for content_type in ["text/event-stream", "Text/Event-Stream; charset=utf-8"] {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(content_type));
        let meter = grant.meter(http::StatusCode::OK, &headers);
        assert!(meter.reads_events(), "{content_type}");
    }
}
