//! Each schema a request (or a response) meets compiled once: shared by location, by text
//! within a document, and through chains of bare `$ref`s.

use std::sync::Arc;

use serde_json::Value;

use super::{Builder, UNCHECKED, body_kind};
use crate::spec::compile::Schema;
use crate::spec::plan::{self, Plan};
use crate::spec::raw::{Loc, RawMedia};
use crate::spec::{BodyKind, Declared, ResponseMedia};

impl Builder<'_> {
    /// The compiled schema at `at`, compiled now unless one it shares with already is; a
    /// schema that does not compile is a problem, and `None`.
    pub(super) fn schema(&mut self, at: &Loc) -> Option<Arc<Schema>> {
        self.compiled(at)
            .map_err(|problem| self.problems.push(problem))
            .ok()
    }

    /// A response's media range and, for JSON, its compiled schema — for an event stream,
    /// its events' — one that does not compile is a warning (its answers go unchecked),
    /// never a load failure.
    pub(super) fn response_media(&mut self, raw: RawMedia) -> ResponseMedia {
        let json = body_kind(&raw.range) == BodyKind::Json;
        let at = raw.schema.filter(|_| json);
        let schema = at.as_ref().and_then(|at| self.response_schema(at));
        let declared = (at.as_ref())
            .filter(|_| schema.is_some())
            .map(|at| Arc::new(Declared::of(self.docs, at)));
        let plan = (at.as_ref())
            .filter(|_| schema.is_some())
            .and_then(|at| self.plan(at));
        let events = raw.events.as_ref().and_then(|at| self.response_schema(at));
        let events_plan = (raw.events.as_ref())
            .filter(|_| events.is_some())
            .and_then(|at| self.plan(at));
        ResponseMedia {
            range: raw.range,
            schema,
            declared,
            plan,
            events,
            events_plan,
        }
    }

    /// A response schema, compiled; one that does not compile is a warning.
    fn response_schema(&mut self, at: &Loc) -> Option<Arc<Schema>> {
        self.compiled(at)
            .map_err(|problem| self.warnings.push(format!("{problem}{UNCHECKED}")))
            .ok()
    }

    /// The plan for a JSON body whose schema is at `at` (see `spec::plan`). A subschema the
    /// plan leaves to the general validator is compiled (or shared) here, without adding a
    /// problem when it does not compile on its own: then there is simply no plan.
    pub(super) fn plan(&mut self, at: &Loc) -> Option<Arc<Plan>> {
        let docs = self.docs;
        plan::build(docs, at, &mut |at| self.compiled(at).ok()).map(Arc::new)
    }

    /// The compiled schema at `at`: shared by location, by text within a document, through
    /// chains of bare `$ref`s, else compiled now and remembered under its location and text.
    fn compiled(&mut self, at: &Loc) -> Result<Arc<Schema>, String> {
        let at = &self.referenced(at);
        if let Some(schema) = self.cache.get(at) {
            return Ok(schema.clone());
        }
        let text = self.text(at);
        if let Some(schema) = text.as_ref().and_then(|text| self.by_text.get(text)) {
            let schema = schema.clone();
            self.cache.insert(at.clone(), schema.clone());
            return Ok(schema);
        }
        let schema = Arc::new(self.compiler.compile(&at.uri, &at.pointer)?);
        self.cache.insert(at.clone(), schema.clone());
        if let Some(text) = text {
            self.by_text.insert(text, schema.clone());
        }
        Ok(schema)
    }

    /// The key under which a schema's compiled form can be shared: its document and its
    /// text. Identical text in one document validates identically — its `$ref`s resolve
    /// against the same base — unless an `$id` inside moves the base; those are not shared.
    fn text(&self, at: &Loc) -> Option<(String, String)> {
        let text = serde_json::to_string(self.docs.get(&at.uri, &at.pointer)?).ok()?;
        (!text.contains("\"$id\"")).then(|| (at.uri.clone(), text))
    }

    /// Where a schema that is nothing but a local `$ref` points, followed to the end of the
    /// chain: it validates exactly as its target does, so the operations that name one
    /// component (OpenAI's spec: 119 bodies, 99 components) share one compiled validator.
    fn referenced(&self, at: &Loc) -> Loc {
        let mut at = at.clone();
        // A bounded walk: a cycle of bare `$ref`s is refused when it compiles.
        for _ in 0..16 {
            let Some(Value::Object(schema)) = self.docs.get(&at.uri, &at.pointer) else {
                break;
            };
            let (1, Some(Value::String(reference))) = (schema.len(), schema.get("$ref")) else {
                break;
            };
            // Only a same-document pointer with no percent-escapes maps to a `Loc` as is.
            match reference.strip_prefix('#') {
                Some(pointer) if !pointer.contains('%') => at.pointer = pointer.to_owned(),
                _ => break,
            }
        }
        at
    }
}
