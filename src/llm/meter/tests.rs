//! Unit tests of `llm::meter`.

use super::*;

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
    )
}

const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n";

fn pass(feed: Feed) -> Bytes {
    match feed {
        Feed::Pass(bytes) => bytes,
        other => panic!("expected Pass, got {other:?}"),
    }
}

fn limit(completion: u64, bound: Bound) -> Option<Limit> {
    Some(Limit { completion, bound })
}

#[test]
fn whole_events_pass_as_the_same_bytes_and_the_usage_event_replaces_the_count() {
    let mut meter = Meter::new(true, true, 10, None, false);
    let frame = Bytes::from(chunk("hel") + &chunk("lo"));
    let passed = pass(meter.feed(frame.clone()));
    assert_eq!(passed.as_ptr(), frame.as_ptr(), "a whole frame was copied");
    assert_eq!((meter.prompt, meter.completion), (10, 2));
    pass(meter.feed(Bytes::from(USAGE)));
    assert_eq!(
        (meter.prompt, meter.completion, meter.reported),
        (3, 4, true)
    );
    pass(meter.feed(Bytes::from_static(b"data: [DONE]\n\n")));
    assert_eq!(meter.total(), 7);
}

/// As llama.cpp streams: a chunk per token, `""` for a token that does not complete a
/// character, no role or finish chunk counted, CRLF line ends, `\u` escapes.
#[test]
fn every_token_chunk_counts_even_empty_and_bytes_bound_merged_chunks() {
    let mut meter = Meter::new(true, true, 0, None, false);
    let opening = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\r\n\r\n";
    let closing =
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n";
    let cjk = [chunk(""), chunk(""), chunk("\\u6a21")].concat();
    pass(meter.feed(Bytes::from(format!("{opening}{cjk}{closing}"))));
    assert_eq!(meter.completion, 3, "three byte tokens of one character");

    // A server that merges tokens into one chunk is counted from the bytes: 12 ASCII
    // bytes are at least 3 tokens, 9 bytes of CJK at least 3.
    let mut merged = Meter::new(true, true, 0, None, false);
    pass(merged.feed(Bytes::from(chunk("abcdefghijkl"))));
    assert_eq!(merged.completion, 3);
    pass(merged.feed(Bytes::from(chunk("模型服"))));
    assert_eq!(merged.completion, 6);

    // Completions stream `text`; data moat cannot read as a chunk counts as text too.
    let mut text = Meter::new(true, true, 0, None, false);
    let piece = "data: {\"choices\":[{\"text\":\"\",\"finish_reason\":null}]}\n\n";
    pass(text.feed(Bytes::from(format!(
        "{piece}{piece}data: not json at all\n\n"
    ))));
    assert_eq!(text.completion, 4);
}

#[test]
fn an_event_split_across_frames_waits_for_its_end_and_crlf_ends_events_too() {
    let mut meter = Meter::new(true, true, 0, None, false);
    let event = chunk("a").replace("\n\n", "\r\n\r\n");
    let (head, tail) = event.split_at(20);
    assert_eq!(meter.feed(Bytes::from(head.to_owned())), Feed::Hold);
    let second = chunk("b");
    let passed = pass(meter.feed(Bytes::from(format!("{tail}{}", &second[..5]))));
    assert_eq!(passed, event.as_bytes());
    assert_eq!(
        pass(meter.feed(Bytes::from(second[5..].to_owned()))),
        second.as_bytes()
    );
    assert_eq!(meter.completion, 2);
}

fn error_of(cut: &Bytes) -> serde_json::Value {
    let text = String::from_utf8(cut.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let event = text.rsplit("\n\n").nth(2).unwrap();
    serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap()
}

#[test]
fn a_stream_is_cut_at_its_limit_saying_what_was_reached() {
    let mut meter = Meter::new(true, true, 2, limit(3, Bound::Budget), false);
    pass(meter.feed(Bytes::from(chunk("a") + &chunk("b"))));
    assert_eq!(meter.total(), 4);
    let Feed::Cut(last) = meter.feed(Bytes::from(chunk("c") + &chunk("d"))) else {
        panic!("the fourth token passed a limit of three");
    };
    assert!(last.starts_with(chunk("c").as_bytes()));
    assert_eq!(error_of(&last)["error"]["code"], "token_budget_exceeded");
    assert!(meter.cut);
    assert_eq!(meter.total(), 5, "charged what was sent");
    assert_eq!(meter.feed(Bytes::from(chunk("e"))), Feed::Hold);

    let mut capped = Meter::new(true, true, 2, limit(1, Bound::Cap), false);
    let Feed::Cut(last) = capped.feed(Bytes::from(chunk("a") + &chunk("b"))) else {
        panic!("the second token passed a cap of one");
    };
    let error = error_of(&last);
    assert_eq!(error["error"]["code"], "max_tokens_reached");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_tokens") && !message.contains("budget"));
}

#[test]
fn a_usage_event_moat_asked_for_is_not_passed_on() {
    let mut meter = Meter::new(true, true, 1, None, true);
    let frame = chunk("a") + USAGE + "data: [DONE]\n\n";
    let passed = pass(meter.feed(Bytes::from(frame)));
    assert_eq!(passed, (chunk("a") + "data: [DONE]\n\n").as_bytes());
    assert_eq!(meter.total(), 7);
}

#[test]
fn json_reads_usage_at_the_end_or_counts_bytes_and_a_refusal_costs_nothing() {
    let body = r#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#;
    let mut meter = Meter::new(false, true, 40, limit(8, Bound::Asked), false);
    let (a, b) = body.split_at(30);
    pass(meter.feed(Bytes::from(a.to_owned())));
    pass(meter.feed(Bytes::from(b.to_owned())));
    assert!(!meter.over_limit(), "decided before the end");
    meter.end();
    assert_eq!((meter.prompt, meter.completion), (5, 9));
    assert!(meter.over_limit());

    let embedding = r#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    let mut meter = Meter::new(false, true, 40, None, false);
    pass(meter.feed(Bytes::from(embedding)));
    meter.end();
    assert_eq!((meter.prompt, meter.completion), (8, 0));

    let mut meter = Meter::new(false, true, 40, None, false);
    pass(meter.feed(Bytes::from("{\"choices\":[\"模型\"]}")));
    meter.end();
    assert_eq!(
        (meter.prompt, meter.completion, meter.reported),
        (40, 4 + 2, false)
    );

    let mut meter = Meter::new(true, false, 40, limit(1, Bound::Cap), false);
    pass(meter.feed(Bytes::from(chunk("a") + &chunk("b"))));
    meter.end();
    assert_eq!(meter.total(), 0);
}

#[test]
fn nothing_after_done_is_counted_however_the_frames_were_cut() {
    let before = format!("{}data: [DONE]\n\n", chunk("hello"));
    let after = chunk("more text after the end");
    let mut one = Meter::new(true, true, 0, None, false);
    pass(one.feed(Bytes::from(format!("{before}{after}"))));
    let mut two = Meter::new(true, true, 0, None, false);
    pass(two.feed(Bytes::from(before)));
    pass(two.feed(Bytes::from(after)));
    assert_eq!(one.completion, two.completion);
    assert!(one.completion > 0);
}

#[test]
fn an_event_that_breaks_its_schema_ends_the_stream_in_enforce_and_passes_in_shadow() {
    let schema = serde_json::json!({"type": "object", "required": ["choices"],
        "properties": {"choices": {"type": "array"}}});
    let schema = std::sync::Arc::new(crate::spec::compile::standalone(&schema).unwrap());
    let bad = Bytes::from_static(b"data: {\"choices\": \"oops\"}\n\n");
    for enforce in [true, false] {
        let violations = prometheus_client::metrics::counter::Counter::default();
        let check = EventCheck {
            schema: schema.clone(),
            plan: None,
            enforce,
            limits: limits(),
            violations: violations.clone(),
        };
        let mut meter = Meter::new(true, true, 1, None, false).checking(Some(check));
        pass(meter.feed(Bytes::from(chunk("hi"))));
        pass(meter.feed(Bytes::from_static(b"data: not json\n\n")));
        let before = meter.completion;
        match meter.feed(bad.clone()) {
            Feed::Cut(last) if enforce => {
                let last = String::from_utf8_lossy(&last).into_owned();
                assert!(last.contains("upstream_response_invalid") && last.contains("/choices"));
                assert!(
                    !last.contains("oops") && last.ends_with("data: [DONE]\n\n"),
                    "{last}"
                );
            }
            Feed::Pass(passed) if !enforce => assert_eq!(passed, bad),
            other => panic!("enforce {enforce}: {other:?}"),
        }
        assert_eq!(violations.get(), 1);
        assert!(meter.invalid_event);
        assert_eq!(
            meter.completion == before,
            enforce,
            "a cut event is not charged"
        );
    }
}

fn limits() -> crate::validate::json::JsonLimits {
    crate::validate::json::JsonLimits::of(&crate::config::Limits::default())
}

/// A meter holding events to `{"required": ["choices"]}` in enforce.
fn enforcing() -> Meter {
    let schema = serde_json::json!({"type": "object", "required": ["choices"]});
    let check = EventCheck {
        schema: std::sync::Arc::new(crate::spec::compile::standalone(&schema).unwrap()),
        plan: None,
        enforce: true,
        limits: limits(),
        violations: prometheus_client::metrics::counter::Counter::default(),
    };
    Meter::new(true, true, 1, None, false).checking(Some(check))
}

#[test]
fn no_event_walks_around_its_schema_by_its_shape_or_its_place() {
    // JSON cut short, or with a duplicate key: broken, not "not JSON".
    for bad in [
        "data: {\"choices\": [\n\n",
        "data: {\"choices\": [], \"choices\": []}\n\n",
    ] {
        let mut meter = enforcing();
        assert!(
            matches!(meter.feed(Bytes::from(bad)), Feed::Cut(_)),
            "{bad}"
        );
    }
    // After `[DONE]`, in the same frame or the next.
    let mut meter = enforcing();
    let frame = Bytes::from("data: [DONE]\n\ndata: {}\n\n");
    assert!(matches!(meter.feed(frame), Feed::Cut(_)));
    let mut meter = enforcing();
    pass(meter.feed(Bytes::from_static(b"data: [DONE]\n\n")));
    assert!(matches!(
        meter.feed(Bytes::from_static(b"data: {}\n\n")),
        Feed::Cut(_)
    ));
    // The last event, without its blank line: replaced by moat's error event at the end.
    let mut meter = enforcing();
    assert_eq!(meter.feed(Bytes::from_static(b"data: {}")), Feed::Hold);
    let last = meter.end().unwrap();
    assert!(String::from_utf8_lossy(&last).contains("upstream_response_invalid"));
    assert!(meter.cut && meter.invalid_reason().is_some());
}
