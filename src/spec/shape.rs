//! What JSON type a parameter's text should become before its schema sees it. A query
//! string carries only text; `?limit=5` must reach an `integer` schema as the number 5, the
//! way FastAPI and every other server coerces it. Derived once at load from the (normalised)
//! schema, following `$ref`s and unions.

use serde_json::{Map, Value};

use super::source::Documents;

/// A set of JSON types, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Types(u8);

impl Types {
    pub const INTEGER: Types = Types(1);
    pub const NUMBER: Types = Types(2);
    pub const BOOLEAN: Types = Types(4);
    pub const STRING: Types = Types(8);
    pub const ARRAY: Types = Types(16);
    pub const OBJECT: Types = Types(32);
    pub const NULL: Types = Types(64);
    pub const ANY: Types = Types(127);

    pub fn contains(self, other: Types) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Types) -> Types {
        Types(self.0 | other.0)
    }

    pub fn intersection(self, other: Types) -> Types {
        Types(self.0 & other.0)
    }

    /// The type a JSON Schema `type` name says; `None` for a name that is not one.
    pub fn named(name: &str) -> Option<Types> {
        Some(Types::of_name(name)).filter(|types| *types != Types::default())
    }

    /// True when some type is in both.
    pub fn overlaps(self, other: Types) -> bool {
        self.0 & other.0 != 0
    }

    fn of_name(name: &str) -> Types {
        match name {
            "integer" => Types::INTEGER,
            "number" => Types::NUMBER,
            "boolean" => Types::BOOLEAN,
            "string" => Types::STRING,
            "array" => Types::ARRAY,
            "object" => Types::OBJECT,
            "null" => Types::NULL,
            _ => Types::default(),
        }
    }

    fn of_value(value: &Value) -> Types {
        match value {
            Value::Null => Types::NULL,
            Value::Bool(_) => Types::BOOLEAN,
            Value::Number(n) if n.is_f64() => Types::NUMBER,
            Value::Number(_) => Types::INTEGER,
            Value::String(_) => Types::STRING,
            Value::Array(_) => Types::ARRAY,
            Value::Object(_) => Types::OBJECT,
        }
    }
}

/// The union of the types.
impl FromIterator<Types> for Types {
    fn from_iter<I: IntoIterator<Item = Types>>(types: I) -> Types {
        types.into_iter().fold(Types::default(), Types::union)
    }
}

/// How a parameter value is laid out, with the types of its parts.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    Scalar(Types),
    Array(Types),
    Object(Vec<(String, Types)>),
}

/// The shape of the schema at `uri` + `schema` (already resolved to a value).
pub fn shape_of(docs: &Documents, uri: &str, schema: &Value) -> Shape {
    let types = types_of(docs, uri, schema, 0);
    if types == Types::ARRAY || (types.contains(Types::ARRAY) && !types.contains(Types::STRING)) {
        let items = member(docs, uri, schema, "items", 0)
            .map(|(uri, items)| types_of(docs, &uri, items, 0))
            .unwrap_or(Types::ANY);
        return Shape::Array(items);
    }
    if types == Types::OBJECT {
        return Shape::Object(properties(docs, uri, schema));
    }
    Shape::Scalar(types)
}

/// Each property an object schema declares, with its types.
fn properties(docs: &Documents, uri: &str, schema: &Value) -> Vec<(String, Types)> {
    let Some((uri, Value::Object(map))) = member(docs, uri, schema, "properties", 0) else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, property)| (name.clone(), types_of(docs, &uri, property, 0)))
        .collect()
}

/// The union of types a schema admits (ANY when it does not say).
pub fn types_of(docs: &Documents, uri: &str, schema: &Value, depth: usize) -> Types {
    if depth > 16 {
        return Types::ANY;
    }
    let Some((uri, Value::Object(map))) = resolve(docs, uri, schema) else {
        return Types::ANY;
    };
    stated(map).unwrap_or_else(|| composed(docs, &uri, map, depth))
}

/// The types a schema states outright, with `type`, `enum` or `const`.
fn stated(map: &Map<String, Value>) -> Option<Types> {
    if let Some(declared) = map.get("type") {
        return Some(match declared {
            Value::String(name) => Types::of_name(name),
            Value::Array(names) => names
                .iter()
                .filter_map(Value::as_str)
                .map(Types::of_name)
                .collect(),
            _ => Types::ANY,
        });
    }
    if let Some(Value::Array(options)) = map.get("enum") {
        return Some(options.iter().map(Types::of_value).collect());
    }
    map.get("const").map(Types::of_value)
}

/// The types a schema admits through its branches: the union of an `anyOf` or `oneOf`,
/// else what an `allOf` says.
fn composed(docs: &Documents, uri: &str, map: &Map<String, Value>, depth: usize) -> Types {
    let branch = |branch: &Value| types_of(docs, uri, branch, depth + 1);
    for union in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = map.get(union) {
            return branches.iter().map(branch).collect();
        }
    }
    if let Some(Value::Array(all)) = map.get("allOf") {
        // Every branch applies; the first that says something decides the coercion.
        return all
            .iter()
            .map(branch)
            .find(|types| *types != Types::ANY)
            .unwrap_or(Types::ANY);
    }
    Types::ANY
}

/// A keyword's value, looking through `$ref` and `allOf`/`anyOf`/`oneOf` branches.
fn member<'a>(
    docs: &'a Documents,
    uri: &str,
    schema: &'a Value,
    key: &str,
    depth: usize,
) -> Option<(String, &'a Value)> {
    if depth > 16 {
        return None;
    }
    let (uri, schema) = resolve(docs, uri, schema)?;
    if let Some(value) = schema.get(key) {
        return Some((uri, value));
    }
    ["allOf", "anyOf", "oneOf"]
        .iter()
        .filter_map(|union| schema.get(union)?.as_array())
        .flatten()
        .find_map(|branch| member(docs, &uri, branch, key, depth + 1))
}

/// Follows `$ref`s to the schema they name.
fn resolve<'a>(docs: &'a Documents, uri: &str, schema: &'a Value) -> Option<(String, &'a Value)> {
    let mut uri = uri.to_owned();
    let mut schema = schema;
    for _ in 0..32 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let (target_uri, pointer) = docs.locate(&uri, reference).ok()?;
                schema = docs.get(&target_uri, &pointer)?;
                uri = target_uri;
            }
            None => return Some((uri, schema)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn docs(value: Value) -> Documents {
        Documents {
            root: "urn:t".into(),
            docs: BTreeMap::from([("urn:t".to_owned(), value)]),
        }
    }

    #[test]
    fn shapes_follow_refs_and_unions() {
        let d = docs(json!({"Limit": {"type": "integer"}}));
        assert_eq!(
            shape_of(&d, "urn:t", &json!({"$ref": "#/Limit"})),
            Shape::Scalar(Types::INTEGER)
        );
        let optional = json!({"anyOf": [{"type": "integer"}, {"type": "null"}]});
        assert_eq!(
            shape_of(&d, "urn:t", &optional),
            Shape::Scalar(Types(Types::INTEGER.0 | Types::NULL.0))
        );
        let list = json!({"type": "array", "items": {"type": "number"}});
        assert_eq!(shape_of(&d, "urn:t", &list), Shape::Array(Types::NUMBER));
        let object = json!({"type": "object", "properties": {"a": {"type": "boolean"}}});
        assert_eq!(
            shape_of(&d, "urn:t", &object),
            Shape::Object(vec![("a".into(), Types::BOOLEAN)])
        );
        assert_eq!(
            shape_of(&d, "urn:t", &json!({"enum": ["a", 1]})),
            Shape::Scalar(Types(Types::STRING.0 | Types::INTEGER.0))
        );
        assert_eq!(shape_of(&d, "urn:t", &json!({})), Shape::Scalar(Types::ANY));
    }
}
