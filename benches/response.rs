//! The model's answer held to its spec (`responses:`): a 2 KiB JSON predict answer of the
//! iris model (20 predictions with their class probabilities) checked as `respond` checks
//! it — by the schema's plan, while parsing (what a valid answer costs), and by the
//! general path: strictly parsed (duplicate keys, depth) and validated against the spec's
//! `PredictResponse` — then with `strip_undeclared`, once with nothing to remove and once
//! with an undeclared member in each prediction (the body re-serialised); serde_json's own
//! parse is the reference. Run: `cargo bench --bench response`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Method;
use moat::route::Routed;
use moat::spec::compile::Schema;
use moat::spec::plan::Plan;
use moat::spec::{self, Declared, source};

/// A predict answer of `rows` predictions; `extra`: each carries a member the schema does
/// not declare.
fn answer(rows: usize, extra: bool) -> Vec<u8> {
    let prediction = |i: usize| {
        let label = ["setosa", "versicolor", "virginica"][i % 3];
        let mut p = serde_json::json!({
            "label": label,
            "class_index": i % 3,
            "probabilities": {"setosa": 0.91, "versicolor": 0.06, "virginica": 0.03},
        });
        if extra {
            p["internal_feature_vector"] = serde_json::json!([0.1, 0.2]);
        }
        p
    };
    let body = serde_json::json!({
        "model_name": "iris",
        "model_version": "v1",
        "predictions": (0..rows).map(prediction).collect::<Vec<_>>(),
        "request_id": "bench-0001",
    });
    serde_json::to_vec(&body).unwrap()
}

/// The spec's 200 answer of the iris predict call: its schema, declared tree and plan.
fn predict_answer() -> (Arc<Schema>, Arc<Declared>, Arc<Plan>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs/fastapi-iris.json");
    let iris = spec::load(source::from_file(&path).expect("reads")).expect("loads");
    let Ok(Routed::Operation { index, .. }) =
        iris.router.route(&Method::POST, "/v1/models/iris:predict")
    else {
        panic!("predict is routed");
    };
    let responses = iris.operations[index].responses.as_ref().expect("declared");
    let media = &responses.media_for(200).expect("200 declared")[0];
    let schema = media.schema.clone().expect("a schema");
    let declared = media.declared.clone().expect("a declared tree");
    (schema, declared, media.plan.clone().expect("a plan"))
}

fn benches(c: &mut Criterion) {
    let (schema, declared, plan) = predict_answer();
    let depth = moat::config::Limits::default().max_json_depth;
    let body = answer(20, false);
    let widened = answer(20, true);
    println!(
        "answer: {} bytes; widened: {} bytes",
        body.len(),
        widened.len()
    );

    let check = |bytes: &[u8]| {
        let value = moat::validate::json::parse(bytes, depth).unwrap();
        let mut errors = Vec::new();
        assert!(schema.check(&value, "body", "", &mut errors));
        value
    };
    let mut group = c.benchmark_group("response 2 KiB");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("serde_json parse (reference)", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
    });
    let limits = moat::validate::json::JsonLimits::of(&moat::config::Limits::default());
    assert!(moat::validate::json::certainly_valid(&body, &plan, &limits));
    group.bench_function(
        "plan, checked while parsing (a valid answer, shadow or enforce)",
        |b| {
            b.iter(|| moat::validate::json::certainly_valid(black_box(&body), &plan, &limits));
        },
    );
    group.bench_function("strict parse + validate (where the plan is unsure)", |b| {
        b.iter(|| check(black_box(&body)));
    });
    group.bench_function("+ strip_undeclared, nothing to remove", |b| {
        b.iter(|| declared.strip(&mut check(black_box(&body))));
    });
    group.bench_function(
        "+ strip_undeclared, 20 members removed, re-serialised",
        |b| {
            b.iter(|| {
                let mut value = check(black_box(&widened));
                assert_eq!(declared.strip(&mut value), 20);
                serde_json::to_vec(&value).unwrap()
            });
        },
    );
    group.finish();
}

criterion_group!(response, benches);
criterion_main!(response);
