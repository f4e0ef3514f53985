//! `moat spec effective` and `moat spec loose` on real specs: the loose report is a stable,
//! reviewed snapshot, and it is an overlay moat can apply that leaves nothing open.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report

mod support;

use std::path::{Path, PathBuf};

use support::{fixture, run_moat, text};

/// A config with `spec` and `overlays`, in `dir`.
fn config(dir: &Path, spec: &str, overlays: &[PathBuf]) -> PathBuf {
    let path = dir.join("moat.yaml");
    let overlays: Vec<String> = overlays.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:8000\nopenapi:\n  file: {}\n  \
             overlays: [{}]\n",
            fixture(spec),
            overlays.join(", ")
        ),
    )
    .unwrap();
    path
}

fn moat_spec(args: &[&str], config: &Path) -> std::process::Output {
    let mut all = vec!["spec"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    run_moat(&all, &[])
}

/// `moat spec loose` as the snapshot in `tests/fixtures/loose/` records it (set
/// `MOAT_UPDATE_SNAPSHOTS=1` to rewrite them after reviewing the change).
#[test]
fn the_loose_report_of_real_specs_matches_its_reviewed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, snapshot) in [
        ("specs/tgi.json", "loose/tgi.overlay.yaml"),
        (
            "specs/mlserver-dataplane.yaml",
            "loose/mlserver-dataplane.overlay.yaml",
        ),
    ] {
        let output = moat_spec(&["loose"], &config(dir.path(), spec, &[]));
        assert!(output.status.success(), "{spec}: {}", text(&output));
        let report = String::from_utf8(output.stdout).unwrap();
        let path = fixture(snapshot);
        if std::env::var_os("MOAT_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &report).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert!(
            report == expected,
            "{spec}: the report differs from {snapshot}:\n{report}"
        );
    }
}

/// As a user types it, in a checkout of the shipped `config/`.
#[test]
fn the_shipped_iris_spec_leaves_nothing_open() {
    let dir = support::shipped_config();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["spec", "loose", "--config", "config/moat.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(output.stdout.is_empty());
    assert!(
        text(&output).contains("nothing is left open"),
        "{}",
        text(&output)
    );
}

/// Applied as it is, the report's overlay loads and closes everything it named.
#[test]
fn the_loose_report_is_an_overlay_that_closes_what_it_lists() {
    let dir = tempfile::tempdir().unwrap();
    for spec in [
        "specs/tgi.json",
        "specs/mlserver-dataplane.yaml",
        "specs/ollama.yaml",
    ] {
        let first = moat_spec(&["loose"], &config(dir.path(), spec, &[]));
        assert!(first.status.success(), "{spec}: {}", text(&first));
        let overlay = dir.path().join("loose.overlay.yaml");
        std::fs::write(&overlay, &first.stdout).unwrap();
        let tightened = config(dir.path(), spec, &[overlay]);
        let again = moat_spec(&["loose"], &tightened);
        assert!(again.status.success(), "{spec}: {}", text(&again));
        assert!(
            again.stdout.is_empty(),
            "{spec}: still open after the overlay:\n{}",
            String::from_utf8_lossy(&again.stdout)
        );
    }
}

#[test]
fn the_effective_spec_carries_the_overlay_and_the_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("cap.overlay.yaml");
    std::fs::write(
        &overlay,
        "overlay: 1.0.0\ninfo: {title: t, version: 1.0.0}\nactions:\n  \
         - target: $.components.schemas.GenerateParameters.properties.max_new_tokens\n    \
         update: {maximum: 512}\n",
    )
    .unwrap();
    let output = moat_spec(
        &["effective", "--format", "json"],
        &config(dir.path(), "specs/tgi.json", &[overlay]),
    );
    assert!(output.status.success(), "{}", text(&output));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let max_new_tokens =
        &doc["components"]["schemas"]["GenerateParameters"]["properties"]["max_new_tokens"];
    assert_eq!(max_new_tokens["maximum"], 512, "{max_new_tokens}");
    // TGI's 3.0 `nullable: true` reads as a 2020-12 type list.
    assert!(
        max_new_tokens.get("nullable").is_none(),
        "not normalised: {max_new_tokens}"
    );
    let yaml = moat_spec(&["effective"], &config(dir.path(), "specs/tgi.json", &[]));
    assert!(yaml.status.success());
    assert!(String::from_utf8_lossy(&yaml.stdout).contains("\nopenapi: "));
}
