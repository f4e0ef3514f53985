//! OpenAPI schemas → JSON Schema draft 2020-12, once, at load, so there is one validation
//! path for 3.0 and 3.1 documents. Only schemas reachable from a request (parameters and
//! bodies, following `$ref`s) are visited: response schemas never constrain a request.
//!
//! Written by hand because no maintained crate does it without dropping keywords (see
//! `openapiv3`/`oas3` in the dependency notes). Every rewrite either keeps a check or makes
//! it explicit; where a keyword cannot be enforced, the load fails with the schema's
//! location, because a silently ignored keyword is a weakened check.

mod keywords;
mod references;
mod rewrite;

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::source::Documents;

use self::rewrite::{
    dependencies, discriminator, exclusive_bounds, nullable, numeric_format_bounds,
};

/// Keywords whose value is one subschema.
const SINGLE: &[&str] = &[
    "additionalProperties",
    "items",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
];
/// Keywords whose value maps names to subschemas.
const BY_NAME: &[&str] = &[
    "properties",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];
/// Keywords whose value lists subschemas.
const LISTED: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];

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
            self.rewrite_in_place(&uri, pointer);
        }
    }

    /// Takes the schema out of its document to rewrite it, then puts it back: rewriting
    /// reads the documents meanwhile (anchors, `$ref` targets).
    fn rewrite_in_place(&mut self, uri: &str, pointer: String) {
        let recursive_anchor = self.enclosing_recursive_anchor(uri, &pointer);
        let Some(slot) = self.slot(uri, &pointer) else {
            self.problems.push(format!(
                "{uri}#{pointer}: the referenced schema does not exist"
            ));
            return;
        };
        let mut schema = std::mem::take(slot);
        let at = At {
            uri,
            pointer,
            recursive_anchor,
        };
        self.schema(&mut schema, &at);
        if let Some(slot) = self.slot(uri, &at.pointer) {
            *slot = schema;
        }
    }

    fn slot(&mut self, uri: &str, pointer: &str) -> Option<&mut Value> {
        self.docs.docs.get_mut(uri)?.pointer_mut(pointer)
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
        match schema {
            Value::Object(map) => self.object(map, at),
            Value::Bool(_) => {}
            _ => self.problem(at, "a schema must be an object or a boolean"),
        }
        // Last: wrapping for `nullable` moves the whole schema one level down.
        nullable(schema);
    }

    /// Every rewrite of one schema object, then its subschemas.
    fn object(&mut self, map: &mut Map<String, Value>, at: &At<'_>) {
        let recursive_anchor = recursive_anchor(map, at);
        self.unknown_keywords(map, at);
        Self::drop_documentation(map);
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
    }

    fn problem(&mut self, at: &At<'_>, message: &str) {
        self.problems
            .push(format!("{}#{}: {message}", at.uri, at.pointer));
    }

    fn warning(&mut self, at: &At<'_>, message: &str) {
        self.warnings
            .push(format!("{}#{}: {message}", at.uri, at.pointer));
    }

    fn subschemas(&mut self, map: &mut Map<String, Value>, at: &At<'_>, anchor: Option<String>) {
        for (key, child) in map.iter_mut() {
            let key = key.as_str();
            if SINGLE.contains(&key) {
                self.child(child, at, &anchor, &[key]);
            } else if BY_NAME.contains(&key)
                && let Value::Object(children) = child
            {
                for (name, child) in children.iter_mut() {
                    self.child(child, at, &anchor, &[key, name]);
                }
            } else if LISTED.contains(&key)
                && let Value::Array(children) = child
            {
                for (i, child) in children.iter_mut().enumerate() {
                    self.child(child, at, &anchor, &[key, &i.to_string()]);
                }
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

/// Where a `$recursiveRef` in this schema points: here, when it says `$recursiveAnchor:
/// true` (a keyword the compiler does not know, so taken out), else the enclosing anchor.
fn recursive_anchor(map: &mut Map<String, Value>, at: &At<'_>) -> Option<String> {
    match map.remove("$recursiveAnchor") {
        Some(Value::Bool(true)) => Some(at.pointer.clone()),
        _ => at.recursive_anchor.clone(),
    }
}

/// A name as one JSON-pointer segment (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The name one JSON-pointer segment stands for: [`escape`] undone, `~1` before `~0`.
pub fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests;
