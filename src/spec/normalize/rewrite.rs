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
    let mut constraints = vec![json!({"required": [property]})];
    let mut mapped = Vec::new();
    if let Some(Value::Object(mapping)) = discriminator.get("mapping") {
        for (value, target) in mapping {
            let Some(target) = target.as_str() else {
                continue;
            };
            let reference = if target.contains('#') || target.contains('/') {
                target.to_owned()
            } else {
                format!("#/components/schemas/{}", escape(target))
            };
            constraints.push(json!({
                "if": {"properties": {&property: {"const": value}}, "required": [&property]},
                "then": {"$ref": &reference}
            }));
            mapped.push((value.clone(), reference));
        }
    }
    let covers_one_of = match map.get("oneOf") {
        Some(Value::Array(branches)) if !mapped.is_empty() => branches.iter().all(|branch| {
            branch
                .get("$ref")
                .and_then(Value::as_str)
                .is_some_and(|r| mapped.iter().any(|(_, m)| m == r))
        }),
        _ => false,
    };
    if covers_one_of {
        map.remove("oneOf");
        let values: Vec<&String> = mapped.iter().map(|(value, _)| value).collect();
        constraints.push(json!({"properties": {&property: {"enum": values}}}));
    }
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
    let bounds = json!({"minimum": low, "maximum": high});
    match map.get_mut("allOf") {
        Some(Value::Array(all)) => all.push(bounds),
        _ => {
            map.insert("allOf".into(), Value::Array(vec![bounds]));
        }
    }
}

/// `nullable: true` (OpenAPI 3.0, and seen in 3.1 documents too) → `null` allowed. With a
/// `type`, null joins it (and the `enum`, if any); without one (`allOf: [$ref]` plus
/// `nullable`, as generated for optional fields), the schema becomes `anyOf: [it, null]`,
/// the reading every generator that writes this form intends.
pub(super) fn nullable(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    match map.remove("nullable") {
        Some(Value::Bool(true)) => {}
        _ => return,
    }
    if let Some(types) = map.get_mut("type") {
        match types {
            Value::Array(items) if !items.iter().any(|t| t == "null") => items.push(json!("null")),
            Value::Array(_) => {}
            one => *one = json!([one.clone(), "null"]),
        }
        if let Some(Value::Array(options)) = map.get_mut("enum")
            && !options.contains(&Value::Null)
        {
            options.push(Value::Null);
        }
        return;
    }
    let inner = std::mem::take(map);
    map.insert(
        "anyOf".into(),
        json!([Value::Object(inner), {"type": "null"}]),
    );
}
