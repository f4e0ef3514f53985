//! Every real model-server spec in `tests/fixtures/specs/` loads, routes as its server
//! would, and validates a request the way its schema says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

use std::path::Path;
use std::time::Instant;

use http::Method;
use moat::route::Routed;
use moat::spec::{self, Spec, source};

fn load(name: &str) -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/specs")
        .join(name);
    let docs = source::from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    spec::load(docs).unwrap_or_else(|e| panic!("{name}:\n{}", e.join("\n")))
}

fn operation_id(spec: &Spec, method: Method, path: &str) -> String {
    match spec.router.route(&method, path) {
        Ok(Routed::Operation { index, .. }) => spec.operations[index].id.to_string(),
        other => panic!("{method} {path}: {other:?}"),
    }
}

#[test]
fn every_real_spec_loads_with_all_its_operations() {
    let expected = [
        ("fastapi-iris.json", 5),
        ("tgi.json", 12),
        ("torchserve-inference.json", 8),
        ("torchserve-management.json", 12),
        ("torchserve-metrics.json", 1),
        ("kserve-openai-2.0.0.yaml", 52),
        ("kserve-v2-rest.yaml", 6),
        ("mlserver-dataplane.yaml", 15),
        ("mlserver-model-repository.yaml", 3),
        ("oai-v3.0-api-with-examples.yaml", 2),
        ("oai-v3.0-callback-example.yaml", 1),
        ("oai-v3.0-link-example.yaml", 6),
        ("oai-v3.0-petstore-expanded.yaml", 4),
        ("oai-v3.0-petstore.yaml", 3),
        ("oai-v3.0-uspto.yaml", 3),
        ("oai-v3.1-non-oauth-scopes.yaml", 1),
        ("oai-v3.1-tictactoe.yaml", 3),
        ("oai-v3.1-webhook-example.yaml", 0),
        ("oip-generate.yaml", 2),
        ("oip-rest.yaml", 6),
        ("ollama.yaml", 12),
        ("openai.yaml", 288),
    ];
    let listed =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.ends_with(".json") || name.ends_with(".yaml")
            })
            .count();
    assert_eq!(
        listed,
        expected.len(),
        "a fixture spec is not covered by this table"
    );
    for (name, operations) in expected {
        let started = Instant::now();
        let spec = load(name);
        println!(
            "{name}: {} operations, {} warnings, {:?}",
            spec.operations.len(),
            spec.warnings.len(),
            started.elapsed()
        );
        assert_eq!(spec.operations.len(), operations, "{name}");
    }
}

#[test]
fn the_oddities_of_real_specs_are_reported_as_warnings() {
    let joined = |spec: Spec| spec.warnings.join("\n");
    assert!(joined(load("mlserver-dataplane.yaml")).contains("type: bytes"));
    assert!(joined(load("oip-rest.yaml")).contains("${NAME}"));
    assert!(joined(load("torchserve-inference.json")).contains("operationId `predictions`"));
    assert!(
        joined(load("torchserve-management.json")).contains("`default` is written as a string")
    );
    assert!(joined(load("openai.yaml")).contains("`max_items` is read as `maxItems`"));
}

#[test]
fn real_specs_route_like_their_servers() {
    let torchserve = load("torchserve-inference.json");
    assert_eq!(
        operation_id(&torchserve, Method::POST, "/v1/models/resnet:predict"),
        "predictions"
    );
    assert_eq!(
        operation_id(&torchserve, Method::POST, "/predictions/resnet/2.0"),
        "version_predictions"
    );
    let kserve = load("kserve-v2-rest.yaml");
    let infer = operation_id(&kserve, Method::POST, "/v2/models/iris/versions/1/infer");
    assert!(!infer.is_empty());
    let openai = load("openai.yaml");
    assert_eq!(
        operation_id(&openai, Method::POST, "/v1/chat/completions"),
        "createChatCompletion"
    );
    assert_eq!(
        operation_id(&openai, Method::GET, "/v1/chat/completions/abc"),
        "getChatCompletion"
    );
    assert!(
        openai
            .router
            .route(&Method::POST, "/chat/completions")
            .is_err(),
        "the /v1 server prefix is required"
    );
    let iris = load("fastapi-iris.json");
    assert_eq!(
        operation_id(&iris, Method::POST, "/v1/models/iris:predict"),
        "predict_v1_models__model_name__predict_post"
    );
    assert_eq!(
        operation_id(&iris, Method::GET, "/v1/models/iris"),
        "get_model_v1_models__model_name__get"
    );
}

#[test]
fn openai_schemas_validate_chat_requests() {
    use serde_json::json;
    let openai = load("openai.yaml");
    let Ok(Routed::Operation { index, .. }) =
        openai.router.route(&Method::POST, "/v1/chat/completions")
    else {
        panic!("no route");
    };
    let media = &openai.operations[index].body.as_ref().unwrap().media[0];
    let schema = media.schema.as_ref().unwrap();
    assert!(
        schema
            .is_valid(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
    );
    assert!(
        !schema.is_valid(&json!({"model": "gpt-4o"})),
        "messages is required"
    );
    assert!(!schema.is_valid(&json!({"model": "gpt-4o", "messages": [], "temperature": 5})));
}
