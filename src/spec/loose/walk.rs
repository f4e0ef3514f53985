//! One operation's walk through the schemas its requests reach, noting in the report what
//! each one in the spec's own document leaves open — and a second walk through its
//! answers' schemas, noting only objects open to other members.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::Openings;
use super::open_ends::{OPEN_OBJECT, Opening, guess, open_ends};
use crate::spec::raw::{Loc, RawOperation};
use crate::spec::source::Documents;
use crate::spec::{BodyKind, build, normalize};

/// Keywords whose value maps names to subschemas.
const BY_NAME: [&str; 3] = ["properties", "patternProperties", "dependentSchemas"];
/// Keywords whose value lists subschemas.
const LISTED: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value is one subschema.
const SINGLE: [&str; 6] = [
    "items",
    "additionalProperties",
    "contains",
    "if",
    "then",
    "else",
];

pub(super) struct Walk<'r> {
    report: &'r mut Openings,
    docs: &'r Documents,
    /// The operation's name in the report: its operationId, else `METHOD /template`.
    name: String,
    /// Each schema is visited once per operation.
    seen: HashSet<Loc>,
    /// Walking the operation's answers: only objects open to other members matter there
    /// (what `responses.strip_undeclared` cannot remove, and what leaks).
    answers: bool,
}

impl<'r> Walk<'r> {
    pub(super) fn new(
        report: &'r mut Openings,
        docs: &'r Documents,
        operation: &RawOperation,
    ) -> Self {
        let name = operation
            .id
            .clone()
            .unwrap_or_else(|| format!("{} {}", operation.method, operation.template));
        Walk {
            report,
            docs,
            name,
            seen: HashSet::new(),
            answers: false,
        }
    }

    /// The walk through the schemas of the operation's answers (named `… answers`).
    pub(super) fn answers(
        report: &'r mut Openings,
        docs: &'r Documents,
        operation: &RawOperation,
    ) -> Self {
        let mut walk = Walk::new(report, docs, operation);
        walk.name.push_str(" answers");
        walk.answers = true;
        walk
    }

    /// Walks the schemas of the operation's answers: each JSON body's and each event
    /// stream's events'.
    pub(super) fn responses(&mut self, operation: &RawOperation) {
        let media = operation.responses.iter().flatten().flat_map(|(_, m)| m);
        for media in media {
            let json = media.schema.as_ref().filter(|_| is_json(&media.range));
            for at in json.into_iter().chain(&media.events) {
                self.schema(at, false);
            }
        }
    }

    /// Walks the schemas of the operation's parameters, then of its bodies.
    pub(super) fn operation(&mut self, operation: &RawOperation) {
        for param in &operation.params {
            if let Some(at) = &param.schema {
                self.schema(at, false);
            }
        }
        for (range, at) in operation.body.iter().flat_map(|body| &body.media) {
            match at {
                Some(at) => self.schema(at, false),
                None if is_json(range) => self.no_schema(operation, range),
                None => {}
            }
        }
    }

    /// A JSON body declared without a schema, when the spec's own document declares it.
    fn no_schema(&mut self, operation: &RawOperation, range: &str) {
        if operation.at.uri != self.docs.root {
            return;
        }
        let media = format!(
            "{}/requestBody/content/{}",
            operation.at.pointer,
            normalize::escape(range)
        );
        let opening = guess(
            "a JSON body with no schema: any document is forwarded",
            json!({"schema": {"type": "object", "additionalProperties": false}}),
        );
        self.report.found(&media, &self.name, opening);
    }

    /// Visits the schema at `at` and everything under it and behind its `$ref`s, once per
    /// operation. `in_all_of`: it is (or is referenced by) a branch of an `allOf`, where
    /// closing the object would refuse the other branches' properties — the composition
    /// is closed instead, with `unevaluatedProperties`.
    fn schema(&mut self, at: &Loc, in_all_of: bool) {
        if !self.seen.insert(at.clone()) {
            return;
        }
        let docs = self.docs;
        let Some(schema) = docs.get(&at.uri, &at.pointer) else {
            return;
        };
        let own = at.uri == docs.root;
        if own {
            self.report.reached(&at.pointer, &self.name);
        }
        match schema {
            Value::Bool(true) if own && !self.answers => self.found(
                at,
                guess(
                    "`true`: accepts any value",
                    json!({"type": "string", "maxLength": 256}),
                ),
            ),
            Value::Object(map) => {
                if own {
                    let answers = self.answers;
                    let open = open_ends(map, in_all_of).into_iter();
                    for opening in open.filter(|o| !answers || o.what.ends_with(OPEN_OBJECT)) {
                        self.found(at, opening);
                    }
                }
                self.children(at, map, in_all_of);
            }
            _ => {}
        }
    }

    /// What is open at `at`, for this operation.
    fn found(&mut self, at: &Loc, opening: Opening) {
        self.report.found(&at.pointer, &self.name, opening);
    }

    /// Walks on to the schema's `$ref` target and each of its subschemas.
    fn children(&mut self, at: &Loc, map: &Map<String, Value>, in_all_of: bool) {
        if let Some(Value::String(reference)) = map.get("$ref")
            && let Ok((uri, pointer)) = self.docs.locate(&at.uri, reference)
        {
            self.schema(&Loc { uri, pointer }, in_all_of);
        }
        for (child, in_all_of) in subschemas(at, map) {
            self.schema(&child, in_all_of);
        }
    }
}

/// Where each subschema of the schema at `at` is, and whether it is an `allOf` branch.
fn subschemas(at: &Loc, map: &Map<String, Value>) -> Vec<(Loc, bool)> {
    let mut found = Vec::new();
    for keyword in BY_NAME {
        if let Some(Value::Object(members)) = map.get(keyword) {
            let named = members.keys().map(|name| at.child(keyword).child(name));
            found.extend(named.map(|child| (child, false)));
        }
    }
    for keyword in LISTED {
        if let Some(Value::Array(branches)) = map.get(keyword) {
            let indexed = (0..branches.len()).map(|i| at.child(keyword).child(&i.to_string()));
            found.extend(indexed.map(|child| (child, keyword == "allOf")));
        }
    }
    for keyword in SINGLE {
        if map.get(keyword).is_some_and(Value::is_object) {
            found.push((at.child(keyword), false));
        }
    }
    found
}

fn is_json(range: &str) -> bool {
    build::body_kind(range) == BodyKind::Json
}
