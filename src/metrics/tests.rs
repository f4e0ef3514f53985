//! Unit tests of `metrics`.

use super::*;
use crate::ids::OperationLabel;

#[test]
#[allow(clippy::too_many_lines)] // every documented name, one assertion each
fn counters_and_histograms_appear_under_their_documented_names() {
    let metrics = Metrics::new();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            operation: "predict".into(),
            status: 200,
        })
        .inc();
    metrics.board.refused(crate::status::Refusal {
        at: std::time::SystemTime::now(),
        request_id: crate::ids::RequestId::fresh(),
        operation: "unrouted".into(),
        status: 400,
        stage: "frame",
        code: "invalid_path",
        key_id: None,
        subject: None,
        errors: Vec::new(),
    });
    let operation: OperationLabel = "predict".into();
    metrics.board.record(&crate::status::Outcome {
        operation: &operation,
        duration: std::time::Duration::from_millis(10),
        upstream: None,
        refused: false,
        shadowed: false,
    });
    let text = metrics.encode();
    assert!(
        text.contains(r#"moat_requests_total{operation="predict",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"moat_rejections_total{stage="frame",code="invalid_path"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("moat_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("moat_upstream_duration_seconds_count 0"),
        "{text}"
    );
    // prometheus-client's layout: cumulative buckets ending in the count.
    for line in [
        "moat_request_duration_seconds_count 1",
        r#"moat_request_duration_seconds_bucket{le="0.008"} 0"#,
        r#"moat_request_duration_seconds_bucket{le="0.016"} 1"#,
        r#"moat_request_duration_seconds_bucket{le="+Inf"} 1"#,
        r#"moat_operation_duration_seconds_count{operation="predict"} 1"#,
        r#"moat_operation_duration_seconds_bucket{le="+Inf",operation="predict"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}
