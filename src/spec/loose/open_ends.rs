//! What one schema object leaves open, by the types it admits, each with the keywords
//! that would close it: as an update only what the spec itself states (applied as it is,
//! the overlay then refuses nothing the spec allows), and the rest as a suggestion — a
//! guess at the model's input domain (`maxLength: 256`) that a person has to review, since
//! it may refuse valid requests (`minimum: 0` on a vector of floats would).

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

/// How each opening about an object open to other members ends: the only kind reported of
/// response schemas.
pub(super) const OPEN_OBJECT: &str = "open to any other property";

/// Something left open, and what would close it.
pub(super) struct Opening {
    pub(super) what: &'static str,
    /// Keywords that follow from what the schema already states: safe as they are.
    pub(super) update: Value,
    /// Keywords that are a guess: to review, and move into the update where they fit.
    pub(super) suggested: Value,
}

/// An opening only a person can close: nothing in the update, the guess as a suggestion.
pub(super) fn guess(what: &'static str, suggested: Value) -> Opening {
    Opening {
        what,
        update: json!({}),
        suggested,
    }
}

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
            guess(
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
        guess(
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
        guess(
            "a string with no maxLength, pattern, enum or bounded format",
            json!({"maxLength": 256}),
        )
    })
}

/// Bounds for the sides a number leaves open; symmetric, as nothing says the model's
/// numbers are positive.
fn open_number(schema: &Schema<'_>) -> Option<Opening> {
    if !schema.admits("integer") && !schema.admits("number") {
        return None;
    }
    let mut suggested = Map::new();
    if !schema.has("minimum") && !schema.has("exclusiveMinimum") {
        suggested.insert("minimum".into(), json!(-1_000_000));
    }
    if !schema.has("maximum") && !schema.has("exclusiveMaximum") {
        suggested.insert("maximum".into(), json!(1_000_000));
    }
    (!suggested.is_empty()).then(|| guess("a number without both bounds", Value::Object(suggested)))
}

/// An array with no `maxItems`. A tuple closed after its `prefixItems` (`items: false`)
/// states its own bound, which is taken as it is.
fn open_array(schema: &Schema<'_>) -> Option<Opening> {
    if !schema.admits("array") || schema.has("maxItems") {
        return None;
    }
    let what = "an array with no maxItems";
    match schema.map.get("prefixItems") {
        Some(Value::Array(tuple)) if schema.closed("items") => Some(Opening {
            what,
            update: json!({"maxItems": tuple.len()}),
            suggested: json!({}),
        }),
        _ => Some(guess(what, json!({"maxItems": 100}))),
    }
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
        Some(Value::Object(_)) if !schema.has("maxProperties") => Some(guess(
            "a map with no maxProperties",
            json!({"maxProperties": 64}),
        )),
        Some(Value::Object(_)) => None,
        _ => Some(guess(
            "an object open to any other property",
            json!({"additionalProperties": false}),
        )),
    }
}
