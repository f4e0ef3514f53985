//! Stage 6, parameters: path, query, header and cookie values parsed by their `style` and
//! `explode`, coerced from text to the types their schema expects, then validated. A
//! non-array query parameter given twice is refused (Starlette takes the last value, a
//! naive validator the first).

use std::borrow::Cow;

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::reject::FieldError;
use crate::spec::shape::{Shape, Types};
use crate::spec::{Operation, Param, Style};

/// Headers OpenAPI says are never described as parameters.
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// Checks every parameter of `operation`, appending failures to `errors`.
pub fn check(
    operation: &Operation,
    path_values: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    reject_unknown_query: bool,
    errors: &mut Vec<FieldError>,
) {
    for (param, text) in operation.params.path.iter().zip(path_values) {
        let value = delimited(param, text, ',');
        validate(param, value, "path", errors);
    }
    check_query(
        &operation.params.query,
        query.unwrap_or(""),
        reject_unknown_query,
        errors,
    );
    for param in &operation.params.header {
        if IGNORED_HEADERS.contains(&param.name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let values: Vec<&str> = headers
            .get_all(param.name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        single(param, &values, "header", errors);
    }
    if !operation.params.cookie.is_empty() {
        let cookies = cookies(headers);
        for param in &operation.params.cookie {
            let values: Vec<&str> = cookies
                .iter()
                .filter(|(name, _)| *name == param.name)
                .map(|(_, value)| *value)
                .collect();
            single(param, &values, "cookie", errors);
        }
    }
}

/// A header or cookie parameter: present at most once, comma-delimited when an array.
fn single(param: &Param, values: &[&str], location: &'static str, errors: &mut Vec<FieldError>) {
    match values {
        [] => missing(param, location, errors),
        [one] => validate(param, delimited(param, one, ','), location, errors),
        _ => repeated(param, location, errors),
    }
}

fn check_query(params: &[Param], query: &str, reject_unknown: bool, errors: &mut Vec<FieldError>) {
    if params.is_empty() && !reject_unknown {
        return;
    }
    let pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> =
        form_urlencoded::parse(query.as_bytes()).collect();
    let mut used = vec![false; pairs.len()];
    for param in params {
        let value = match (param.style, &param.shape) {
            (Style::DeepObject, shape) => deep_object(param, shape, &pairs, &mut used),
            (Style::Form, Shape::Object(properties)) if param.explode => {
                exploded_object(properties, &pairs, &mut used)
            }
            _ => {
                let found: Vec<usize> = (0..pairs.len())
                    .filter(|&i| pairs[i].0 == param.name)
                    .collect();
                for &i in &found {
                    used[i] = true;
                }
                match (found.as_slice(), &param.shape) {
                    ([], _) => None,
                    (many, Shape::Array(items)) if param.explode && param.style == Style::Form => {
                        Some(Value::Array(
                            many.iter().map(|&i| coerce(&pairs[i].1, *items)).collect(),
                        ))
                    }
                    ([one], _) => {
                        let separator = match param.style {
                            Style::SpaceDelimited => ' ',
                            Style::PipeDelimited => '|',
                            _ => ',',
                        };
                        delimited(param, &pairs[*one].1, separator)
                    }
                    _ => {
                        repeated(param, "query", errors);
                        continue;
                    }
                }
            }
        };
        match value {
            Some(value) => validate(param, Some(value), "query", errors),
            None => missing(param, "query", errors),
        }
    }
    if reject_unknown {
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !used[i] {
                errors.push(FieldError {
                    location: "query",
                    pointer: format!("/{}", pointer_segment(name)),
                    message: "this query parameter is not declared by the operation".to_owned(),
                });
            }
        }
    }
}

/// `?filter[kind]=a&filter[limit]=5` → `{"kind": "a", "limit": 5}`.
fn deep_object(
    param: &Param,
    shape: &Shape,
    pairs: &[(Cow<'_, str>, Cow<'_, str>)],
    used: &mut [bool],
) -> Option<Value> {
    let mut object = Map::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        let Some(key) = name
            .strip_prefix(param.name.as_str())
            .and_then(|rest| rest.strip_prefix('['))
            .and_then(|rest| rest.strip_suffix(']'))
        else {
            continue;
        };
        used[i] = true;
        object.insert(key.to_owned(), coerce(value, property_types(shape, key)));
    }
    (!object.is_empty()).then_some(Value::Object(object))
}

/// An exploded form object: each property is its own query parameter.
fn exploded_object(
    properties: &[(String, Types)],
    pairs: &[(Cow<'_, str>, Cow<'_, str>)],
    used: &mut [bool],
) -> Option<Value> {
    let mut object = Map::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if let Some((_, types)) = properties.iter().find(|(p, _)| p == name) {
            used[i] = true;
            object.insert(name.to_string(), coerce(value, *types));
        }
    }
    (!object.is_empty()).then_some(Value::Object(object))
}

fn property_types(shape: &Shape, key: &str) -> Types {
    match shape {
        Shape::Object(properties) => properties
            .iter()
            .find(|(name, _)| name == key)
            .map_or(Types::ANY, |(_, types)| *types),
        _ => Types::ANY,
    }
}

/// One textual value → JSON, by the parameter's shape (`a,b,c` for arrays; `k,v,k,v` or
/// `k=v,k=v` for objects).
fn delimited(param: &Param, text: &str, separator: char) -> Option<Value> {
    if param.json {
        // A JSON-content parameter that is not JSON gets a string, which its schema refuses.
        return Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())));
    }
    Some(match &param.shape {
        Shape::Scalar(types) => coerce(text, *types),
        Shape::Array(items) => Value::Array(if text.is_empty() {
            Vec::new()
        } else {
            text.split(separator)
                .map(|part| coerce(part, *items))
                .collect()
        }),
        Shape::Object(properties) => {
            let mut object = Map::new();
            if param.explode {
                for pair in text.split(separator) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    object.insert(
                        key.to_owned(),
                        coerce(value, property_types(&param.shape, key)),
                    );
                }
            } else {
                let parts: Vec<&str> = text.split(separator).collect();
                for chunk in parts.chunks(2) {
                    let key = chunk[0];
                    let value = chunk.get(1).copied().unwrap_or("");
                    let types = properties
                        .iter()
                        .find(|(name, _)| name == key)
                        .map_or(Types::ANY, |(_, t)| *t);
                    object.insert(key.to_owned(), coerce(value, types));
                }
            }
            Value::Object(object)
        }
    })
}

/// Text → the JSON value its schema expects, when the text reads as that type; otherwise
/// the text stays a string and the schema reports the mismatch.
pub fn coerce(text: &str, types: Types) -> Value {
    if types.contains(Types::INTEGER) || types.contains(Types::NUMBER) {
        if let Ok(integer) = text.parse::<i64>() {
            return Value::from(integer);
        }
        if let Ok(integer) = text.parse::<u64>() {
            return Value::from(integer);
        }
    }
    if types.contains(Types::NUMBER)
        && let Ok(number) = text.parse::<f64>()
        && number.is_finite()
        && !text.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Value::from(number);
    }
    if types.contains(Types::BOOLEAN) && types != Types::ANY {
        match text {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    Value::String(text.to_owned())
}

fn validate(
    param: &Param,
    value: Option<Value>,
    location: &'static str,
    errors: &mut Vec<FieldError>,
) {
    let (Some(value), Some(schema)) = (value, &param.schema) else {
        return;
    };
    schema.check(
        &value,
        location,
        &format!("/{}", pointer_segment(&param.name)),
        errors,
    );
}

fn missing(param: &Param, location: &'static str, errors: &mut Vec<FieldError>) {
    if param.required {
        errors.push(FieldError {
            location,
            pointer: format!("/{}", pointer_segment(&param.name)),
            message: format!(
                "the required {location} parameter `{}` is missing",
                param.name
            ),
        });
    }
}

fn repeated(param: &Param, location: &'static str, errors: &mut Vec<FieldError>) {
    errors.push(FieldError {
        location,
        pointer: format!("/{}", pointer_segment(&param.name)),
        message: format!(
            "the {location} parameter `{}` is given more than once but is not an exploded array",
            param.name
        ),
    });
}

/// `Cookie: a=1; b=2` → pairs.
pub fn cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(cookie_pair)
        .collect()
}

/// One `name=value` of a `Cookie` header, trimmed; `None` for a piece without `=`. The one
/// reading of a cookie: parameters, API keys and their stripping all use it.
pub fn cookie_pair(pair: &str) -> Option<(&str, &str)> {
    let (name, value) = pair.trim().split_once('=')?;
    Some((name.trim(), value.trim()))
}

fn pointer_segment(name: &str) -> String {
    let mut shown: String = name.chars().take(64).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    crate::spec::normalize::escape(&shown)
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
