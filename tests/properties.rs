//! Property tests on real schemas (the FastAPI iris server's): instances generated to be
//! valid pass moat's body validation, and each kind of mutation fails it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use moat::route::Routed;
use moat::spec::{self, Operation, Spec, source};
use proptest::prelude::*;
use serde_json::{Value, json};

fn iris() -> &'static Spec {
    static SPEC: std::sync::OnceLock<Spec> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs/fastapi-iris.json");
        spec::load(source::from_file(&path).unwrap()).unwrap()
    })
}

fn operation(method: Method, path: &str) -> &'static Operation {
    let spec = iris();
    match spec.router.route(&method, path) {
        Ok(Routed::Operation { index, .. }) => &spec.operations[index],
        other => panic!("{path}: {other:?}"),
    }
}

fn accepts(operation: &Operation, body: &Value) -> bool {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap());
    moat::validate::request_body(
        operation,
        &headers,
        &bytes,
        &moat::validate::json::JsonLimits::of(&moat::config::Limits::default()),
    )
    .is_ok()
}

fn predict_request() -> impl Strategy<Value = Value> {
    let row = prop::collection::vec(0.0f64..=100.0, 4);
    (
        prop::collection::vec(row, 1..=64),
        prop::option::of("v[0-9]{1,3}(\\.[0-9]{1,3}){0,2}"),
        prop::sample::select(vec!["label", "probabilities", "both"]),
        prop::option::of("[A-Za-z0-9_-]{1,64}"),
    )
        .prop_map(|(instances, version, output, id)| {
            let mut body = json!({"instances": instances, "output": output});
            if let Some(version) = version {
                body["model_version"] = json!(version);
            }
            if let Some(id) = id {
                body["request_id"] = json!(id);
            }
            body
        })
}

/// One way to break a valid predict request, each a rule of the schema.
#[derive(Debug, Clone)]
enum Mutation {
    ShortRow,
    LongRow,
    NegativeFeature,
    HugeFeature,
    StringFeature,
    NoInstances,
    TooManyInstances,
    ExtraProperty,
    UnknownOutput,
    BadVersion,
    BadRequestId,
}

fn mutate(mut body: Value, mutation: &Mutation) -> Value {
    let first_row = &mut body["instances"][0];
    match mutation {
        Mutation::ShortRow => {
            first_row.as_array_mut().unwrap().pop();
        }
        Mutation::LongRow => first_row.as_array_mut().unwrap().push(json!(1.0)),
        Mutation::NegativeFeature => first_row[0] = json!(-0.5),
        Mutation::HugeFeature => first_row[3] = json!(100.5),
        Mutation::StringFeature => first_row[1] = json!("3.5"),
        Mutation::NoInstances => body["instances"] = json!([]),
        Mutation::TooManyInstances => {
            body["instances"] = json!(vec![json!([1.0, 1.0, 1.0, 1.0]); 65])
        }
        Mutation::ExtraProperty => body["temperature"] = json!(1),
        Mutation::UnknownOutput => body["output"] = json!("everything"),
        Mutation::BadVersion => body["model_version"] = json!("latest"),
        Mutation::BadRequestId => body["request_id"] = json!("has space"),
    }
    body
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop::sample::select(vec![
        Mutation::ShortRow,
        Mutation::LongRow,
        Mutation::NegativeFeature,
        Mutation::HugeFeature,
        Mutation::StringFeature,
        Mutation::NoInstances,
        Mutation::TooManyInstances,
        Mutation::ExtraProperty,
        Mutation::UnknownOutput,
        Mutation::BadVersion,
        Mutation::BadRequestId,
    ])
}

fn generate_request() -> impl Strategy<Value = Value> {
    (
        "[a-z ]{1,200}",
        1u32..=256,
        0.0f64..=2.0,
        prop::option::of(prop::collection::vec("[a-z]{1,32}", 0..=4)),
    )
        .prop_map(|(prompt, max_tokens, temperature, stop)| {
            let mut body =
                json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature});
            if let Some(stop) = stop {
                body["stop"] = json!(stop);
            }
            body
        })
}

proptest! {
    #[test]
    fn valid_predict_requests_pass(body in predict_request()) {
        prop_assert!(accepts(operation(Method::POST, "/v1/models/iris:predict"), &body), "{body}");
    }

    #[test]
    fn mutated_predict_requests_fail(body in predict_request(), mutation in mutation()) {
        let broken = mutate(body, &mutation);
        prop_assert!(!accepts(operation(Method::POST, "/v1/models/iris:predict"), &broken), "{mutation:?}: {broken}");
    }

    #[test]
    fn valid_generate_requests_pass_and_out_of_range_ones_fail(body in generate_request(), excess in 1u32..1000) {
        let generate = operation(Method::POST, "/v1/generate/stream");
        prop_assert!(accepts(generate, &body), "{body}");
        let mut too_many = body.clone();
        too_many["max_tokens"] = json!(256 + excess);
        prop_assert!(!accepts(generate, &too_many));
        let mut empty = body;
        empty["prompt"] = json!("");
        prop_assert!(!accepts(generate, &empty));
    }
}
