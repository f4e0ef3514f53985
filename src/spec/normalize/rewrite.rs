//! Rewrites of one schema object that need nothing but the object: 3.0 forms into their
//! 2020-12 equivalents.

use serde_json::{Map, Value, json};

use super::escape;

/// OpenAPI 3.0 boolean `exclusiveMinimum`/`exclusiveMaximum` → 2020-12 numbers.
pub(super) fn exclusive_bounds(map: &mut Map<String, Value>) {
    for (exclusive, inclusive) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        match map.get(exclusive) {
            Some(Value::Bool(true)) => {
                map.remove(exclusive);
                if let Some(bound) = map.remove(inclusive) {
                    map.insert(exclusive.into(), bound);
                }
            }
            Some(Value::Bool(false)) => {
                map.remove(exclusive);
            }
            _ => {}
        }
    }
}

/// Draft 4 `dependencies` → `dependentRequired` / `dependentSchemas`.
pub(super) fn dependencies(map: &mut Map<String, Value>) {
    let Some(Value::Object(dependencies)) = map.remove("dependencies") else {
        return;
    };
    let mut required = Map::new();
    let mut schemas = Map::new();
    for (name, dependency) in dependencies {
        if dependency.is_array() {
            required.insert(name, dependency);
        } else {
            schemas.insert(name, dependency);
        }
    }
    if !required.is_empty() {
        map.insert("dependentRequired".into(), Value::Object(required));
    }
    if !schemas.is_empty() {
        map.insert("dependentSchemas".into(), Value::Object(schemas));
    }
}

/// OpenAPI's `discriminator` as constraints: its property is required (OAS 3.x: "MUST be
/// required"), and each explicit `mapping` entry selects its schema — a payload naming
/// `cat` must be a `Cat`, even where it would also pass as a `Dog`. Without an explicit
/// mapping, the `oneOf`/`anyOf` alone decides: implicit mapping by schema name is not what
/// real specs mean (OpenAI's filters discriminate on enum values, not schema names). When
/// the mapping covers every `oneOf` branch, the mapping replaces the `oneOf`, so branches
/// that overlap (each admitting the other's payload) still select exactly one schema.
pub(super) fn discriminator(map: &mut Map<String, Value>) {
    let Some(Value::Object(discriminator)) = map.get("discriminator") else {
        return;
    };
    let Some(property) = discriminator.get("propertyName").and_then(Value::as_str) else {
        return;
    };
    let property = property.to_owned();
    let mapped = explicit_mapping(discriminator);
    let mut constraints = vec![json!({"required": [property]})];
    for (value, reference) in &mapped {
        constraints.push(json!({
            "if": {"properties": {&property: {"const": value}}, "required": [&property]},
            "then": {"$ref": reference}
        }));
    }
    if covers_one_of(map, &mapped) {
        map.remove("oneOf");
        let values: Vec<&String> = mapped.iter().map(|(value, _)| value).collect();
        constraints.push(json!({"properties": {&property: {"enum": values}}}));
    }
    extend_all_of(map, constraints);
}

/// The explicit `mapping`: each discriminating value with the `$ref` it selects (a bare
/// name is a component schema's).
fn explicit_mapping(discriminator: &Map<String, Value>) -> Vec<(String, String)> {
    let Some(Value::Object(mapping)) = discriminator.get("mapping") else {
        return Vec::new();
    };
    let reference = |target: &str| {
        if target.contains('#') || target.contains('/') {
            target.to_owned()
        } else {
            format!("#/components/schemas/{}", escape(target))
        }
    };
    mapping
        .iter()
        .filter_map(|(value, target)| Some((value.clone(), reference(target.as_str()?))))
        .collect()
}

/// Every `oneOf` branch is a `$ref` the mapping selects.
fn covers_one_of(map: &Map<String, Value>, mapped: &[(String, String)]) -> bool {
    match map.get("oneOf") {
        Some(Value::Array(branches)) if !mapped.is_empty() => branches.iter().all(|branch| {
            branch
                .get("$ref")
                .and_then(Value::as_str)
                .is_some_and(|r| mapped.iter().any(|(_, m)| m == r))
        }),
        _ => false,
    }
}

/// Adds `constraints` to the schema's `allOf`, which keeps the document's own.
fn extend_all_of(map: &mut Map<String, Value>, constraints: Vec<Value>) {
    match map.get_mut("allOf") {
        Some(Value::Array(all)) => all.extend(constraints),
        _ => {
            map.insert("allOf".into(), Value::Array(constraints));
        }
    }
}

/// OpenAPI's integer and float formats as bounds the validator enforces on numbers (the
/// string forms are checked as formats).
pub(super) fn numeric_format_bounds(map: &mut Map<String, Value>) {
    let (low, high) = match map.get("format").and_then(Value::as_str) {
        Some("int32") => (json!(i32::MIN), json!(i32::MAX)),
        Some("int64") => (json!(i64::MIN), json!(i64::MAX)),
        Some("float") => (json!(-f64::from(f32::MAX)), json!(f64::from(f32::MAX))),
        _ => return,
    };
    let numeric = |v: &Value| v == "integer" || v == "number";
    let applies = match map.get("type") {
        Some(Value::Array(types)) => types.iter().any(numeric),
        Some(one) => numeric(one),
        None => false,
    };
    if !applies {
        return;
    }
    // An `allOf` keeps the document's own bounds and adds the format's.
    extend_all_of(map, vec![json!({"minimum": low, "maximum": high})]);
}

/// `nullable: true` (OpenAPI 3.0, and seen in 3.1 documents too) → `null` allowed. With a
/// `type`, null joins it (and the `enum`, if any); without one (`allOf: [$ref]` plus
/// `nullable`, as generated for optional fields), the schema becomes `anyOf: [it, null]`,
/// the reading every generator that writes this form intends.
pub(super) fn nullable(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if map.remove("nullable") != Some(Value::Bool(true)) {
        return;
    }
    if map.contains_key("type") {
        add_null(map);
    } else {
        let inner = std::mem::take(map);
        map.insert(
            "anyOf".into(),
            json!([Value::Object(inner), {"type": "null"}]),
        );
    }
}

/// `null` joins the schema's `type`, and its `enum` if it has one.
fn add_null(map: &mut Map<String, Value>) {
    if let Some(types) = map.get_mut("type") {
        match types {
            Value::Array(items) if !items.iter().any(|t| t == "null") => items.push(json!("null")),
            Value::Array(_) => {}
            one => *one = json!([one.clone(), "null"]),
        }
    }
    if let Some(Value::Array(options)) = map.get_mut("enum")
        && !options.contains(&Value::Null)
    {
        options.push(Value::Null);
    }
}
