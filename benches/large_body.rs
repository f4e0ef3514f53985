//! Large request bodies, stage by stage: a 0.85 MiB predict body (30,000 rows of 4 floats,
//! the issue's tensor) validated as `serve` does (the plan, checked while parsing), the
//! general path it replaces, and their parts — strict parse alone, serde_json's own `Value`
//! parse (the reference), the guard rails and the schema on an already-parsed tree.
//! Run: `cargo bench --bench large_body`; for a profile, `cargo bench --profile profiling
//! --bench large_body --no-run` and `perf record -g` the binary it names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // bench code: a panic is the failure report; one table of cases

use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use moat::route::Routed;
use moat::spec::{self, source};

/// `rows` rows of four floats, as a batch prediction sends them.
pub fn tensor_body(rows: usize) -> Bytes {
    let mut body = String::from(r#"{"instances": ["#);
    for i in 0..rows {
        if i > 0 {
            body.push_str(", ");
        }
        let f = i % 97;
        body.push_str(&format!(
            "[{}.{f}, 3.{}5, 1.{}, 0.{}2]",
            4 + i % 3,
            f % 10,
            i % 10,
            i % 7
        ));
    }
    body.push_str("]}");
    Bytes::from(body)
}

fn benches(c: &mut Criterion) {
    // The iris model's spec with its batch limit (64 rows) raised to what a batch job sends.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs/fastapi-iris.json");
    let text = std::fs::read_to_string(path).expect("reads");
    let mut document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    document["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"] =
        serde_json::json!(100_000);
    let bytes = serde_json::to_vec(&document).expect("serialises");
    let iris =
        spec::load(source::from_bytes("file:///iris.json", &bytes).expect("reads")).expect("loads");
    let Ok(Routed::Operation { index, .. }) =
        iris.router.route(&Method::POST, "/v1/models/iris:predict")
    else {
        panic!("predict is routed");
    };
    let predict = &iris.operations[index];
    let limits = moat::validate::json::JsonLimits::of(&moat::config::Limits::default());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let body = tensor_body(30_000);
    assert!(moat::validate::request_body(predict, &headers, &body, &limits).is_ok());
    println!("tensor body: {} bytes", body.len());

    let mut group = c.benchmark_group("large body");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(30);
    group.bench_function("validate: strict JSON + guard rails + schema", |b| {
        b.iter(|| moat::validate::request_body(predict, &headers, black_box(&body), &limits))
    });
    let media = &predict.body.as_ref().unwrap().media[0];
    let schema = media.schema.as_ref().unwrap();
    group.bench_function(
        "general path: strict parse + guard rails + schema (before)",
        |b| {
            b.iter(|| {
                let value =
                    moat::validate::json::parse(black_box(&body), limits.max_depth).unwrap();
                let mut errors = Vec::new();
                moat::validate::json::guard(&value, &limits, &mut errors);
                schema.check(&value, "body", "", &mut errors);
                errors
            })
        },
    );
    let plan = media.plan.as_ref().expect("planned");
    group.bench_function("plan alone: certainly_valid", |b| {
        b.iter(|| moat::validate::json::certainly_valid(black_box(&body), plan, &limits))
    });
    group.bench_function("strict JSON parse alone", |b| {
        b.iter(|| moat::validate::json::parse(black_box(&body), 64))
    });
    group.bench_function("serde_json::from_slice to Value (reference)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)))
    });
    group.bench_function("serde_json::from_slice to IgnoredAny (reference)", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)))
    });
    let value = moat::validate::json::parse(&body, 64).unwrap();
    group.bench_function("guard rails on the parsed tree", |b| {
        b.iter(|| {
            let mut errors = Vec::new();
            moat::validate::json::guard(black_box(&value), &limits, &mut errors);
            errors
        })
    });
    let schema = predict.body.as_ref().unwrap().media[0]
        .schema
        .as_ref()
        .unwrap();
    group.bench_function("schema on the parsed tree", |b| {
        b.iter(|| {
            let mut errors = Vec::new();
            schema.check(black_box(&value), "body", "", &mut errors);
            errors
        })
    });
    group.finish();
}

criterion_group!(large_body, benches);
criterion_main!(large_body);
