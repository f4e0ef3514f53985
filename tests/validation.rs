//! OpenAPI routing and validation end to end: the real binary, a spec file, and a
//! recording upstream that proves what was refused never arrived.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use support::{Moat, Upstream, config, fixture, get, post_json, send};

fn moat_with(upstream: &Upstream, extra: &str) -> Moat {
    Moat::start(&config(
        &upstream.url(),
        &format!("openapi:\n  file: {}\n{extra}", fixture("model.yaml")),
    ))
}

const PREDICT: &str = "/v1/models/iris:predict";
const TENANT: &str = "X-Tenant: t-42";
const VALID: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]], "model_version": null}"#;

#[test]
fn a_valid_predict_request_is_forwarded_byte_for_byte() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    let response = post_json(moat.addr, PREDICT, &[TENANT], VALID);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, PREDICT);
    assert_eq!(&seen[0].body[..], VALID.as_bytes());
    let log = moat.wait_for_access_lines(1);
    assert_eq!(log[0]["operation"], "predict");
    assert_eq!(log[0]["route"], "/v1/models/{model_name}:predict");
}

#[test]
fn a_chunked_json_body_is_read_whole_and_forwarded_with_its_length() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    let (first, rest) = VALID.split_at(10);
    let request = format!(
        "POST {PREDICT} HTTP/1.1\r\nHost: x\r\n{TENANT}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n",
        first.len(),
        rest.len()
    );
    assert_eq!(support::raw(moat.addr, request.as_bytes()).status, 200);
    let seen = upstream.requests();
    assert_eq!(&seen[0].body[..], VALID.as_bytes());
    let length = VALID.len().to_string();
    assert_eq!(seen[0].header("content-length"), Some(length.as_str()));
    assert_eq!(seen[0].header("transfer-encoding"), None);
}

#[test]
fn undeclared_paths_are_404_and_undeclared_methods_405_with_allow() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    let response = get(moat.addr, "/admin", &[]);
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["code"], "route_not_found");
    let response = get(moat.addr, PREDICT, &[]);
    assert_eq!(response.status, 405);
    assert_eq!(response.json()["code"], "method_not_allowed");
    assert_eq!(response.header("allow"), Some("POST, OPTIONS"));
    let response = send(moat.addr, "OPTIONS", "/v1/models", &[], b"");
    assert_eq!(response.status, 204);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(
        upstream.count(),
        0,
        "nothing undeclared may reach the model"
    );
    let response = send(moat.addr, "HEAD", "/health", &[], b"");
    assert_eq!(response.status, 200);
    assert_eq!(upstream.requests()[0].method, "HEAD");
}

#[test]
fn a_body_that_fails_its_schema_is_400_with_pointers_and_never_forwarded() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    let cases = [
        (r#"{"instances": []}"#, "/instances"),
        (r#"{"instances": [[1, 2, 3]]}"#, "/instances/0"),
        (r#"{"instances": [[1, 2, 3, 101]]}"#, "/instances/0/3"),
        (r#"{"instances": [[1, 2, 3, "4"]]}"#, "/instances/0/3"),
        (r#"{"instances": [[1, 2, 3, 4]], "extra": 1}"#, "/extra"),
        (
            r#"{"instances": [[1, 2, 3, 4]], "model_version": "latest"}"#,
            "/model_version",
        ),
        (
            r#"{"instances": [[1, 2, 3, 4]], "request_id": "not-a-uuid"}"#,
            "/request_id",
        ),
        (r#"{"model_version": "v1"}"#, ""),
        (r#"[1, 2]"#, ""),
    ];
    for (body, pointer) in cases {
        let response = post_json(moat.addr, PREDICT, &[TENANT], body);
        assert_eq!(response.status, 400, "{body}");
        let problem = response.json();
        assert_eq!(problem["code"], "body_schema", "{body}: {problem}");
        let errors = problem["errors"].as_array().expect("errors");
        assert!(
            errors
                .iter()
                .any(|e| e["pointer"] == pointer && e["location"] == "body"),
            "{body}: no error at {pointer:?}: {problem}"
        );
    }
    assert_eq!(upstream.count(), 0);
}

#[test]
fn json_the_model_could_read_differently_is_400() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "limits:\n  max_json_depth: 8\n");
    let cases: &[&str] = &[
        r#"{"instances": [[1, 2, 3, 4]], "instances": [[5, 6, 7, 8]]}"#,
        r#"{"instances": [[1, 2, 3, NaN]]}"#,
        r#"{"instances": [[1, 2, 3, Infinity]]}"#,
        r#"{"instances": [[1, 2, 3, 4]]} {}"#,
        "\u{feff}{\"instances\": [[1, 2, 3, 4]]}",
        r#"{"instances": [[1, 2, 3, 1e999]]}"#,
        r#"{"instances": [[1, 2, 3, 99999999999999999999999]]}"#,
        r#"{"request_id": "\ud800", "instances": [[1, 2, 3, 4]]}"#,
        r#"{"a": [[[[[[[[[[1]]]]]]]]]]}"#,
        r#"{"instances": "#,
    ];
    for body in cases {
        let response = post_json(moat.addr, PREDICT, &[TENANT], body);
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(response.json()["code"], "invalid_json", "{body}");
    }
    let invalid_utf8 = send(
        moat.addr,
        "POST",
        PREDICT,
        &["Content-Type: application/json", TENANT],
        b"{\"instances\": [[1, 2, 3, 4]], \"request_id\": \"\xff\"}",
    );
    assert_eq!(invalid_utf8.status, 400);
    assert_eq!(upstream.count(), 0);
}

#[test]
fn content_type_and_presence_of_the_body_are_enforced() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    let response = send(
        moat.addr,
        "POST",
        PREDICT,
        &["Content-Type: text/plain", TENANT],
        VALID.as_bytes(),
    );
    assert_eq!(response.status, 415);
    assert_eq!(response.json()["code"], "unsupported_media_type");
    let response = send(moat.addr, "POST", PREDICT, &[TENANT], VALID.as_bytes());
    assert_eq!(response.status, 415, "a body without Content-Type");
    let response = send(
        moat.addr,
        "POST",
        PREDICT,
        &["Content-Type: application/json; charset=latin1", TENANT],
        VALID.as_bytes(),
    );
    assert_eq!(response.status, 415);
    let response = send(
        moat.addr,
        "POST",
        PREDICT,
        &["Content-Type: application/json", TENANT],
        b"",
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["code"], "body_required");
    let response = send(
        moat.addr,
        "GET",
        "/health",
        &["Content-Type: application/json"],
        b"{}",
    );
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["code"], "unexpected_body");
    assert_eq!(upstream.count(), 0);
    let ok = send(
        moat.addr,
        "POST",
        PREDICT,
        &["Content-Type: Application/JSON; charset=UTF-8", TENANT],
        VALID.as_bytes(),
    );
    assert_eq!(ok.status, 200);
    let image = send(
        moat.addr,
        "PUT",
        "/upload",
        &["Content-Type: image/png"],
        b"\x89PNG",
    );
    assert_eq!(image.status, 200);
    let other = send(
        moat.addr,
        "PUT",
        "/upload",
        &["Content-Type: text/csv"],
        b"a,b",
    );
    assert_eq!(other.status, 415);
}

#[test]
fn parameters_are_parsed_by_style_coerced_and_validated() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    for ok in [
        "/v1/models?limit=5",
        "/v1/models?tags=a&tags=b&verbose=true",
        "/v1/models?filter[framework]=sklearn&filter[min_version]=2",
        "/v1/models?unknown=1",
    ] {
        assert_eq!(get(moat.addr, ok, &[]).status, 200, "{ok}");
    }
    let cases = [
        ("/v1/models?limit=abc", "query", "/limit"),
        ("/v1/models?limit=0", "query", "/limit"),
        ("/v1/models?limit=5&limit=6", "query", "/limit"),
        ("/v1/models?tags=toolongtag", "query", "/tags/0"),
        ("/v1/models?verbose=yes", "query", "/verbose"),
        (
            "/v1/models?filter[framework]=tf",
            "query",
            "/filter/framework",
        ),
        ("/v1/models/Iris", "path", "/model_name"),
    ];
    for (target, location, pointer) in cases {
        let response = get(moat.addr, target, &[]);
        assert_eq!(response.status, 400, "{target}");
        let problem = response.json();
        assert_eq!(problem["code"], "invalid_parameters", "{target}");
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["location"] == location && e["pointer"] == pointer),
            "{target}: {problem}"
        );
    }
    let missing_header = post_json(moat.addr, PREDICT, &[], VALID);
    assert_eq!(missing_header.status, 400);
    assert_eq!(missing_header.json()["errors"][0]["location"], "header");
    let bad_header = post_json(moat.addr, PREDICT, &["X-Tenant: t-x"], VALID);
    assert_eq!(bad_header.status, 400);
    assert_eq!(upstream.count(), 4);
}

#[test]
fn parameter_and_body_failures_come_back_together_and_reach_the_access_log_without_values() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    let secret = "sk-never-echo-7f3a";
    let body = format!(r#"{{"instances": [[1, 2, 3, "{secret}"]], "extra": true}}"#);
    let response = post_json(moat.addr, PREDICT, &[], &body);
    assert_eq!(response.status, 400);
    let problem = response.json();
    assert_eq!(problem["code"], "invalid_parameters");
    let places: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["location"].as_str().unwrap().into(),
                e["pointer"].as_str().unwrap().into(),
            )
        })
        .collect();
    for place in [
        ("header", "/X-Tenant"),
        ("body", "/instances/0/3"),
        ("body", "/extra"),
    ] {
        assert!(
            places.contains(&(place.0.into(), place.1.into())),
            "{place:?} in {problem}"
        );
    }
    // The one sentence clients print names the first failure; `message` repeats it.
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("request parameters are invalid: /X-Tenant: "),
        "{detail}"
    );
    assert_eq!(problem["message"], problem["detail"]);
    assert!(
        problem.get("error").is_none(),
        "OpenAI's shape only on LLM operations"
    );
    // The access line carries the same pointers and messages, never a value sent.
    let line = moat.wait_for_access_lines(1).pop().unwrap();
    assert_eq!(line["code"], "invalid_parameters");
    assert_eq!(line["errors"], problem["errors"]);
    assert!(!String::from_utf8_lossy(&response.body).contains(secret));
    assert!(!line.to_string().contains(secret));
    assert_eq!(upstream.count(), 0);
}

#[test]
fn unknown_query_parameters_are_refused_when_configured() {
    let upstream = Upstream::start();
    let moat = Moat::start(&config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\n  reject_unknown_query: true\n",
            fixture("model.yaml")
        ),
    ));
    let response = get(moat.addr, "/v1/models?limit=5&debug=1", &[]);
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["errors"][0]["pointer"], "/debug");
    assert_eq!(get(moat.addr, "/v1/models?limit=5", &[]).status, 200);
}

#[test]
fn form_bodies_are_validated_against_their_schema() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "");
    let form = "Content-Type: application/x-www-form-urlencoded";
    assert_eq!(
        send(moat.addr, "POST", "/form", &[form], b"count=3&name=a+b").status,
        200
    );
    // `exclusiveMinimum: true` with `minimum: 0` (OpenAPI 3.0) excludes 0.
    let zero = send(moat.addr, "POST", "/form", &[form], b"count=0");
    assert_eq!(zero.status, 400);
    assert_eq!(zero.json()["errors"][0]["pointer"], "/count");
    assert_eq!(
        send(moat.addr, "POST", "/form", &[form], b"name=x").status,
        400
    );
    assert_eq!(upstream.count(), 1);
}

#[test]
fn shadow_mode_logs_and_counts_failures_but_forwards() {
    let upstream = Upstream::start();
    let moat = moat_with(&upstream, "policy:\n  mode: shadow\n");
    let response = post_json(moat.addr, PREDICT, &[TENANT], r#"{"instances": []}"#);
    assert_eq!(response.status, 200);
    assert_eq!(upstream.count(), 1);
    // Routing is never shadowed: nothing undeclared is forwarded.
    assert_eq!(get(moat.addr, "/admin", &[]).status, 404);
    let log = moat.wait_for_access_lines(2);
    assert!(
        log.iter().any(|l| l["shadow_code"] == "body_schema"),
        "{log:?}"
    );
    let metrics = String::from_utf8_lossy(&get(moat.admin, "/metrics", &[]).body).into_owned();
    assert!(
        metrics.contains(r#"moat_shadow_rejections_total{stage="validate",code="body_schema"} 1"#),
        "{metrics}"
    );
}

#[test]
fn the_servers_path_prefix_is_part_of_every_route() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("prefixed.json");
    std::fs::write(
        &spec,
        r#"{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "servers": [{"url": "https://api.example.com/{base}", "variables": {"base": {"default": "v1"}}}],
            "paths": {"/chat/completions": {"post": {"operationId": "chat", "responses": {}}}}}"#,
    )
    .unwrap();
    let moat = Moat::start(&config(
        &upstream.url(),
        &format!("openapi:\n  file: {}\n", spec.display()),
    ));
    assert_eq!(
        send(moat.addr, "POST", "/v1/chat/completions", &[], b"").status,
        200
    );
    assert_eq!(
        send(moat.addr, "POST", "/chat/completions", &[], b"").status,
        404
    );
    assert_eq!(upstream.requests()[0].target, "/v1/chat/completions");
}

#[test]
fn a_spec_with_an_unenforceable_keyword_fails_the_start_naming_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /p:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: {type: string, pattern: '^(?!admin)'}\n      responses: {}\n",
    )
    .unwrap();
    let config_path = dir.path().join("moat.yaml");
    std::fs::write(
        &config_path,
        config(
            "http://127.0.0.1:1",
            &format!("openapi:\n  file: {}\n", spec.display()),
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["check", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/paths/~1p/post/requestBody/content/application~1json/schema"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot be enforced"), "{stderr}");
}
