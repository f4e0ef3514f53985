//! The model's answers held to its spec (`responses:`), end to end against a real FastAPI
//! server that misbehaves (`tests/failing-model/app.py`): a status it does not declare, HTML
//! where it declares JSON, a traceback with a password in a 500's body.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

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

    let concealing = moat_for(&model, "responses:\n  conceal_upstream_errors: true\n");
    let crash = get(concealing.addr, "/v1/crash", &[]);
    assert_eq!(crash.status, 500);
    assert!(!String::from_utf8_lossy(&crash.body).contains("hunter2"));
    assert_eq!(get(concealing.addr, "/v1/teapot", &[]).status, 418);
}
