//! What a response schema declares, as a tree `responses.strip_undeclared` can prune by:
//! the members of each object (through `$ref`s, `properties`, `items` and `allOf`), or
//! "anything" wherever the schema leaves the shape open or ambiguous — `additionalProperties`
//! or `patternProperties` allowed, `anyOf`/`oneOf` alternatives, a recursive `$ref` — so
//! nothing a schema might allow is ever removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::raw::Loc;
use super::source::Documents;

pub type Members = HashMap<String, Arc<Declared>, foldhash::fast::RandomState>;

/// The declared shape of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// Anything goes here: nothing is removed.
    Open,
    /// An object: only these members are declared, each with its own shape. The names are
    /// the spec's, looked up once per member of every answer: foldhash, not SipHash (the
    /// table is fixed at load, so no input can grow a bucket).
    Object(Members),
    /// An array whose items have this shape.
    Items(Arc<Declared>),
}

impl Declared {
    /// The shape the schema at `at` declares.
    pub(super) fn of(docs: &Documents, at: &Loc) -> Declared {
        let mut walk = Walk {
            docs,
            shared: HashMap::new(),
            on_path: HashSet::new(),
        };
        match docs.get(&at.uri, &at.pointer) {
            Some(schema) => walk.shape(&at.uri, schema),
            None => Declared::Open,
        }
    }

    /// Removes from `value` the object members this shape does not declare; how many.
    pub fn strip(&self, value: &mut Value) -> usize {
        match (self, value) {
            (Declared::Object(members), Value::Object(object)) => {
                let mut removed = 0;
                object.retain(|name, member| match members.get(name) {
                    Some(shape) => {
                        removed += shape.strip(member);
                        true
                    }
                    None => {
                        removed += 1;
                        false
                    }
                });
                removed
            }
            (Declared::Items(item), Value::Array(items)) => {
                items.iter_mut().map(|value| item.strip(value)).sum()
            }
            _ => 0,
        }
    }
}

/// A `$ref` target: its document and pointer.
type Target = (String, String);

/// The walk over one schema: each `$ref` target's shape built once and shared (a component
/// used a thousand times is one tree), and a target met again on its own way down taken as
/// open — a recursive schema ends there instead of unfolding without bound.
struct Walk<'d> {
    docs: &'d Documents,
    shared: HashMap<Target, Arc<Declared>>,
    on_path: HashSet<Target>,
}

impl Walk<'_> {
    fn shape(&mut self, uri: &str, schema: &Value) -> Declared {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return Arc::unwrap_or_clone(self.target(uri, reference));
        }
        let ambiguous = [
            "anyOf",
            "oneOf",
            "patternProperties",
            "unevaluatedProperties",
            "if",
        ];
        if ambiguous.iter().any(|k| schema.get(*k).is_some()) {
            return Declared::Open;
        }
        if let Some(Value::Array(parts)) = schema.get("allOf") {
            return self.all_of(uri, parts);
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            let open = schema.get("additionalProperties");
            if open.is_some_and(|a| a != &Value::Bool(false)) {
                return Declared::Open;
            }
            let members = (properties.iter())
                .map(|(name, member)| (name.clone(), self.member(uri, member)))
                .collect();
            return Declared::Object(members);
        }
        match schema.get("items") {
            Some(items) if items.is_object() => Declared::Items(self.member(uri, items)),
            _ => Declared::Open,
        }
    }

    /// A subschema's shape, shared with every other use when it is a `$ref`.
    fn member(&mut self, uri: &str, schema: &Value) -> Arc<Declared> {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => self.target(uri, reference),
            None => Arc::new(self.shape(uri, schema)),
        }
    }

    /// The shape at a `$ref`'s target: built once, open when unresolvable or recursive.
    fn target(&mut self, uri: &str, reference: &str) -> Arc<Declared> {
        let Ok(target) = self.docs.locate(uri, reference) else {
            return Arc::new(Declared::Open);
        };
        if let Some(shape) = self.shared.get(&target) {
            return shape.clone();
        }
        if !self.on_path.insert(target.clone()) {
            return Arc::new(Declared::Open);
        }
        let docs = self.docs;
        let shape = match docs.get(&target.0, &target.1) {
            Some(schema) => Arc::new(self.shape(&target.0, schema)),
            None => Arc::new(Declared::Open),
        };
        self.on_path.remove(&target);
        self.shared.insert(target, shape.clone());
        shape
    }

    /// `allOf` of objects: the members any part declares; anything else is open.
    fn all_of(&mut self, uri: &str, parts: &[Value]) -> Declared {
        let mut members = Members::default();
        for part in parts {
            match self.shape(uri, part) {
                Declared::Object(more) => members.extend(more),
                _ => return Declared::Open,
            }
        }
        Declared::Object(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn declared(schema: Value) -> Declared {
        let docs = Documents {
            root: "urn:t".into(),
            docs: BTreeMap::from([(
                "urn:t".to_owned(),
                json!({"s": schema, "defs": {
                    "Item": {"properties": {"id": {}, "tags": {"items": {"properties": {"k": {}}}}}},
                    "Node": {"properties": {"left": {"$ref": "#/defs/Node"}, "right": {"$ref": "#/defs/Node"}}}
                }}),
            )]),
        };
        let at = Loc {
            uri: "urn:t".into(),
            pointer: "/s".into(),
        };
        Declared::of(&docs, &at)
    }

    #[test]
    fn undeclared_members_are_removed_at_every_depth() {
        let shape =
            declared(json!({"properties": {"items": {"items": {"$ref": "#/defs/Item"}}, "n": {}}}));
        let mut value = json!({"n": 1, "secret": "x", "items": [{"id": 1, "internal": 2, "tags": [{"k": 1, "z": 0}]}]});
        assert_eq!(shape.strip(&mut value), 3);
        assert_eq!(
            value,
            json!({"n": 1, "items": [{"id": 1, "tags": [{"k": 1}]}]})
        );
    }

    /// A schema that refers to itself twice unfolds to 2^depth nodes if walked naively;
    /// shared and cut at the cycle, it is a handful, and its first level still strips.
    #[test]
    fn a_recursive_schema_is_cut_at_its_cycle() {
        let shape = declared(json!({"$ref": "#/defs/Node"}));
        let mut value = json!({"left": {"x": 1}, "right": null, "extra": 1});
        assert_eq!(shape.strip(&mut value), 1);
        assert_eq!(value, json!({"left": {"x": 1}, "right": null}));
    }

    #[test]
    fn an_open_or_ambiguous_schema_removes_nothing() {
        for open in [
            json!({"properties": {"a": {}}, "additionalProperties": true}),
            json!({"anyOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}),
            json!({}),
        ] {
            let mut value = json!({"a": 1, "b": 2});
            assert_eq!(declared(open.clone()).strip(&mut value), 0, "{open}");
        }
        let merged =
            declared(json!({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}));
        let mut value = json!({"a": 1, "b": 2, "c": 3});
        assert_eq!(merged.strip(&mut value), 1);
    }
}
