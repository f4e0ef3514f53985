//! A real FastAPI/scikit-learn model server (tests/model-server/app.py under uvicorn)
//! behind the real moat, which loads the model's own OpenAPI document from its URL.
//! Needs the virtualenv `scripts/test` creates (`.venv` with fastapi, uvicorn,
//! scikit-learn); CI sets MOAT_REQUIRE_MODEL_SERVER=1 so a missing one is a failure there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::path::PathBuf;
use std::process::Child;

use support::{Moat, config, get, post_json, send};

struct ModelServer {
    child: Child,
    url: String,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts uvicorn without waiting for it: moat must wait for the model itself.
fn model_server() -> Option<ModelServer> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = support::model_python()?;
    let (child, port) = support::uvicorn(&python, &root.join("tests/model-server"));
    Some(ModelServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

fn moat_for(model: &ModelServer) -> Moat {
    Moat::start(&config(
        &model.url,
        &format!(
            "openapi:\n  url: {}/openapi.json\n  fetch_timeout: 60s\n",
            model.url
        ),
    ))
}

const PREDICT: &str = "/v1/models/iris:predict";

#[test]
fn a_fastapi_model_is_protected_by_its_own_openapi_document() {
    let Some(model) = model_server() else { return };
    let moat = moat_for(&model);

    let ok = post_json(
        moat.addr,
        PREDICT,
        &[],
        r#"{"instances": [[5.1, 3.5, 1.4, 0.2]], "output": "both"}"#,
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let prediction = ok.json();
    assert_eq!(prediction["predictions"][0]["label"], "setosa");
    assert_eq!(get(moat.addr, "/v1/models/iris", &[]).status, 200);
    assert_eq!(get(moat.addr, "/v1/models?limit=5", &[]).status, 200);
    assert_eq!(get(moat.addr, "/health", &[]).status, 200);

    // Each refused by moat (problem+json with a code), never reaching the model's own 422.
    let refused = [
        (
            post_json(
                moat.addr,
                PREDICT,
                &[],
                r#"{"instances": [[5.1, 3.5, 1.4]]}"#,
            ),
            "body_schema",
        ),
        (
            post_json(
                moat.addr,
                PREDICT,
                &[],
                r#"{"instances": [[5.1, 3.5, 1.4, 0.2]], "model_version": "latest"}"#,
            ),
            "body_schema",
        ),
        (
            post_json(
                moat.addr,
                PREDICT,
                &[],
                r#"{"instances": [[5.1, 3.5, 1.4, 0.2]], "extra": true}"#,
            ),
            "body_schema",
        ),
        (
            post_json(
                moat.addr,
                PREDICT,
                &[],
                r#"{"instances": [[5.1, 3.5, 1.4, 0.2]], "output": "all"}"#,
            ),
            "body_schema",
        ),
        (
            post_json(
                moat.addr,
                PREDICT,
                &[],
                r#"{"instances": [[5.1, 3.5, 1.4, 0.2]], "instances": []}"#,
            ),
            "invalid_json",
        ),
        (
            post_json(
                moat.addr,
                "/v1/models/Iris:predict",
                &[],
                r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
            ),
            "invalid_parameters",
        ),
        (
            get(moat.addr, "/v1/models?limit=0", &[]),
            "invalid_parameters",
        ),
        (
            get(moat.addr, "/v1/models?limit=5&limit=6", &[]),
            "invalid_parameters",
        ),
        (
            send(
                moat.addr,
                "POST",
                PREDICT,
                &["Content-Type: text/plain"],
                b"{}",
            ),
            "unsupported_media_type",
        ),
        (get(moat.addr, "/openapi.json", &[]), "route_not_found"),
        (get(moat.addr, "/docs", &[]), "route_not_found"),
        (get(moat.addr, PREDICT, &[]), "method_not_allowed"),
    ];
    for (i, (response, code)) in refused.iter().enumerate() {
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "case {i}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.json()["code"], *code, "case {i}");
    }
}

#[test]
fn the_models_event_stream_passes_through() {
    let Some(model) = model_server() else { return };
    let moat = moat_for(&model);
    let response = post_json(
        moat.addr,
        "/v1/generate/stream",
        &[],
        r#"{"prompt": "iris", "max_tokens": 3}"#,
    );
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let text = String::from_utf8_lossy(&response.body);
    assert_eq!(text.matches("data: {").count(), 3, "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    let refused = post_json(
        moat.addr,
        "/v1/generate/stream",
        &[],
        r#"{"prompt": "", "max_tokens": 3}"#,
    );
    assert_eq!(refused.status, 400);
}

/// The model's generated spec tightened by an overlay: each request the spec accepts and
/// the overlay forbids is refused by moat, the pointer naming the overlay's constraint.
#[test]
fn an_overlay_tightens_the_models_generated_spec() {
    let Some(model) = model_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("iris.overlay.yaml");
    std::fs::write(
        &overlay,
        "overlay: 1.1.0\ninfo: {title: iris in production, version: 1.0.0}\nactions:\n  \
         - target: $.components.schemas.PredictRequest.properties.instances\n    \
           update: {maxItems: 2, items: {items: {maximum: 10}}}\n  \
         - target: $.components.schemas.PredictRequest.properties.model_version.anyOf[?@.type == 'string']\n    \
           update: {pattern: '^v1$'}\n",
    )
    .unwrap();
    let loose = moat_for(&model);
    let tight = Moat::start(&config(
        &model.url,
        &format!(
            "openapi:\n  url: {}/openapi.json\n  fetch_timeout: 60s\n  overlays: [{}]\n",
            model.url,
            overlay.display()
        ),
    ));
    let row = "[5.1, 3.5, 1.4, 0.2]";
    for (body, pointer) in [
        (
            r#"{"instances": [[50.0, 3.5, 1.4, 0.2]]}"#.to_owned(),
            "/instances/0/0",
        ),
        (
            format!(r#"{{"instances": [{row}, {row}, {row}]}}"#),
            "/instances",
        ),
        (
            format!(r#"{{"instances": [{row}], "model_version": "v2"}}"#),
            "/model_version",
        ),
    ] {
        let accepted = post_json(loose.addr, PREDICT, &[], &body);
        assert_eq!(accepted.status, 200, "the model's own spec accepts {body}");
        let refused = post_json(tight.addr, PREDICT, &[], &body);
        assert_eq!(refused.status, 400, "{body}");
        let problem = refused.json();
        assert_eq!(problem["code"], "body_schema", "{problem}");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    let fine = post_json(
        tight.addr,
        PREDICT,
        &[],
        &format!(r#"{{"instances": [{row}], "model_version": "v1"}}"#),
    );
    assert_eq!(fine.status, 200);
}
