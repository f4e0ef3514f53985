//! One parameter's text as the JSON value its schema expects: split by its style into
//! items or properties, each coerced to the type the schema gives it.

use serde_json::{Map, Value};

use crate::spec::Param;
use crate::spec::shape::{Shape, Types};

/// One textual value → JSON, by the parameter's shape (`a,b,c` for arrays; `k,v,k,v` or
/// `k=v,k=v` for objects).
pub(super) fn delimited(param: &Param, text: &str, separator: char) -> Option<Value> {
    if param.json {
        // A JSON-content parameter that is not JSON gets a string, which its schema refuses.
        return Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())));
    }
    Some(match &param.shape {
        Shape::Scalar(types) => coerce(text, *types),
        Shape::Array(items) => array(text, separator, *items),
        Shape::Object(properties) if param.explode => exploded_pairs(text, separator, properties),
        Shape::Object(properties) => flat_pairs(text, separator, properties),
    })
}

/// `a,b,c`; an empty text is an empty array.
fn array(text: &str, separator: char, items: Types) -> Value {
    Value::Array(if text.is_empty() {
        Vec::new()
    } else {
        text.split(separator)
            .map(|part| coerce(part, items))
            .collect()
    })
}

/// `k=v,k=v`.
fn exploded_pairs(text: &str, separator: char, properties: &[(String, Types)]) -> Value {
    let mut object = Map::new();
    for pair in text.split(separator) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let types = types_of(properties, key).unwrap_or(Types::ANY);
        object.insert(key.to_owned(), coerce(value, types));
    }
    Value::Object(object)
}

/// `k,v,k,v`.
fn flat_pairs(text: &str, separator: char, properties: &[(String, Types)]) -> Value {
    let mut object = Map::new();
    let parts: Vec<&str> = text.split(separator).collect();
    for chunk in parts.chunks(2) {
        let key = chunk[0];
        let value = chunk.get(1).copied().unwrap_or("");
        let types = types_of(properties, key).unwrap_or(Types::ANY);
        object.insert(key.to_owned(), coerce(value, types));
    }
    Value::Object(object)
}

/// The types of property `key` of an object shape (any, for another shape or property).
pub(super) fn property_types(shape: &Shape, key: &str) -> Types {
    match shape {
        Shape::Object(properties) => types_of(properties, key).unwrap_or(Types::ANY),
        _ => Types::ANY,
    }
}

/// The types of property `key`, if the schema declares it.
pub(in crate::validate) fn types_of(properties: &[(String, Types)], key: &str) -> Option<Types> {
    properties
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, types)| *types)
}

/// Text → the JSON value its schema expects, when the text reads as that type; otherwise
/// the text stays a string and the schema reports the mismatch.
pub fn coerce(text: &str, types: Types) -> Value {
    number(text, types)
        .or_else(|| boolean(text, types))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

/// The text as a number, when the schema admits one and the text reads as one: an integer
/// exactly, else (for `number`) a finite float not spelled with letters (`inf`, `NaN`).
fn number(text: &str, types: Types) -> Option<Value> {
    if types.contains(Types::INTEGER) || types.contains(Types::NUMBER) {
        if let Ok(integer) = text.parse::<i64>() {
            return Some(Value::from(integer));
        }
        if let Ok(integer) = text.parse::<u64>() {
            return Some(Value::from(integer));
        }
    }
    if !types.contains(Types::NUMBER) || text.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let number = text.parse::<f64>().ok()?;
    number.is_finite().then(|| Value::from(number))
}

/// `true` or `false`, when the schema says boolean (and not just anything).
fn boolean(text: &str, types: Types) -> Option<Value> {
    if !types.contains(Types::BOOLEAN) || types == Types::ANY {
        return None;
    }
    match text {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_coerced_to_the_schema_type() {
        assert_eq!(coerce("5", Types::INTEGER), json!(5));
        assert_eq!(coerce("5", Types::NUMBER), json!(5));
        assert_eq!(coerce("2.5", Types::NUMBER), json!(2.5));
        assert_eq!(coerce("2.5", Types::INTEGER), json!("2.5"));
        assert_eq!(coerce("inf", Types::NUMBER), json!("inf"));
        assert_eq!(coerce("NaN", Types::NUMBER), json!("NaN"));
        assert_eq!(coerce("true", Types::BOOLEAN), json!(true));
        assert_eq!(coerce("yes", Types::BOOLEAN), json!("yes"));
        assert_eq!(coerce("5", Types::STRING), json!("5"));
        assert_eq!(coerce("5", Types::ANY), json!(5));
    }
}
