//! OpenAPI schemas → JSON Schema draft 2020-12, once, at load, so there is one validation
//! path for 3.0 and 3.1 documents. Only schemas reachable from a request (parameters and
//! bodies, following `$ref`s) are visited: response schemas never constrain a request.
//!
//! Written by hand because no maintained crate does it without dropping keywords (see
//! `openapiv3`/`oas3` in the dependency notes). Every rewrite either keeps a check or makes
//! it explicit; where a keyword cannot be enforced, the load fails with the schema's
//! location, because a silently ignored keyword is a weakened check.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::source::Documents;

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

/// Visits schemas in place. Feed it schema locations with [`Normalizer::schema_at`].
pub struct Normalizer<'d> {
    docs: &'d mut Documents,
    done: HashSet<(String, String)>,
    queue: Vec<(String, String)>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Where in the documents a schema being rewritten sits.
struct At<'a> {
    uri: &'a str,
    pointer: String,
    /// The nearest enclosing schema with `$recursiveAnchor: true`.
    recursive_anchor: Option<String>,
}

impl<'d> Normalizer<'d> {
    pub fn new(docs: &'d mut Documents) -> Self {
        Self {
            docs,
            done: HashSet::new(),
            queue: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn docs(&self) -> &Documents {
        self.docs
    }

    /// Normalises the schema at `uri#pointer` and everything it references.
    pub fn schema_at(&mut self, uri: &str, pointer: &str) {
        self.queue.push((uri.to_owned(), pointer.to_owned()));
        while let Some((uri, pointer)) = self.queue.pop() {
            if self.already_done(&uri, &pointer) {
                continue;
            }
            self.done.insert((uri.clone(), pointer.clone()));
            let recursive_anchor = self.enclosing_recursive_anchor(&uri, &pointer);
            let Some(slot) = self
                .docs
                .docs
                .get_mut(&uri)
                .and_then(|doc| doc.pointer_mut(&pointer))
            else {
                self.problems.push(format!(
                    "{uri}#{pointer}: the referenced schema does not exist"
                ));
                continue;
            };
            let mut schema = std::mem::take(slot);
            let at = At {
                uri: &uri,
                pointer: pointer.clone(),
                recursive_anchor,
            };
            self.schema(&mut schema, &at);
            if let Some(slot) = self
                .docs
                .docs
                .get_mut(&uri)
                .and_then(|doc| doc.pointer_mut(&pointer))
            {
                *slot = schema;
            }
        }
    }

    /// True when this schema or one enclosing it has been normalised already.
    fn already_done(&self, uri: &str, pointer: &str) -> bool {
        let mut prefix = pointer;
        loop {
            if self.done.contains(&(uri.to_owned(), prefix.to_owned())) {
                return true;
            }
            match prefix.rfind('/') {
                Some(cut) => prefix = &prefix[..cut],
                None => return false,
            }
        }
    }

    fn enclosing_recursive_anchor(&self, uri: &str, pointer: &str) -> Option<String> {
        let doc = self.docs.docs.get(uri)?;
        let mut prefix = pointer;
        loop {
            if doc.pointer(prefix)?.get("$recursiveAnchor") == Some(&Value::Bool(true)) {
                return Some(prefix.to_owned());
            }
            prefix = &prefix[..prefix.rfind('/')?];
        }
    }

    fn schema(&mut self, schema: &mut Value, at: &At<'_>) {
        let Value::Object(map) = schema else {
            if !schema.is_boolean() {
                self.problem(at, "a schema must be an object or a boolean");
            }
            return;
        };
        let recursive_anchor = if map.get("$recursiveAnchor") == Some(&Value::Bool(true)) {
            Some(at.pointer.clone())
        } else {
            at.recursive_anchor.clone()
        };
        map.remove("$recursiveAnchor");
        self.unknown_keywords(map, at);
        self.references(map, at, recursive_anchor.as_deref());
        self.types(map, at);
        exclusive_bounds(map);
        self.tuple_items(map);
        dependencies(map);
        self.required(map, at);
        self.patterns(map, at);
        numeric_format_bounds(map);
        discriminator(map);
        self.subschemas(map, at, recursive_anchor);
        // Last: wrapping for `nullable` moves the whole schema one level down.
        nullable(schema);
    }

    fn problem(&mut self, at: &At<'_>, message: &str) {
        self.problems
            .push(format!("{}#{}: {message}", at.uri, at.pointer));
    }

    fn warning(&mut self, at: &At<'_>, message: &str) {
        self.warnings
            .push(format!("{}#{}: {message}", at.uri, at.pointer));
    }

    fn unknown_keywords(&mut self, map: &mut Map<String, Value>, at: &At<'_>) {
        for (alias, keyword) in ALIASES {
            if let Some(value) = map.remove(*alias) {
                if map.contains_key(*keyword) {
                    self.problem(at, &format!("both `{alias}` and `{keyword}`; keep one"));
                } else {
                    self.warning(at, &format!("`{alias}` is read as `{keyword}`"));
                    map.insert((*keyword).to_owned(), value);
                }
            }
        }
        for key in map.keys() {
            if !KNOWN.contains(&key.as_str()) && !key.starts_with("x-") {
                self.problem(
                    at,
                    &format!(
                        "unknown keyword `{key}`: moat cannot enforce it; fix its spelling, or \
                         rename it `x-{key}` if it is only documentation"
                    ),
                );
            }
        }
    }

    /// Queues `$ref` targets and turns the dynamic references real specs use into static
    /// ones (the registry does not index anchors inside an OpenAPI document).
    fn references(&mut self, map: &mut Map<String, Value>, at: &At<'_>, anchor: Option<&str>) {
        if let Some(Value::String(reference)) = map.remove("$recursiveRef") {
            match (reference.as_str(), anchor) {
                ("#", Some(anchor)) => {
                    map.insert("$ref".into(), Value::String(format!("#{anchor}")));
                }
                _ => self.problem(
                    at,
                    "`$recursiveRef` without an enclosing `$recursiveAnchor: true` schema",
                ),
            }
        }
        if let Some(Value::String(reference)) = map.remove("$dynamicRef") {
            match self.dynamic_anchor(at.uri, reference.trim_start_matches('#')) {
                Some(pointer) => {
                    map.insert("$ref".into(), Value::String(format!("#{pointer}")));
                }
                None => self.problem(
                    at,
                    &format!("`$dynamicRef: {reference}` names no unique `$dynamicAnchor`"),
                ),
            }
        }
        if let Some(Value::String(reference)) = map.get("$ref") {
            match self.docs.locate(at.uri, reference) {
                Ok(target) => self.queue.push(target),
                Err(message) => self.problem(at, &message),
            }
        }
    }

    /// The one schema in the document declaring `$dynamicAnchor: name`.
    fn dynamic_anchor(&self, uri: &str, name: &str) -> Option<String> {
        let mut found = Vec::new();
        let mut stack = vec![(String::new(), self.docs.docs.get(uri)?)];
        while let Some((pointer, value)) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if map.get("$dynamicAnchor").and_then(Value::as_str) == Some(name) {
                        found.push(pointer.clone());
                    }
                    for (key, child) in map {
                        stack.push((format!("{pointer}/{}", escape(key)), child));
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        stack.push((format!("{pointer}/{i}"), child));
                    }
                }
                _ => {}
            }
        }
        (found.len() == 1).then(|| found.remove(0))
    }

    fn types(&mut self, map: &mut Map<String, Value>, at: &At<'_>) {
        let Some(types) = map.get_mut("type") else {
            return;
        };
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
        if bytes {
            self.warning(
                at,
                "non-standard `type: bytes` is checked as `type: string`",
            );
        }
        let declared = map.get("type").cloned().unwrap_or(Value::Null);
        let is = |name: &str| {
            declared == name
                || declared
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == name))
        };
        if map.get("default").is_some_and(Value::is_string)
            && !is("string")
            && (is("integer") || is("number") || is("boolean"))
        {
            self.warning(at, "`default` is written as a string for a non-string type (ignored: defaults are not validated)");
        }
        for problem in problems {
            self.problem(at, &problem);
        }
    }

    /// Draft 4 tuples (`items: [...]`, `additionalItems`) in 2020-12 spelling.
    fn tuple_items(&mut self, map: &mut Map<String, Value>) {
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

    fn required(&mut self, map: &mut Map<String, Value>, at: &At<'_>) {
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
    fn patterns(&mut self, map: &Map<String, Value>, at: &At<'_>) {
        let mut patterns: Vec<&str> = Vec::new();
        if let Some(Value::String(pattern)) = map.get("pattern") {
            patterns.push(pattern);
        }
        if let Some(Value::Object(properties)) = map.get("patternProperties") {
            patterns.extend(properties.keys().map(String::as_str));
        }
        let mut problems = Vec::new();
        for pattern in patterns {
            if let Err(error) = super::compile::check_pattern(pattern) {
                problems.push(format!("pattern `{pattern}` cannot be enforced: {error}"));
            }
        }
        for problem in problems {
            self.problem(at, &problem);
        }
    }

    fn subschemas(&mut self, map: &mut Map<String, Value>, at: &At<'_>, anchor: Option<String>) {
        for (key, child) in map.iter_mut() {
            match key.as_str() {
                "additionalProperties"
                | "items"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contains"
                | "propertyNames"
                | "unevaluatedItems"
                | "unevaluatedProperties"
                | "contentSchema" => self.child(child, at, &anchor, &[key]),
                "properties" | "patternProperties" | "dependentSchemas" | "$defs"
                | "definitions" => {
                    if let Value::Object(children) = child {
                        for (name, child) in children.iter_mut() {
                            self.child(child, at, &anchor, &[key, name]);
                        }
                    }
                }
                "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                    if let Value::Array(children) = child {
                        for (i, child) in children.iter_mut().enumerate() {
                            self.child(child, at, &anchor, &[key, &i.to_string()]);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn child(&mut self, child: &mut Value, at: &At<'_>, anchor: &Option<String>, path: &[&str]) {
        let mut pointer = at.pointer.clone();
        for segment in path {
            pointer.push('/');
            pointer.push_str(&escape(segment));
        }
        let at = At {
            uri: at.uri,
            pointer,
            recursive_anchor: anchor.clone(),
        };
        self.schema(child, &at);
    }
}

/// OpenAPI 3.0 boolean `exclusiveMinimum`/`exclusiveMaximum` → 2020-12 numbers.
fn exclusive_bounds(map: &mut Map<String, Value>) {
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
fn dependencies(map: &mut Map<String, Value>) {
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
fn discriminator(map: &mut Map<String, Value>) {
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
fn numeric_format_bounds(map: &mut Map<String, Value>) {
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
fn nullable(schema: &mut Value) {
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

pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
