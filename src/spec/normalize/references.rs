//! References as the compiler can follow them: `$ref` targets queued for normalising, and
//! the dynamic references real specs use (`$recursiveRef`, `$dynamicRef`) made static.

use serde_json::{Map, Value};

use super::{At, Normalizer, escape};

impl Normalizer<'_> {
    /// Queues `$ref` targets and turns the dynamic references real specs use into static
    /// ones (the registry does not index anchors inside an OpenAPI document).
    pub(super) fn references(
        &mut self,
        map: &mut Map<String, Value>,
        at: &At<'_>,
        anchor: Option<&str>,
    ) {
        if let Some(Value::String(reference)) = map.remove("$recursiveRef") {
            self.recursive_ref(map, at, &reference, anchor);
        }
        if let Some(Value::String(reference)) = map.remove("$dynamicRef") {
            self.dynamic_ref(map, at, &reference);
        }
        if let Some(Value::String(reference)) = map.get("$ref") {
            match self.docs.locate(at.uri, reference) {
                Ok(target) => self.queue.push(target),
                Err(message) => self.problem(at, &message),
            }
        }
    }

    /// `$recursiveRef: "#"` → a `$ref` to the enclosing `$recursiveAnchor: true` schema.
    fn recursive_ref(
        &mut self,
        map: &mut Map<String, Value>,
        at: &At<'_>,
        reference: &str,
        anchor: Option<&str>,
    ) {
        match (reference, anchor) {
            ("#", Some(anchor)) => {
                map.insert("$ref".into(), Value::String(format!("#{anchor}")));
            }
            _ => self.problem(
                at,
                "`$recursiveRef` without an enclosing `$recursiveAnchor: true` schema",
            ),
        }
    }

    /// `$dynamicRef: "#name"` → a `$ref` to the one schema declaring `$dynamicAnchor: name`.
    fn dynamic_ref(&mut self, map: &mut Map<String, Value>, at: &At<'_>, reference: &str) {
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
}
