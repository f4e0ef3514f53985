//! What a response schema declares, as a tree `responses.strip_undeclared` can prune by:
//! the members of each object (through `$ref`s, `properties`, `items` and `allOf`), or
//! "anything" wherever the schema leaves the shape open or ambiguous — `additionalProperties`
//! or `patternProperties` allowed, `anyOf`/`oneOf` alternatives, a `$ref` cycle — so nothing
//! a schema might allow is ever removed.

use std::collections::HashMap;

use serde_json::Value;

use super::raw::Loc;
use super::source::Documents;

/// The declared shape of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// Anything goes here: nothing is removed.
    Open,
    /// An object: only these members are declared, each with its own shape.
    Object(HashMap<String, Declared>),
    /// An array whose items have this shape.
    Items(Box<Declared>),
}

/// How deep `$ref`s are followed before a shape is taken as open (a recursive schema).
const MAX_DEPTH: usize = 32;

impl Declared {
    /// The shape the schema at `at` declares.
    pub(super) fn of(docs: &Documents, at: &Loc) -> Declared {
        match docs.get(&at.uri, &at.pointer) {
            Some(schema) => shape(docs, &at.uri, schema, 0),
            None => Declared::Open,
        }
    }

    /// Removes from `value` the object members this shape does not declare; how many.
    pub fn strip(&self, value: &mut Value) -> usize {
        match (self, value) {
            (Declared::Object(members), Value::Object(object)) => {
                let before = object.len();
                object.retain(|name, _| members.contains_key(name));
                let mut removed = before - object.len();
                for (name, member) in object.iter_mut() {
                    if let Some(shape) = members.get(name) {
                        removed += shape.strip(member);
                    }
                }
                removed
            }
            (Declared::Items(item), Value::Array(items)) => {
                items.iter_mut().map(|value| item.strip(value)).sum()
            }
            _ => 0,
        }
    }
}

fn shape(docs: &Documents, uri: &str, schema: &Value, depth: usize) -> Declared {
    if depth > MAX_DEPTH {
        return Declared::Open;
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return match docs.locate(uri, reference) {
            Ok((uri, pointer)) => match docs.get(&uri, &pointer) {
                Some(target) => shape(docs, &uri, target, depth + 1),
                None => Declared::Open,
            },
            Err(_) => Declared::Open,
        };
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
        return all_of(docs, uri, parts, depth);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        if schema
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            return Declared::Open;
        }
        let members = (properties.iter())
            .map(|(name, member)| (name.clone(), shape(docs, uri, member, depth + 1)))
            .collect();
        return Declared::Object(members);
    }
    match schema.get("items") {
        Some(items) if items.is_object() => {
            Declared::Items(Box::new(shape(docs, uri, items, depth + 1)))
        }
        _ => Declared::Open,
    }
}

/// `allOf` of objects: the members any part declares; anything else is open.
fn all_of(docs: &Documents, uri: &str, parts: &[Value], depth: usize) -> Declared {
    let mut members = HashMap::new();
    for part in parts {
        match shape(docs, uri, part, depth + 1) {
            Declared::Object(more) => members.extend(more),
            _ => return Declared::Open,
        }
    }
    Declared::Object(members)
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
                json!({"s": schema, "defs": {"Item": {"properties": {"id": {}, "tags": {"items": {"properties": {"k": {}}}}}}}}),
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
