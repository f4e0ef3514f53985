//! The board without sockets: requests recorded as the access record reports them, the
//! sampler driven by hand, and the report read as the page reads it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::{Board, Outcome, Refusal};
use crate::config::Config;
use crate::ids::{OperationLabel, RequestId};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

fn snapshot() -> Snapshot {
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model.yaml");
    let text = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{url: \"http://user:pass@127.0.0.1:9\"}}\nopenapi: {{file: {spec}}}\n"
    );
    let config = Config::parse(&text, &|_| None).unwrap_or_else(|p| panic!("{p:?}"));
    Snapshot::from_config(config, &Arc::new(Metrics::new()), None)
        .unwrap_or_else(|p| panic!("{p:?}"))
}

fn answered(board: &Board, operation: &str, millis: u64, refused: bool) {
    let operation: OperationLabel = operation.into();
    board.record(&Outcome {
        operation: &operation,
        duration: Duration::from_millis(millis),
        upstream: (!refused).then(|| Duration::from_millis(millis / 2)),
        refused,
        shadowed: false,
    });
}

fn refusal(code: &'static str, status: u16, key_id: Option<&str>) -> Refusal {
    Refusal {
        at: SystemTime::now(),
        request_id: RequestId::fresh(),
        operation: "predict".into(),
        status,
        stage: if status == 401 {
            "authenticate"
        } else {
            "authorize"
        },
        code,
        key_id: key_id.map(Into::into),
        subject: None,
        errors: Vec::new(),
    }
}

fn report(board: &Board) -> Value {
    // What the admin listener reads off a snapshot, as `/status.json` builds it.
    let serving = crate::admin::serving(&snapshot(), 3, Some(Duration::from_micros(250)));
    let report = super::report::build(board, serving);
    serde_json::to_value(report).unwrap()
}

#[test]
fn each_request_counts_once_under_its_operation_and_refusals_by_code_and_caller() {
    let board = Board::default();
    for _ in 0..3 {
        answered(&board, "predict", 4, false);
    }
    answered(&board, "predict", 1, true);
    answered(&board, "unrouted", 1, true);
    board.refused(refusal("credentials_missing", 401, None));
    board.refused(refusal("insufficient_scope", 403, Some("reader")));
    board.refused(refusal("credentials_missing", 401, None));

    let status = report(&board);
    assert_eq!(status["totals"]["requests"], 5);
    assert_eq!(status["totals"]["refused"], 2);
    let predict = &status["operations"][0];
    assert_eq!(predict["operation"], "predict", "busiest first");
    assert_eq!(predict["requests"], 4);
    assert_eq!(predict["refused"], 1);
    assert_eq!(predict["last_minute"]["requests"], 4);
    let p50 = predict["last_minute"]["p50_ms"].as_f64().unwrap();
    assert!((3.0..=4.5).contains(&p50), "{p50}");
    let codes = &status["refusals"]["by_code"];
    assert_eq!(
        codes[0]["code"], "credentials_missing",
        "most frequent first"
    );
    assert_eq!(codes[0]["count"], 2);
    assert_eq!(codes[1]["status"], 403);
    let recent = &status["refusals"]["recent"];
    assert_eq!(recent.as_array().unwrap().len(), 3);
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["key_id"] == "reader")
    );
    assert_eq!(status["upstream"]["last_minute"]["responses"], 3);
    assert_eq!(status["upstream"]["reachable"], true);
}

#[test]
fn the_page_names_the_upstream_by_host_and_port_never_its_user_info() {
    let status = report(&Board::default());
    assert_eq!(status["upstream"]["address"], "127.0.0.1:9");
    assert!(!status.to_string().contains("pass"));
}

#[test]
fn the_snapshot_shows_the_spec_the_generation_and_the_last_failed_reload() {
    let board = Board::default();
    let status = report(&board);
    let snapshot = &status["snapshot"];
    assert_eq!(snapshot["generation"], 3);
    assert_eq!(snapshot["mode"], "enforce");
    assert_eq!(snapshot["spec"]["operations"], 6);
    assert!(
        snapshot["spec"]["openapi"]
            .as_str()
            .unwrap()
            .starts_with("3.")
    );
    assert!(snapshot["last_reload"].is_null() && snapshot["tls"].is_null());

    board.reload_failed(vec!["moat.yaml: line 3: unknown key `listn`".to_owned()]);
    let status = report(&board);
    assert_eq!(status["snapshot"]["last_reload"]["result"], "failure");
    assert_eq!(
        status["snapshot"]["last_failed_reload"]["problems"][0],
        "moat.yaml: line 3: unknown key `listn`"
    );
    board.reloaded();
    let status = report(&board);
    assert_eq!(status["snapshot"]["last_reload"]["result"], "success");
    assert!(
        !status["snapshot"]["last_failed_reload"].is_null(),
        "a later success keeps the last failure on show"
    );
}

#[test]
fn the_last_minute_starts_at_the_oldest_window_and_the_chart_at_the_oldest_tick() {
    let board = Board::default();
    let start = Instant::now();
    let wall = SystemTime::now();
    // A burst before the windows move on, then one second's tick for each of 100 s with
    // one request every second from second 70.
    for _ in 0..5 {
        answered(&board, "predict", 2, false);
    }
    for second in 1..=100u64 {
        if second >= 70 {
            answered(&board, "predict", 2, false);
        }
        let at = Duration::from_secs(second);
        board.sample_at(start + at, wall + at);
        if second == 95 {
            // A sampler that woke twice in one second: the chart goes by the ticks' times.
            board.sample_at(start + at, wall + at);
        }
    }
    // And one more in the current, unsampled second: the newest bar ends now.
    answered(&board, "predict", 2, false);
    let live = super::Tick::of(&board.operations(), wall + Duration::from_secs(101));
    let history = super::lock(&board.history);
    assert_eq!(history.windows.len(), super::WINDOWS, "bounded");
    let oldest = history.windows.front().unwrap();
    assert_eq!(oldest.at, start + Duration::from_secs(40), "60–70 s back");
    let counts = &oldest.operations[&OperationLabel::from("predict")];
    assert_eq!(counts.total(), 5, "the burst is before the window");
    let timeline = super::report::timeline(&history, live).requests;
    drop(history);
    assert_eq!(timeline.len(), 60);
    let recent: Vec<u64> = timeline[57..].to_vec();
    assert_eq!(
        recent,
        [10, 10, 10],
        "one a second in each of the last 10-second bars"
    );
    assert_eq!(timeline[56], 2, "seconds 70 and 71 in the bar before");
    assert_eq!(
        timeline.iter().sum::<u64>(),
        5 + 31 + 1,
        "everything since the start"
    );
}
