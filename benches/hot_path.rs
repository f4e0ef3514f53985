//! The per-request hot path, function by function: stage 1 path check, route match on the
//! 288-operation OpenAI spec, strict JSON + schema validation of a ~1 KiB predict body, and
//! (once per start) loading the 3 MB OpenAI spec; and what the end of every request costs
//! the status board against the two prometheus-client histograms it replaced.
//! Run: `cargo bench --bench hot_path`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use moat::route::Routed;
use moat::spec::{self, Spec, source};

fn spec(name: &str) -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/specs")
        .join(name);
    spec::load(source::from_file(&path).expect("reads")).expect("loads")
}

fn predict_body() -> Bytes {
    let rows: Vec<String> = (0..40)
        .map(|i| format!("[{}.1, 3.5, 1.{}, 0.2]", 4 + i % 3, i % 10))
        .collect();
    Bytes::from(format!(
        r#"{{"instances": [{}], "model_version": "v2", "output": "both", "request_id": "bench-1"}}"#,
        rows.join(", ")
    ))
}

fn benches(c: &mut Criterion) {
    c.bench_function("frame: canonical path", |b| {
        b.iter(|| moat::frame::canonical_path(black_box("/v1/models/iris-classifier:predict")))
    });

    let openai = spec("openai.yaml");
    c.bench_function("route: OpenAI spec, literal path", |b| {
        b.iter(|| {
            openai
                .router
                .route(black_box(&Method::POST), black_box("/v1/chat/completions"))
        })
    });
    c.bench_function("route: OpenAI spec, parameterised path", |b| {
        b.iter(|| {
            openai.router.route(
                black_box(&Method::GET),
                black_box("/v1/threads/thread_abc/runs/run_123/steps/step_9"),
            )
        })
    });

    let iris = spec("fastapi-iris.json");
    let Ok(Routed::Operation { index, .. }) =
        iris.router.route(&Method::POST, "/v1/models/iris:predict")
    else {
        panic!("predict is routed");
    };
    let predict = &iris.operations[index];
    let body = predict_body();
    let limits = moat::validate::json::JsonLimits::of(&moat::config::Limits::default());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    assert!(moat::validate::request_body(predict, &headers, &body, &limits).is_ok());
    println!("predict body: {} bytes", body.len());
    c.bench_function(
        "validate: ~1 KiB predict body (strict JSON + schema)",
        |b| b.iter(|| moat::validate::request_body(predict, &headers, black_box(&body), &limits)),
    );
    c.bench_function("validate: strict JSON parse alone, same body", |b| {
        b.iter(|| moat::validate::json::parse(black_box(&body), 64))
    });
    c.bench_function(
        "validate: serde_json::from_slice alone, same body (reference)",
        |b| b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body))),
    );
    c.bench_function("validate: predict path parameter", |b| {
        b.iter(|| moat::validate::parameters(predict, black_box(&["iris"]), None, &headers, false))
    });

    // The end of every request: one operation's counters and latency, and the upstream's.
    let board = moat::status::Board::default();
    let operation: std::sync::Arc<str> = "predict".into();
    for other in ["list_models", "health", "get_model", "unrouted"] {
        let label: std::sync::Arc<str> = other.into();
        board.record(&outcome(&label));
    }
    c.bench_function("status: board records one forwarded request", |b| {
        b.iter(|| board.record(black_box(&outcome(&operation))));
    });
    let histograms = [(); 2].map(|()| {
        prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 18),
        )
    });
    c.bench_function("status: two prometheus-client histograms (before)", |b| {
        b.iter(|| {
            histograms[0].observe(black_box(0.0042));
            histograms[1].observe(black_box(0.0031));
        });
    });

    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("spec: openai.yaml (3 MB, 288 operations)", |b| {
        b.iter(|| spec("openai.yaml"))
    });
    group.finish();
}

fn outcome(operation: &std::sync::Arc<str>) -> moat::status::Outcome<'_> {
    moat::status::Outcome {
        operation,
        duration: std::time::Duration::from_micros(4200),
        upstream: Some(std::time::Duration::from_micros(3100)),
        refused: false,
        shadowed: false,
    }
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
