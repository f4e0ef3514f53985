//! `moat spec loose`: what the effective spec leaves open in what a request may carry —
//! strings with no length, pattern, enum or bounded format; numbers without both bounds;
//! arrays without `maxItems`; objects open to any other property; schemas that accept
//! anything; JSON bodies with no schema — written as an Overlay document whose actions
//! close each one, to be reviewed and kept as the spec's tightening.
//!
//! Each schema location is reported once, with every operation that reaches it, and only
//! in the spec's own document (the only one an overlay can target). The report reads the
//! document as overlays see it — after them, before 3.0→3.1 normalisation, which rewrites
//! schemas (`nullable` wraps one a level down) — so every target it writes exists.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::raw::{Loc, RawOperation};
use super::source::Documents;

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

/// One thing left open, and the update that closes it.
struct Finding {
    what: String,
    update: Value,
}

#[derive(Default)]
struct Report {
    /// By JSON pointer in the spec's own document: what is open there.
    findings: BTreeMap<String, Vec<Finding>>,
    /// By JSON pointer: the operations whose requests reach it.
    reached_by: BTreeMap<String, BTreeSet<String>>,
}

/// An Overlay document, its fields in the order the specification lists them.
#[derive(Serialize)]
pub struct Overlay {
    overlay: &'static str,
    info: Info,
    actions: Vec<Action>,
}

#[derive(Serialize)]
struct Info {
    title: String,
    version: &'static str,
}

#[derive(Serialize)]
struct Action {
    target: String,
    description: String,
    update: Map<String, Value>,
}

/// The overlay that would close everything the spec leaves open; `None` when nothing is.
pub(super) fn report(docs: &Documents, operations: &[RawOperation]) -> Option<Overlay> {
    let report = collect(docs, operations);
    overlay(docs, &report)
}

/// What the spec leaves open, one line each (`#pointer: what`): to tell what an overlay
/// opened by comparing before and after it.
pub(super) fn openings(docs: &Documents, operations: &[RawOperation]) -> BTreeSet<String> {
    collect(docs, operations)
        .findings
        .iter()
        .flat_map(|(pointer, findings)| {
            findings
                .iter()
                .map(move |f| format!("#{pointer}: {}", f.what))
        })
        .collect()
}

fn collect(docs: &Documents, operations: &[RawOperation]) -> Report {
    let root = docs.root.as_str();
    let mut report = Report::default();
    for operation in operations {
        let name = operation
            .id
            .clone()
            .unwrap_or_else(|| format!("{} {}", operation.method, operation.template));
        let mut seen = HashSet::new();
        for param in &operation.params {
            if let Some(at) = &param.schema {
                report.walk(docs, at, &name, &mut seen, false);
            }
        }
        for (range, at) in operation.body.iter().flat_map(|body| &body.media) {
            match at {
                Some(at) => report.walk(docs, at, &name, &mut seen, false),
                None if is_json(range) => {
                    let media = format!(
                        "{}/requestBody/content/{}",
                        operation.at.pointer,
                        super::normalize::escape(range)
                    );
                    if operation.at.uri == root {
                        report.found(
                            &media,
                            &name,
                            "a JSON body with no schema: any document is forwarded",
                            json!({"schema": {"type": "object", "additionalProperties": false}}),
                        );
                    }
                }
                None => {}
            }
        }
    }
    report
}

fn overlay(docs: &Documents, report: &Report) -> Option<Overlay> {
    let doc = docs.root();
    let actions: Vec<Action> = report
        .findings
        .iter()
        .map(|(pointer, findings)| {
            let operations: Vec<&str> = report
                .reached_by
                .get(pointer)
                .map(|ops| ops.iter().map(String::as_str).collect())
                .unwrap_or_default();
            let mut update = Map::new();
            for finding in findings {
                if let Value::Object(members) = &finding.update {
                    update.extend(members.clone());
                }
            }
            let what: Vec<&str> = findings.iter().map(|f| f.what.as_str()).collect();
            Action {
                target: normalized_path(doc, pointer),
                description: format!(
                    "#{pointer}: {} (reached by {})",
                    what.join("; "),
                    operations.join(", ")
                ),
                update,
            }
        })
        .collect();
    if actions.is_empty() {
        return None;
    }
    let title = doc
        .pointer("/info/title")
        .and_then(Value::as_str)
        .unwrap_or("the spec");
    Some(Overlay {
        overlay: "1.0.0",
        info: Info {
            title: format!("What {title} leaves open (moat spec loose): review each value"),
            version: "1.0.0",
        },
        actions,
    })
}

fn is_json(range: &str) -> bool {
    super::build::body_kind(range) == super::BodyKind::Json
}

impl Report {
    fn found(&mut self, pointer: &str, operation: &str, what: &str, update: Value) {
        self.reached(pointer, operation);
        let findings = self.findings.entry(pointer.to_owned()).or_default();
        if !findings.iter().any(|f| f.what == what) {
            findings.push(Finding {
                what: what.to_owned(),
                update,
            });
        }
    }

    fn reached(&mut self, pointer: &str, operation: &str) {
        self.reached_by
            .entry(pointer.to_owned())
            .or_default()
            .insert(operation.to_owned());
    }

    /// Visits the schema at `at` and everything under it and behind its `$ref`s, once per
    /// operation. `in_all_of`: it is (or is referenced by) a branch of an `allOf`, where
    /// closing the object would refuse the other branches' properties — the composition
    /// is closed instead, with `unevaluatedProperties`.
    fn walk(
        &mut self,
        docs: &Documents,
        at: &Loc,
        operation: &str,
        seen: &mut HashSet<Loc>,
        in_all_of: bool,
    ) {
        if !seen.insert(at.clone()) {
            return;
        }
        let Some(schema) = docs.get(&at.uri, &at.pointer) else {
            return;
        };
        let own = at.uri == docs.root;
        if own {
            self.reached(&at.pointer, operation);
        }
        let map = match schema {
            Value::Bool(true) => {
                if own {
                    self.found(
                        &at.pointer,
                        operation,
                        "`true`: accepts any value",
                        json!({}),
                    );
                }
                return;
            }
            Value::Object(map) => map,
            _ => return,
        };
        if own {
            for (what, update) in open_ends(map, in_all_of) {
                self.found(&at.pointer, operation, &what, update);
            }
        }
        if let Some(Value::String(reference)) = map.get("$ref")
            && let Ok((uri, pointer)) = docs.locate(&at.uri, reference)
        {
            self.walk(docs, &Loc { uri, pointer }, operation, seen, in_all_of);
        }
        for keyword in ["properties", "patternProperties", "dependentSchemas"] {
            if let Some(Value::Object(members)) = map.get(keyword) {
                for name in members.keys() {
                    let child = at.child(keyword).child(name);
                    self.walk(docs, &child, operation, seen, false);
                }
            }
        }
        for keyword in ["allOf", "anyOf", "oneOf", "prefixItems"] {
            if let Some(Value::Array(branches)) = map.get(keyword) {
                for index in 0..branches.len() {
                    let child = at.child(keyword).child(&index.to_string());
                    self.walk(docs, &child, operation, seen, keyword == "allOf");
                }
            }
        }
        for keyword in [
            "items",
            "additionalProperties",
            "contains",
            "if",
            "then",
            "else",
        ] {
            if map.get(keyword).is_some_and(Value::is_object) {
                self.walk(docs, &at.child(keyword), operation, seen, false);
            }
        }
    }
}

/// What one schema object leaves open, each with the keywords that would close it.
fn open_ends(map: &Map<String, Value>, in_all_of: bool) -> Vec<(String, Value)> {
    let has = |keyword: &str| map.contains_key(keyword);
    if has("enum") || has("const") {
        return Vec::new();
    }
    let closed = |keyword: &str| map.get(keyword) == Some(&Value::Bool(false));
    let mut open = Vec::new();
    // `unevaluatedProperties` sees the properties every branch declares; it constrains
    // only objects, so it is safe whatever the branches are.
    if has("allOf") && !in_all_of && !closed("unevaluatedProperties") {
        open.push((
            "an allOf composition open to any other property".to_owned(),
            json!({"unevaluatedProperties": false}),
        ));
    }
    let composed = ["$ref", "allOf", "anyOf", "oneOf", "not", "if"]
        .iter()
        .any(|keyword| has(keyword));
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        if !composed {
            open.push((
                "no `type`: accepts any JSON value".to_owned(),
                json!({"type": "string", "maxLength": 256}),
            ));
        }
        return open;
    }
    if types.contains(&"string") {
        let format_bounds = map
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|format| BOUNDED_FORMATS.contains(&format));
        if !has("maxLength") && !has("pattern") && !format_bounds {
            open.push((
                "a string with no maxLength, pattern, enum or bounded format".to_owned(),
                json!({"maxLength": 256}),
            ));
        }
    }
    if types.contains(&"integer") || types.contains(&"number") {
        let mut update = Map::new();
        if !has("minimum") && !has("exclusiveMinimum") {
            update.insert("minimum".into(), json!(0));
        }
        if !has("maximum") && !has("exclusiveMaximum") {
            update.insert("maximum".into(), json!(1_000_000));
        }
        if !update.is_empty() {
            open.push((
                "a number without both bounds".to_owned(),
                Value::Object(update),
            ));
        }
    }
    if types.contains(&"array") && !has("maxItems") {
        open.push((
            "an array with no maxItems".to_owned(),
            json!({"maxItems": 100}),
        ));
    }
    if types.contains(&"object") {
        match map.get("additionalProperties") {
            _ if closed("additionalProperties") || closed("unevaluatedProperties") => {}
            _ if in_all_of || has("allOf") => {}
            Some(Value::Object(_)) if !has("maxProperties") => open.push((
                "a map with no maxProperties".to_owned(),
                json!({"maxProperties": 64}),
            )),
            Some(Value::Object(_)) => {}
            _ => open.push((
                "an object open to any other property".to_owned(),
                json!({"additionalProperties": false}),
            )),
        }
    }
    open
}

/// The RFC 9535 normalized path of a JSON pointer in `doc`: `$['paths']['/x']['post']`.
fn normalized_path(doc: &Value, pointer: &str) -> String {
    let mut path = String::from("$");
    let mut node = Some(doc);
    for segment in pointer.split('/').skip(1) {
        let name = super::normalize::unescape(segment);
        match node {
            Some(Value::Array(entries)) => {
                let index: usize = name.parse().unwrap_or(usize::MAX);
                path.push_str(&format!("[{index}]"));
                node = entries.get(index);
            }
            other => {
                let quoted = name.replace('\\', "\\\\").replace('\'', "\\'");
                path.push_str(&format!("['{quoted}']"));
                node = other.and_then(|value| value.get(&name));
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_paths_quote_names_and_index_arrays() {
        let doc = json!({"paths": {"/v1/{m}:predict": {"post": {"x": [{"it's": 1}]}}}});
        assert_eq!(
            normalized_path(&doc, "/paths/~1v1~1{m}:predict/post/x/0/it's"),
            r"$['paths']['/v1/{m}:predict']['post']['x'][0]['it\'s']"
        );
    }

    #[test]
    fn each_open_end_gets_the_keyword_that_closes_it() {
        let cases = [
            (json!({"type": "string"}), vec![json!({"maxLength": 256})]),
            (json!({"type": "string", "format": "uuid"}), vec![]),
            (
                json!({"type": "string", "format": "byte"}),
                vec![json!({"maxLength": 256})],
            ),
            (
                json!({"type": "integer", "minimum": 1}),
                vec![json!({"maximum": 1_000_000})],
            ),
            (
                json!({"type": "array", "items": {}}),
                vec![json!({"maxItems": 100})],
            ),
            (
                json!({"type": "object"}),
                vec![json!({"additionalProperties": false})],
            ),
            (
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                vec![json!({"maxProperties": 64})],
            ),
            (
                json!({"type": "object", "unevaluatedProperties": false}),
                vec![],
            ),
            (json!({"enum": ["a", "b"]}), vec![]),
            (json!({}), vec![json!({"type": "string", "maxLength": 256})]),
            (json!({"$ref": "#/x"}), vec![]),
            (
                json!({"allOf": [{"$ref": "#/a"}], "type": "object"}),
                vec![json!({"unevaluatedProperties": false})],
            ),
        ];
        for (schema, expected) in cases {
            let Value::Object(map) = &schema else {
                unreachable!()
            };
            let updates: Vec<Value> = open_ends(map, false).into_iter().map(|(_, u)| u).collect();
            assert_eq!(updates, expected, "{schema}");
        }
    }
}
