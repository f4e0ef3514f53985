//! The parse-time plan (`spec::plan`, `validate::json::certainly_valid`) against the general
//! validator, differentially: on generated schemas and bodies, the plan never calls a body
//! valid that strict parsing, the guard rails or the compiled schema refuse — and it does
//! call most valid bodies valid, or it would be no fast path at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

use http::Method;
use moat::route::Routed;
use moat::spec::{self, Media, source};
use moat::validate::json::{self, JsonLimits};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value, json};

/// A tiny deterministic generator, so one proptest seed picks a whole schema.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.roll(100) < percent
    }
}

/// A schema shaped after `instance`, with bounds and lists drawn so that about half the
/// instances still fit, and now and then a keyword the plan leaves to the general validator.
fn schema_for(instance: &Value, dice: &mut Dice) -> Value {
    if dice.chance(5) {
        return json!({});
    }
    let mut schema = match instance {
        Value::Null => json!({"type": "null"}),
        Value::Bool(_) => json!({"type": if dice.chance(80) { "boolean" } else { "integer" }}),
        Value::Number(n) => number_schema(n, dice),
        Value::String(s) => string_schema(s, dice),
        Value::Array(items) => {
            let mut schema = json!({"type": "array"});
            if let Some(first) = items.first() {
                schema["items"] = schema_for(first, dice);
            }
            if dice.chance(40) {
                schema["maxItems"] =
                    json!(items.len() as u64 + dice.roll(2) - 1.min(items.len() as u64));
            }
            if dice.chance(30) {
                schema["minItems"] = json!(items.len() as u64 + dice.roll(2));
            }
            schema
        }
        Value::Object(members) => object_schema(members, dice),
    };
    if dice.chance(15) {
        schema = json!({"anyOf": [schema, {"type": "null"}]});
    }
    schema
}

fn number_schema(n: &serde_json::Number, dice: &mut Dice) -> Value {
    let value = n.as_f64().unwrap();
    let integer = n.is_i64() || n.is_u64();
    let mut schema = json!({"type": if integer && dice.chance(50) { "integer" } else { "number" }});
    let offset = [-1.0, -0.5, 0.0, 0.5, 1.0][dice.roll(5) as usize];
    match dice.roll(5) {
        0 => schema["minimum"] = json!(value + offset),
        1 => schema["maximum"] = json!(value + offset),
        2 => schema["exclusiveMinimum"] = json!(value + offset),
        3 => schema["exclusiveMaximum"] = json!(value + offset),
        _ => schema["multipleOf"] = json!(0.5),
    }
    schema
}

fn string_schema(s: &str, dice: &mut Dice) -> Value {
    let length = s.chars().count() as u64;
    match dice.roll(7) {
        0 => json!({"type": "string", "maxLength": length + dice.roll(3) - 1.min(length)}),
        1 => json!({"type": "string", "minLength": length + dice.roll(2)}),
        2 => json!({"enum": [s, "other", null]}),
        3 => json!({"const": "other"}),
        // A listed value must still meet the other keywords.
        4 => json!({"enum": [s, "other"], "maxLength": length + dice.roll(2) - 1.min(length)}),
        5 => json!({"const": s, "minLength": length + dice.roll(2)}),
        _ => json!({"type": "string", "pattern": "^[a-z]*$"}),
    }
}

fn object_schema(members: &Map<String, Value>, dice: &mut Dice) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, value) in members {
        if dice.chance(80) {
            properties.insert(name.clone(), schema_for(value, dice));
            if dice.chance(50) {
                required.push(json!(name));
            }
        }
    }
    if dice.chance(15) {
        properties.insert("zz".into(), json!({"type": "integer"}));
        required.push(json!("zz"));
    }
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    match dice.roll(3) {
        0 => schema["additionalProperties"] = json!(false),
        1 => schema["additionalProperties"] = json!({"type": "number"}),
        _ => {}
    }
    schema
}

/// The one media entry of a spec whose only operation takes `schema` as its JSON body
/// (behind a `$ref` now and then).
fn media(schema: &Value, dice: &mut Dice) -> Media {
    let (body, components) = if dice.chance(30) {
        (
            json!({"$ref": "#/components/schemas/Body"}),
            json!({"Body": schema}),
        )
    } else {
        (schema.clone(), json!({}))
    };
    let document = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"post": {"operationId": "x",
            "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
            "responses": {"200": {"description": "ok"}}}}},
        "components": {"schemas": components},
    });
    let bytes = serde_json::to_vec(&document).unwrap();
    let mut spec = spec::load(source::from_bytes("file:///t.json", &bytes).unwrap()).unwrap();
    let Ok(Routed::Operation { index, .. }) = spec.router.route(&Method::POST, "/x") else {
        panic!("routed");
    };
    let mut body = spec.operations.swap_remove(index).body.unwrap();
    body.media.swap_remove(0)
}

/// The general path's verdict: strict parse, guard rails, compiled schema.
fn generally_valid(media: &Media, body: &[u8], limits: &JsonLimits) -> bool {
    let Ok(value) = json::parse(body, limits.max_depth) else {
        return false;
    };
    let mut errors = Vec::new();
    json::guard(&value, limits, &mut errors);
    errors.is_empty() && media.schema.as_ref().unwrap().is_valid(&value)
}

fn instance() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        (-4.0f64..4.0).prop_map(|f| json!((f * 4.0).round() / 4.0)),
        prop::sample::select(vec!["", "a", "ab", "été", "a\"b", "ABC", "x/y"])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "c", "é", "a/b"]).prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The body's text, sometimes with a member repeated (which strict parsing refuses).
fn text(instance: &Value, dice: &mut Dice) -> Vec<u8> {
    let text = serde_json::to_string(instance).unwrap();
    if let Value::Object(members) = instance {
        if let Some((name, value)) = members.iter().next().filter(|_| dice.chance(20)) {
            let repeated = format!("{}:{},", json!(name), value);
            return format!("{{{repeated}{}", &text[1..]).into_bytes();
        }
    }
    text.into_bytes()
}

fn limits(dice: &mut Dice) -> JsonLimits {
    if dice.chance(20) {
        JsonLimits {
            max_depth: 2,
            max_string_bytes: 2,
            max_array_items: 2,
            max_object_members: 2,
        }
    } else {
        JsonLimits::of(&moat::config::Limits::default())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_plan_never_accepts_what_the_general_path_refuses(instance in instance(), seed in 1u64..) {
        let mut dice = Dice(seed);
        let schema = schema_for(&instance, &mut dice);
        let media = media(&schema, &mut dice);
        let body = text(&instance, &mut dice);
        let limits = limits(&mut dice);
        if let Some(plan) = &media.plan {
            if json::certainly_valid(&body, plan, &limits) {
                prop_assert!(
                    generally_valid(&media, &body, &limits),
                    "plan accepted, general refused: schema {schema}, body {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
}

/// Not vacuous: over many generated cases, most bodies the general path accepts are
/// accepted by the plan when there is one (what it leaves out are its documented doubts).
#[test]
fn the_plan_accepts_most_valid_bodies() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut valid, mut certain) = (0, 0);
    for seed in 1..400u64 {
        let instance = instance().new_tree(&mut runner).unwrap().current();
        let mut dice = Dice(seed);
        let schema = schema_for(&instance, &mut dice);
        let media = media(&schema, &mut dice);
        let body = serde_json::to_vec(&instance).unwrap();
        let limits = JsonLimits::of(&moat::config::Limits::default());
        let Some(plan) = &media.plan else { continue };
        if generally_valid(&media, &body, &limits) {
            valid += 1;
            certain += usize::from(json::certainly_valid(&body, plan, &limits));
        }
    }
    eprintln!("{certain} of {valid} valid bodies were certain");
    assert!(valid > 50, "{valid} valid cases");
    assert!(
        certain * 10 >= valid * 9,
        "{certain} of {valid} valid bodies were certain"
    );
}

/// The issue's tensor: the iris model's predict schema, planned whole, checks 30,000 rows
/// on the fast path, and refuses one bad number among them with the general path's error.
#[test]
fn a_large_tensor_is_checked_on_the_fast_path_with_the_same_errors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/specs/fastapi-iris.json"
    ))
    .unwrap();
    let mut document: Value = serde_json::from_str(&text).unwrap();
    document["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"] =
        json!(100_000);
    let bytes = serde_json::to_vec(&document).unwrap();
    let spec = spec::load(source::from_bytes("file:///iris.json", &bytes).unwrap()).unwrap();
    let Ok(Routed::Operation { index, .. }) =
        spec.router.route(&Method::POST, "/v1/models/iris:predict")
    else {
        panic!("routed");
    };
    let operation = &spec.operations[index];
    let media = &operation.body.as_ref().unwrap().media[0];
    let plan = media.plan.as_ref().expect("the predict schema has a plan");
    let rows: Vec<String> = (0..30_000)
        .map(|i| format!("[{}.5, 3.5, 1.4, 0.2]", i % 9))
        .collect();
    let body = format!(
        r#"{{"instances": [{}], "model_version": "v1.2"}}"#,
        rows.join(",")
    );
    let limits = JsonLimits::of(&moat::config::Limits::default());
    assert!(json::certainly_valid(body.as_bytes(), plan, &limits));
    let bad = body.replacen("[0.5,", "[-0.5,", 1);
    assert!(!json::certainly_valid(bad.as_bytes(), plan, &limits));
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    let refusal =
        moat::validate::request_body(operation, &headers, &bytes::Bytes::from(bad), &limits)
            .unwrap_err();
    let problem = serde_json::to_value(refusal.errors()).unwrap();
    assert_eq!(problem[0]["pointer"], "/instances/0/0", "{problem}");
}
