//! Unit tests of the JSON report.

use std::sync::Arc;

use super::*;
use crate::cmd::check::findings::Severity;
use crate::cmd::check::locate::Location;
use crate::metrics::Metrics;

fn at(file: &str, line: Option<usize>) -> Location {
    Location {
        file: file.into(),
        line,
        pointer: None,
    }
}

#[test]
fn errors_carry_code_file_line_and_message_and_make_it_not_ok() {
    let error = Finding::at(
        Severity::Error,
        "unknown_field",
        at("moat.yaml", Some(4)),
        "line 4: unknown field `tiemout`\n    4 |   tiemout: 1s",
    );
    let checked = Checked {
        config: None,
        snapshot: None,
        spec: SpecSource::None,
        findings: vec![error],
    };
    let text = render(Path::new("moat.yaml"), &checked, false);
    let document: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(document["ok"], false);
    assert_eq!(
        document["errors"][0],
        json!({
            "code": "unknown_field",
            "file": "moat.yaml",
            "line": 4,
            "pointer": null,
            "message": "unknown field `tiemout`",
        })
    );
    assert_eq!(document["warnings"], json!([]));
    assert_eq!(document["summary"]["errors"], 1);
    assert_eq!(document["summary"]["operations_checked"], 0);
}

#[test]
fn a_config_that_loads_is_ok_with_its_warnings_and_summary() {
    let text = "listen: 0.0.0.0:8080\nupstream:\n  url: http://127.0.0.1:8000\n";
    let config = Config::parse(text, &|_| None).unwrap();
    let snapshot = Snapshot::from_config(config.clone(), &Arc::new(Metrics::new()), None).ok();
    let warning = Finding::at(
        Severity::Warning,
        "unset_variable",
        at("moat.yaml", None),
        "`X` is not set",
    );
    let checked = Checked {
        config: Some(config),
        snapshot,
        spec: SpecSource::None,
        findings: vec![warning],
    };
    let document: Value =
        serde_json::from_str(&render(Path::new("moat.yaml"), &checked, true)).unwrap();
    assert_eq!(document["ok"], true);
    assert_eq!(document["offline"], true);
    assert_eq!(document["warnings"][0]["code"], "unset_variable");
    assert_eq!(document["warnings"][0]["line"], Value::Null);
    let summary = &document["summary"];
    assert_eq!(summary["listen"], "0.0.0.0:8080");
    assert_eq!(summary["tls"]["enabled"], false);
    assert_eq!(
        summary["tls"]["status"],
        "off: plain HTTP (and h2c) on 0.0.0.0:8080"
    );
    assert_eq!(summary["spec"]["source"], "none");
    assert_eq!(summary["warnings"], 1);
}
