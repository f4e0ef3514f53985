//! What moat knows of JSON Schema's vocabulary, and the keyword-level rewrites that need the
//! normalizer's problem list: unknown keywords, 3.0 `type` forms, tuple `items`,
//! `required`, and patterns the regex engine must accept.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{At, Normalizer};

/// Annotations that only document a schema (see [`Normalizer::drop_documentation`]).
const DOCUMENTATION: &[&str] = &[
    "title",
    "description",
    "$comment",
    "example",
    "examples",
    "externalDocs",
    "xml",
];

/// Keywords moat knows: validated by the compiler, translated here, or pure annotations.
const KNOWN: &[&str] = &[
    // draft 2020-12 core, applicator, validation, unevaluated, format, content, meta-data
    "$schema",
    "$id",
    "$ref",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$vocabulary",
    "$comment",
    "$defs",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "prefixItems",
    "items",
    "contains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "unevaluatedItems",
    "unevaluatedProperties",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "title",
    "description",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "examples",
    // older drafts, translated below or harmless containers
    "definitions",
    "$recursiveRef",
    "$recursiveAnchor",
    "additionalItems",
    "dependencies",
    "id",
    // OpenAPI's own schema fields
    "nullable",
    "discriminator",
    "xml",
    "externalDocs",
    "example",
];

/// snake_case spellings of validation keywords seen in real specs (OpenAI's writes
/// `min_items`): read as the keyword they spell, with a warning, rather than dropped.
const ALIASES: &[(&str, &str)] = &[
    ("min_items", "minItems"),
    ("max_items", "maxItems"),
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("min_properties", "minProperties"),
    ("max_properties", "maxProperties"),
    ("unique_items", "uniqueItems"),
    ("multiple_of", "multipleOf"),
    ("exclusive_minimum", "exclusiveMinimum"),
    ("exclusive_maximum", "exclusiveMaximum"),
];

const TYPES: &[&str] = &[
    "null", "boolean", "object", "array", "number", "string", "integer",
];

impl Normalizer<'_> {
    pub(super) fn unknown_keywords(&mut self, map: &mut Map<String, Value>, at: &At<'_>) {
        for (alias, keyword) in ALIASES {
            self.alias(map, at, alias, keyword);
        }
        for key in map.keys() {
            if !KNOWN.contains(&key.as_str()) && !key.starts_with("x-") {
                self.problem(at, &unknown_keyword(key));
            }
        }
    }

    /// A snake_case spelling read as the keyword it spells, unless both are there.
    fn alias(&mut self, map: &mut Map<String, Value>, at: &At<'_>, alias: &str, keyword: &str) {
        let Some(value) = map.remove(alias) else {
            return;
        };
        if map.contains_key(keyword) {
            self.problem(at, &format!("both `{alias}` and `{keyword}`; keep one"));
        } else {
            self.warning(at, &format!("`{alias}` is read as `{keyword}`"));
            map.insert(keyword.to_owned(), value);
        }
    }

    /// Drops what only documents a schema. The validator keeps every annotation it is
    /// given — measured at a quarter of the compiled size of OpenAI's request schemas —
    /// and none of these constrains a request.
    pub(super) fn drop_documentation(map: &mut Map<String, Value>) {
        map.retain(|key, _| !DOCUMENTATION.contains(&key.as_str()) && !key.starts_with("x-"));
    }

    pub(super) fn types(&mut self, map: &mut Map<String, Value>, at: &At<'_>) {
        let Some(types) = map.get_mut("type") else {
            return;
        };
        let (bytes, problems) = check_type_names(types);
        if bytes {
            self.warning(
                at,
                "non-standard `type: bytes` is checked as `type: string`",
            );
        }
        if string_default_for_other_type(map) {
            self.warning(at, "`default` is written as a string for a non-string type (ignored: defaults are not validated)");
        }
        for problem in problems {
            self.problem(at, &problem);
        }
    }

    /// Draft 4 tuples (`items: [...]`, `additionalItems`) in 2020-12 spelling.
    pub(super) fn tuple_items(&mut self, map: &mut Map<String, Value>) {
        if matches!(map.get("items"), Some(Value::Array(_))) {
            if let Some(tuple) = map.remove("items") {
                map.insert("prefixItems".into(), tuple);
            }
            if let Some(rest) = map.remove("additionalItems") {
                map.insert("items".into(), rest);
            }
        } else {
            // Without a tuple, draft 4 ignores `additionalItems` too.
            map.remove("additionalItems");
        }
    }

    pub(super) fn required(&mut self, map: &mut Map<String, Value>, at: &At<'_>) {
        let Some(Value::Array(names)) = map.get_mut("required") else {
            return;
        };
        let before = names.len();
        let mut seen = HashSet::new();
        names.retain(|name| seen.insert(name.to_string()));
        if names.len() != before {
            self.warning(at, "duplicate entries in `required` (kept once)");
        }
    }

    /// Patterns must translate to the linear-time `regex` dialect with ECMA-262 meaning;
    /// look-around and back-references cannot, and would otherwise be dropped or backtrack.
    pub(super) fn patterns(&mut self, map: &Map<String, Value>, at: &At<'_>) {
        let mut patterns: Vec<&str> = Vec::new();
        if let Some(Value::String(pattern)) = map.get("pattern") {
            patterns.push(pattern);
        }
        if let Some(Value::Object(properties)) = map.get("patternProperties") {
            patterns.extend(properties.keys().map(String::as_str));
        }
        let mut problems = Vec::new();
        for pattern in patterns {
            if let Err(error) = crate::spec::compile::check_pattern(pattern) {
                problems.push(format!("pattern `{pattern}` cannot be enforced: {error}"));
            }
        }
        for problem in problems {
            self.problem(at, &problem);
        }
    }
}

/// Checks each name `type` gives, reading `bytes` as `string`: whether it did, and a problem
/// for each name that is not a JSON Schema type.
fn check_type_names(types: &mut Value) -> (bool, Vec<String>) {
    let names: Vec<&mut Value> = match types {
        Value::Array(items) => items.iter_mut().collect(),
        one => vec![one],
    };
    let mut problems = Vec::new();
    let mut bytes = false;
    for name in names {
        match name.as_str() {
            Some("bytes") => {
                // MLServer writes `type: bytes` for raw data sent as a JSON string.
                *name = Value::String("string".into());
                bytes = true;
            }
            Some(known) if TYPES.contains(&known) => {}
            _ => problems.push(format!("`type: {name}` is not a JSON Schema type")),
        }
    }
    (bytes, problems)
}

/// A string `default` in a schema that is a number or a boolean and never a string.
fn string_default_for_other_type(map: &Map<String, Value>) -> bool {
    let declared = map.get("type").unwrap_or(&Value::Null);
    let is = |name: &str| {
        *declared == name
            || declared
                .as_array()
                .is_some_and(|t| t.iter().any(|x| x == name))
    };
    map.get("default").is_some_and(Value::is_string)
        && !is("string")
        && (is("integer") || is("number") || is("boolean"))
}

/// The problem of a keyword moat does not know.
fn unknown_keyword(key: &str) -> String {
    format!(
        "unknown keyword `{key}`: moat cannot enforce it; fix its spelling, or rename it \
         `x-{key}` if it is only documentation"
    )
}
