//! The model's answers held to its spec (`responses:`), end to end against a real FastAPI
//! server that misbehaves (`tests/failing-model/app.py`): a status it does not declare, HTML
//! where it declares JSON, a traceback with a password in a 500's body.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use support::{Moat, PyServer, config, get};

fn moat_for(model: &PyServer, responses: &str) -> Moat {
    Moat::start(&config(
        &model.url(),
        &format!(
            "openapi:\n  url: {}/openapi.json\n  fetch_timeout: 60s\n{responses}",
            model.url()
        ),
    ))
}

#[test]
fn enforce_refuses_undeclared_answers_and_conceals_errors() {
    let Some(model) = PyServer::start("tests/failing-model") else {
        return;
    };
    let moat = moat_for(
        &model,
        "responses:\n  mode: enforce\n  strip_undeclared: true\n",
    );
    assert_eq!(get(moat.addr, "/v1/predict", &[]).status, 200);

    let teapot = get(moat.addr, "/v1/teapot", &[]);
    assert_eq!(teapot.status, 502);
    let problem = teapot.json();
    assert_eq!(problem["code"], "upstream_response_invalid", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("status 418 is not declared"),
        "{problem}"
    );
    let html = get(moat.addr, "/v1/html", &[]);
    assert_eq!(html.status, 502, "{}", String::from_utf8_lossy(&html.body));
    let predicted = get(moat.addr, "/v1/predict", &[]);
    assert_eq!(
        predicted.json()["label"],
        "setosa",
        "read whole, checked and relayed"
    );
    // More than the contract: what it does not declare is removed, the rest intact.
    let extra = get(moat.addr, "/v1/extra", &[]);
    assert_eq!(extra.status, 200);
    assert_eq!(extra.json(), serde_json::json!({"label": "setosa"}));
    // Past responses.max_body_bytes: relayed as it streams, counted as not checked.
    let big = get(moat.addr, "/v1/big", &[]);
    assert_eq!(big.status, 200);
    assert_eq!(
        big.body.len(),
        5 * 1024 * 1024 + 12,
        "the whole answer relayed"
    );
    let not_checked = r#"moat_response_not_checked_total{reason="too_large"}"#;
    assert_eq!(support::metric(&moat, not_checked), 1);
    let wrong = get(moat.addr, "/v1/wrong-type", &[]);
    assert_eq!(wrong.status, 502);
    let detail = wrong.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("/label"), "{detail}");
    assert!(!detail.contains('5'), "no value echoed: {detail}");

    the_traceback_is_concealed_and_logged(&moat);
}

/// The traceback never reaches the client; the request id finds it in moat's log.
fn the_traceback_is_concealed_and_logged(moat: &Moat) {
    let crash = get(moat.addr, "/v1/crash", &[]);
    assert_eq!(crash.status, 500);
    let body = String::from_utf8_lossy(&crash.body).into_owned();
    assert!(
        !body.contains("hunter2") && !body.contains("Traceback"),
        "{body}"
    );
    let problem = crash.json();
    assert_eq!(problem["code"], "upstream_error", "{problem}");
    let request_id = crash.header("x-request-id").unwrap().to_owned();
    assert_eq!(problem["request_id"], request_id.as_str(), "{problem}");
    let warning = || {
        let lines = moat.lines().into_iter();
        lines
            .into_iter()
            .find(|line| line.contains("its body was concealed"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while warning().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logged = warning().unwrap_or_else(|| panic!("no warning in {:?}", moat.lines()));
    assert!(
        logged.contains(&request_id) && logged.contains("hunter2"),
        "{logged}"
    );
}

#[test]
fn shadow_relays_and_counts_and_conceals_only_when_asked() {
    let Some(model) = PyServer::start("tests/failing-model") else {
        return;
    };
    let moat = moat_for(&model, "");
    let teapot = get(moat.addr, "/v1/teapot", &[]);
    assert_eq!(
        teapot.status, 418,
        "the default, shadow, changes no traffic"
    );
    let wrong = get(moat.addr, "/v1/wrong-type", &[]);
    assert_eq!(wrong.json()["label"], 5, "relayed in shadow");
    let crash = get(moat.addr, "/v1/crash", &[]);
    assert!(String::from_utf8_lossy(&crash.body).contains("hunter2"));
    let lines = moat.wait_for_access_lines(3);
    for line in &lines[..2] {
        assert_eq!(
            line["shadow_code"], "upstream_response_invalid",
            "{lines:?}"
        );
    }
    // The status page lists them beside the requests' shadowed refusals (the crash's 500
    // is undeclared too: FastAPI declares 200 and 422).
    let status = support::admin_get(moat.admin, "/status.json").json();
    let codes = status["shadow"]["by_code"].as_array().unwrap();
    let row = codes
        .iter()
        .find(|row| row["code"] == "upstream_response_invalid");
    assert_eq!(
        row.map(|row| row["count"].clone()),
        Some(3.into()),
        "{status}"
    );

    let concealing = moat_for(&model, "responses:\n  conceal_upstream_errors: true\n");
    let crash = get(concealing.addr, "/v1/crash", &[]);
    assert_eq!(crash.status, 500);
    assert!(!String::from_utf8_lossy(&crash.body).contains("hunter2"));
    assert_eq!(get(concealing.addr, "/v1/teapot", &[]).status, 418);

    // One operation enforced by its policy entry, the others left in shadow.
    let one = moat_for(
        &model,
        "policy:\n  operations:\n    wrong_type_v1_wrong_type_get:\n      responses: {mode: enforce}\n",
    );
    assert_eq!(get(one.addr, "/v1/wrong-type", &[]).status, 502);
    assert_eq!(get(one.addr, "/v1/teapot", &[]).status, 418);
    for (operation, kind) in [
        ("wrong_type_v1_wrong_type_get", "body"),
        ("teapot_v1_teapot_get", "status"),
    ] {
        let counted =
            format!(r#"moat_response_violations_total{{operation="{operation}",kind="{kind}"}}"#);
        assert_eq!(support::metric(&one, &counted), 1, "{counted}");
    }
}

const BAD_STREAM: &str =
    r#"{"model": "bad-event", "stream": true, "messages": [{"role": "user", "content": "hi"}]}"#;

/// The `data` of each event of an SSE body, in order.
fn events(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let data = text.lines().filter_map(|line| line.strip_prefix("data: "));
    data.map(str::to_owned).collect()
}

#[test]
fn a_streamed_event_the_spec_does_not_declare_ends_the_stream_in_enforce() {
    let Some(model) = PyServer::start("tests/failing-model") else {
        return;
    };
    let moat = moat_for(&model, "responses:\n  mode: enforce\n");
    let cut = support::post_json(moat.addr, "/v1/chat/completions", &[], BAD_STREAM);
    assert_eq!(cut.status, 200, "{}", String::from_utf8_lossy(&cut.body));
    let events = events(&cut.body);
    // "hello" passed one chunk per character, then moat's error instead of the bad chunk.
    let text: String = (events.iter())
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "hello", "{events:?}");
    let error: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(
        error["error"]["code"], "upstream_response_invalid",
        "{error}"
    );
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("/choices"), "{message}");
    assert!(!message.contains("oops"), "no value echoed: {message}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let line = &moat.wait_for_access_lines(1)[0];
    assert_eq!(line["stream_cut"], true, "{line}");
    assert_eq!(
        line["code"], "upstream_response_invalid",
        "refused part way: {line}"
    );
    let status = support::admin_get(moat.admin, "/status.json").json();
    assert_eq!(
        status["refusals"]["by_code"][0]["code"], "upstream_response_invalid",
        "{status}"
    );
    let violations =
        r#"moat_response_violations_total{operation="chat_v1_chat_completions_post",kind="event"}"#;
    assert_eq!(support::metric(&moat, violations), 1);

    // In shadow the same stream is relayed whole, and the event counted.
    let shadow = moat_for(&model, "");
    let relayed = support::post_json(shadow.addr, "/v1/chat/completions", &[], BAD_STREAM);
    let events = self::events(&relayed.body);
    assert!(events.iter().any(|e| e.contains("oops")), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(support::metric(&shadow, violations), 1);
    let line = &shadow.wait_for_access_lines(1)[0];
    assert_eq!(line["shadow_code"], "upstream_response_invalid", "{line}");
}

/// 48 answers of 900 KiB fetched at once; how much moat's peak RSS grew.
fn burst(moat: &Moat) -> usize {
    let length = 900 * 1024 + r#"{"label":""}"#.len();
    assert_eq!(get(moat.addr, "/v1/large", &[]).body.len(), length);
    let before = moat.peak_rss();
    let answers: Vec<_> = (0..48)
        .map(|_| {
            let addr = moat.addr;
            std::thread::spawn(move || get(addr, "/v1/large", &[]))
        })
        .collect();
    for answer in answers {
        let answer = answer.join().unwrap();
        assert_eq!((answer.status, answer.body.len()), (200, length));
    }
    moat.peak_rss().saturating_sub(before)
}

#[test]
fn many_large_answers_at_once_are_held_within_the_room_bodies_share() {
    let Some(model) = PyServer::start("tests/failing-model") else {
        return;
    };
    let limits = "limits:\n  max_body_bytes: 1048576\n  max_buffered_body_bytes: 4194304\n";
    // What relaying them costs (the upstream's and the client's connection buffers).
    let off = moat_for(&model, &format!("{limits}responses: {{mode: off}}\n"));
    let relayed = burst(&off);
    let moat = moat_for(&model, limits);
    let checked = burst(&moat);
    let no_room = r#"moat_response_not_checked_total{reason="no_room"}"#;
    let unchecked = support::metric(&moat, no_room);
    eprintln!(
        "48 answers of 900 KiB at once: peak RSS grew by {} KiB relayed unchecked, by {} KiB \
         checked ({unchecked} relayed unchecked for want of room)",
        relayed >> 10,
        checked >> 10,
    );
    assert!(
        unchecked > 0,
        "the room was full: the rest were relayed as they came"
    );
    // At most 4 MiB of answers held at once (and a copy while parsed), not 48 × 900 KiB.
    assert!(
        checked < relayed + (12 << 20),
        "checked: {checked} bytes, relayed: {relayed} bytes"
    );
}

#[test]
fn explain_holds_a_given_answer_to_the_spec_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    let spec = support::fixture("specs/fastapi-iris.json");
    let extra =
        format!("openapi:\n  file: {spec}\nresponses: {{mode: enforce, strip_undeclared: true}}\n");
    let upstream = format!("http://{}", support::closed_port());
    std::fs::write(&path, support::config(&upstream, &extra)).unwrap();
    let explain = |answer: &[&str]| {
        let mut args = vec![
            "explain",
            "--config",
            path.to_str().unwrap(),
            "POST",
            "/v1/models/iris:predict",
            "-d",
            r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
            "-H",
            "Content-Type: application/json",
        ];
        args.extend_from_slice(answer);
        let output = support::run_moat(&args, &[]);
        (output.status.code(), support::text(&output))
    };
    let answer = |body: &str| {
        let body = body.to_owned();
        move |status: &'static str| {
            explain(&["--response-status", status, "--response-body", &body])
        }
    };
    let (code, report) = answer(
        r#"{"model_name": "iris", "model_version": "v1", "predictions": [{"label": "setosa", "weights": "s3cr3t"}]}"#,
    )("200");
    assert_eq!(code, Some(0), "{report}");
    assert!(!report.contains("s3cr3t"), "no value echoed: {report}");
    assert!(
        report.contains(
            "7 response       pass  the body matches its schema; strip_undeclared removes 1"
        ),
        "{report}"
    );
    let (code, report) = answer(
        r#"{"model_name": "iris", "model_version": "v1", "predictions": [{"label": 7}]}"#,
    )("200");
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("FAIL  502 upstream_response_invalid"),
        "{report}"
    );
    assert!(report.contains("/predictions/0/label"), "{report}");
    assert!(!report.contains("s3cr3t"), "{report}");
    let (code, report) = explain(&["--response-status", "418"]);
    assert_eq!(code, Some(1));
    assert!(report.contains("status 418 is not declared"), "{report}");
    let (code, report) = explain(&["--response-status", "503"]);
    assert_eq!(code, Some(1));
    assert!(report.contains("503 upstream_error"), "{report}");
}
