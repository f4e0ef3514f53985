//! OpenAPI Overlays: a generated spec tightened without editing it, reloaded when the
//! overlay changes, and every mistake in an overlay a load error naming where it is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::path::{Path, PathBuf};

use support::{Moat, Upstream, config, eventually, fixture, metric, post_json, run_moat, text};

const PREDICT: &str = "/v1/models/iris:predict";
const ROW: &str = "[5.1, 3.5, 1.4, 0.2]";

fn rows(n: usize) -> String {
    format!(
        r#"{{"instances": [{}], "output": "label"}}"#,
        vec![ROW; n].join(", ")
    )
}

/// An overlay capping `instances` at `max` rows (the spec allows 64).
fn cap(max: usize) -> String {
    format!(
        "overlay: 1.0.0\ninfo: {{title: cap batch size, version: 1.0.0}}\nactions:\n  \
         - target: $.components.schemas.PredictRequest.properties.instances\n    \
         description: our model is validated on small batches only\n    \
         update: {{maxItems: {max}}}\n"
    )
}

/// moat on the iris spec with one overlay, `cap(2)` to begin with, and `extra` config.
fn moat_with_cap(upstream: &Upstream, dir: &Path, extra: &str) -> (Moat, PathBuf) {
    let overlay = dir.join("tighten.overlay.yaml");
    std::fs::write(&overlay, cap(2)).unwrap();
    let moat = Moat::start(&config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\n  overlays: [{}]\n{extra}",
            fixture("specs/fastapi-iris.json"),
            overlay.display()
        ),
    ));
    (moat, overlay)
}

#[test]
fn an_overlay_tightens_the_spec_and_an_edited_one_reloads() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (moat, overlay) = moat_with_cap(&upstream, dir.path(), "");
    assert_eq!(post_json(moat.addr, PREDICT, &[], &rows(2)).status, 200);
    let refused = post_json(moat.addr, PREDICT, &[], &rows(3));
    assert_eq!(refused.status, 400);
    let problem = refused.json();
    assert_eq!(problem["errors"][0]["location"], "body");
    assert_eq!(problem["errors"][0]["pointer"], "/instances");
    assert_eq!(
        upstream.count(),
        1,
        "the refused request never reached the model"
    );

    std::fs::write(&overlay, cap(3)).unwrap();
    assert!(
        eventually(|| post_json(moat.addr, PREDICT, &[], &rows(3)).status == 200),
        "the edited overlay was not reloaded"
    );

    // A broken overlay fails the reload; the last good one keeps serving.
    let failed = metric(&moat, r#"moat_config_reloads_total{result="failure"}"#);
    std::fs::write(&overlay, cap(3).replace("PredictRequest", "PredictRequst")).unwrap();
    assert!(eventually(|| {
        metric(&moat, r#"moat_config_reloads_total{result="failure"}"#) > failed
    }));
    assert_eq!(post_json(moat.addr, PREDICT, &[], &rows(3)).status, 200);
    assert_eq!(post_json(moat.addr, PREDICT, &[], &rows(4)).status, 400);
}

#[test]
fn a_target_that_selects_nothing_fails_the_load_naming_the_file_and_action() {
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("typo.overlay.yaml");
    std::fs::write(
        &overlay,
        "overlay: 1.1.0\ninfo: {title: t, version: 1.0.0}\nactions:\n  \
         - target: $.components.schemas.PredictRequest\n    update: {additionalProperties: false}\n  \
         - target: $.components.schemas.PredictRequst.properties.instances\n    update: {maxItems: 8}\n",
    )
    .unwrap();
    let config_path = dir.path().join("moat.yaml");
    std::fs::write(
        &config_path,
        format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:8000\nopenapi:\n  file: {}\n  \
             overlays: [{}]\n",
            fixture("specs/fastapi-iris.json"),
            overlay.display()
        ),
    )
    .unwrap();
    let output = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    assert!(!output.status.success());
    let said = text(&output);
    assert!(said.contains(&overlay.display().to_string()), "{said}");
    assert!(
        said.contains("actions[1] (target `$.components.schemas.PredictRequst.properties.instances`): selects nothing"),
        "{said}"
    );
}

/// The overlays docs/requests.md shows, on the specs it names: each loads (every target selects
/// something, or the load would fail).
#[test]
fn the_readme_overlays_load_on_the_specs_they_are_written_for() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/requests.md")).unwrap();
    let overlays: Vec<String> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(|block| {
            let indent = block.len() - block.trim_start().len();
            block
                .lines()
                .map(|l| l.get(indent.min(l.len())..).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|block| block.starts_with("overlay:"))
        .collect();
    assert_eq!(
        overlays.len(),
        2,
        "the overlay examples in docs/requests.md"
    );
    let dir = tempfile::tempdir().unwrap();
    // KServe's spec declares `ApiKeyAuth` on its operations: bound here to a JWT verifier.
    let kserve_auth = "auth:\n  schemes:\n    ApiKeyAuth: {type: jwt, issuer: \"https://login.example.com/\", \
                       audience: model-api, algorithms: [HS256], secret: 0123456789abcdef0123456789abcdef}\n";
    let specs = [
        ("specs/fastapi-iris.json", ""),
        ("specs/kserve-openai-2.0.0.yaml", kserve_auth),
    ];
    for (overlay, (spec, auth)) in overlays.iter().zip(specs) {
        let overlay_path = dir.path().join("example.overlay.yaml");
        std::fs::write(&overlay_path, overlay).unwrap();
        let config_path = dir.path().join("moat.yaml");
        std::fs::write(
            &config_path,
            format!(
                "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:8000\nopenapi:\n  file: {}\n  \
                 overlays: [{}]\n{auth}",
                fixture(spec),
                overlay_path.display()
            ),
        )
        .unwrap();
        let output = run_moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
        assert!(output.status.success(), "{spec}: {}", text(&output));
        assert!(
            text(&output).contains(", 1 overlay applied)"),
            "{}",
            text(&output)
        );
    }
}

/// A tightening is judged before it is enforced: in shadow mode what the overlay would
/// refuse is forwarded, logged with its code and counted.
#[test]
fn an_overlay_in_shadow_mode_counts_what_it_would_refuse() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (moat, _) = moat_with_cap(
        &upstream,
        dir.path(),
        "policy:\n  operations:\n    \
         predict_v1_models__model_name__predict_post: {security: [], mode: shadow}\n",
    );
    assert_eq!(post_json(moat.addr, PREDICT, &[], &rows(3)).status, 200);
    assert_eq!(upstream.count(), 1);
    let log = moat.wait_for_access_lines(1);
    assert_eq!(log[0]["shadow_code"], "body_schema", "{:?}", log[0]);
    assert_eq!(
        metric(
            &moat,
            r#"moat_shadow_rejections_total{stage="validate",code="body_schema"}"#
        ),
        1
    );
}

/// What no spec bounds, the guard rails do: here a JSON body the spec gives no schema.
#[test]
fn guard_rails_refuse_an_oversized_string_in_a_schemaless_body() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("openapi.json");
    std::fs::write(
        &spec,
        r#"{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/notes": {"post": {
            "operationId": "note", "security": [],
            "requestBody": {"content": {"application/json": {}}},
            "responses": {"200": {"description": "ok"}}}}}}"#,
    )
    .unwrap();
    let moat = Moat::start(&config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nlimits:\n  max_string_bytes: 16\n  max_array_items: 3\n",
            spec.display()
        ),
    ));
    let fits = post_json(
        moat.addr,
        "/notes",
        &[],
        r#"{"note": "sixteen bytes ok", "tags": [1, 2, 3]}"#,
    );
    assert_eq!(fits.status, 200);
    let long = post_json(
        moat.addr,
        "/notes",
        &[],
        r#"{"note": "seventeen bytes !!"}"#,
    );
    assert_eq!(long.status, 400);
    let problem = long.json();
    assert_eq!(problem["code"], "body_schema");
    assert_eq!(problem["errors"][0]["pointer"], "/note");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_string_bytes"),
        "{problem}"
    );
    let many = post_json(moat.addr, "/notes", &[], r#"{"tags": [1, 2, 3, 4]}"#);
    assert_eq!(
        (many.status, many.json()["errors"][0]["pointer"].as_str()),
        (400, Some("/tags"))
    );
    assert_eq!(upstream.count(), 1);

    // In shadow mode the guard rails count and forward, as schema checks do.
    let shadow = Moat::start(&config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nlimits:\n  max_string_bytes: 16\npolicy:\n  mode: shadow\n",
            spec.display()
        ),
    ));
    let long = post_json(
        shadow.addr,
        "/notes",
        &[],
        r#"{"note": "seventeen bytes !!"}"#,
    );
    assert_eq!(long.status, 200);
    assert_eq!(upstream.count(), 2);
    assert_eq!(
        shadow.wait_for_access_lines(1)[0]["shadow_code"],
        "body_schema"
    );
}
