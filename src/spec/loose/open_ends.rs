//! What one schema object leaves open, by the types it admits, each with the keywords
//! that would close it.

use serde_json::{Map, Value, json};

/// Formats whose values have a bounded length or range (the others, `byte` or `binary`,
/// say nothing about size).
const BOUNDED_FORMATS: &[&str] = &[
    "date",
    "date-time",
    "time",
    "uuid",
    "ipv4",
    "ipv6",
    "int32",
    "int64",
    "float",
    "double",
];

/// Something left open, and the update that closes it.
type Opening = (&'static str, Value);

/// The schema object being judged.
struct Schema<'a> {
    map: &'a Map<String, Value>,
    /// Its `type`, as a list.
    types: Vec<&'a str>,
    in_all_of: bool,
}

impl Schema<'_> {
    fn has(&self, keyword: &str) -> bool {
        self.map.contains_key(keyword)
    }

    /// `keyword: false`.
    fn closed(&self, keyword: &str) -> bool {
        self.map.get(keyword) == Some(&Value::Bool(false))
    }

    fn admits(&self, name: &str) -> bool {
        self.types.contains(&name)
    }
}

/// What one schema object leaves open, each with the keywords that would close it.
pub(super) fn open_ends(map: &Map<String, Value>, in_all_of: bool) -> Vec<Opening> {
    let schema = Schema {
        map,
        types: declared_types(map),
        in_all_of,
    };
    if schema.has("enum") || schema.has("const") {
        return Vec::new();
    }
    let mut open: Vec<Opening> = open_composition(&schema).into_iter().collect();
    if schema.types.is_empty() {
        open.extend(untyped(&schema));
        return open;
    }
    let by_type = [open_string, open_number, open_array, open_object];
    open.extend(by_type.iter().filter_map(|check| check(&schema)));
    open
}

fn declared_types(map: &Map<String, Value>) -> Vec<&str> {
    match map.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `unevaluatedProperties` sees the properties every branch declares; it constrains only
/// objects, so it is safe whatever the branches are.
fn open_composition(schema: &Schema<'_>) -> Option<Opening> {
    (schema.has("allOf") && !schema.in_all_of && !schema.closed("unevaluatedProperties")).then(
        || {
            (
                "an allOf composition open to any other property",
                json!({"unevaluatedProperties": false}),
            )
        },
    )
}

/// No `type`, and no composition or reference that would say what it is.
fn untyped(schema: &Schema<'_>) -> Option<Opening> {
    let composed = ["$ref", "allOf", "anyOf", "oneOf", "not", "if"]
        .iter()
        .any(|keyword| schema.has(keyword));
    (!composed).then(|| {
        (
            "no `type`: accepts any JSON value",
            json!({"type": "string", "maxLength": 256}),
        )
    })
}

fn open_string(schema: &Schema<'_>) -> Option<Opening> {
    let format_bounds = schema
        .map
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| BOUNDED_FORMATS.contains(&format));
    let bounded = schema.has("maxLength") || schema.has("pattern") || format_bounds;
    (schema.admits("string") && !bounded).then(|| {
        (
            "a string with no maxLength, pattern, enum or bounded format",
            json!({"maxLength": 256}),
        )
    })
}

fn open_number(schema: &Schema<'_>) -> Option<Opening> {
    if !schema.admits("integer") && !schema.admits("number") {
        return None;
    }
    let mut update = Map::new();
    if !schema.has("minimum") && !schema.has("exclusiveMinimum") {
        update.insert("minimum".into(), json!(0));
    }
    if !schema.has("maximum") && !schema.has("exclusiveMaximum") {
        update.insert("maximum".into(), json!(1_000_000));
    }
    (!update.is_empty()).then_some(("a number without both bounds", Value::Object(update)))
}

fn open_array(schema: &Schema<'_>) -> Option<Opening> {
    (schema.admits("array") && !schema.has("maxItems"))
        .then(|| ("an array with no maxItems", json!({"maxItems": 100})))
}

/// An object open to other properties, or a map with no bound on their number; inside an
/// `allOf` the composition is closed instead (see [`open_composition`]).
fn open_object(schema: &Schema<'_>) -> Option<Opening> {
    if !schema.admits("object") {
        return None;
    }
    match schema.map.get("additionalProperties") {
        _ if schema.closed("additionalProperties") || schema.closed("unevaluatedProperties") => {
            None
        }
        _ if schema.in_all_of || schema.has("allOf") => None,
        Some(Value::Object(_)) if !schema.has("maxProperties") => {
            Some(("a map with no maxProperties", json!({"maxProperties": 64})))
        }
        Some(Value::Object(_)) => None,
        _ => Some((
            "an object open to any other property",
            json!({"additionalProperties": false}),
        )),
    }
}
