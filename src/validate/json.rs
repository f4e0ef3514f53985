//! Strict JSON for request bodies: only documents every parser reads the same way pass.
//! serde_json already refuses invalid UTF-8, trailing data, `NaN`/`Infinity`, lone
//! surrogates and floats out of range; this adds what it lets through — duplicate keys
//! (Python keeps the last, others the first), integers beyond 64 bits (Python reads them
//! exactly, serde_json as a rounded float), a byte-order mark, and nesting deeper than
//! `limits.max_json_depth` (checked before parsing, so a deep document costs no recursion).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::reject::FieldError;
use crate::spec::compile::MAX_ERRORS;

/// What every JSON body is held to besides its schema (`limits.max_json_depth`,
/// `max_string_bytes`, `max_array_items`, `max_object_members`).
#[derive(Debug, Clone)]
pub struct JsonLimits {
    pub max_depth: usize,
    pub max_string_bytes: usize,
    pub max_array_items: usize,
    pub max_object_members: usize,
}

impl JsonLimits {
    /// The guard rails `limits` sets.
    pub fn of(limits: &crate::config::Limits) -> JsonLimits {
        JsonLimits {
            max_depth: limits.max_json_depth,
            max_string_bytes: limits.max_string_bytes,
            max_array_items: limits.max_array_items,
            max_object_members: limits.max_object_members,
        }
    }
}

/// The guard rails for what no schema bounds: every string and member name, array and
/// object of `value` within its limit. Failures are reported like schema failures (the
/// body's pointer, capped at `MAX_ERRORS`), so shadow mode counts them the same way.
pub fn guard(value: &Value, limits: &JsonLimits, errors: &mut Vec<FieldError>) {
    guard_at(value, limits, None, errors);
}

/// Where the walk is: a chain on the stack, so the hot path builds no pointer text; one is
/// written only for a failure.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

enum Segment<'a> {
    Index(usize),
    Name(&'a str),
}

/// The JSON pointer of `path` (`""` for the document itself).
fn pointer(path: Option<&Path<'_>>) -> String {
    let mut segments = Vec::new();
    let mut at = path;
    while let Some(step) = at {
        segments.push(match step.segment {
            Segment::Index(index) => index.to_string(),
            Segment::Name(name) => crate::spec::normalize::escape(name),
        });
        at = step.parent;
    }
    segments
        .iter()
        .rev()
        .map(|segment| format!("/{segment}"))
        .collect()
}

fn guard_at(
    value: &Value,
    limits: &JsonLimits,
    path: Option<&Path<'_>>,
    errors: &mut Vec<FieldError>,
) {
    if errors.len() >= MAX_ERRORS {
        return;
    }
    match value {
        Value::String(text) if text.len() > limits.max_string_bytes => fail(
            errors,
            path,
            format!(
                "the string is {} bytes, over limits.max_string_bytes ({})",
                text.len(),
                limits.max_string_bytes
            ),
        ),
        Value::Array(items) => {
            if items.len() > limits.max_array_items {
                fail(
                    errors,
                    path,
                    format!(
                        "the array has {} items, over limits.max_array_items ({})",
                        items.len(),
                        limits.max_array_items
                    ),
                );
                return;
            }
            for (index, item) in items.iter().enumerate() {
                let step = Path {
                    parent: path,
                    segment: Segment::Index(index),
                };
                guard_at(item, limits, Some(&step), errors);
            }
        }
        Value::Object(members) => {
            if members.len() > limits.max_object_members {
                fail(
                    errors,
                    path,
                    format!(
                        "the object has {} members, over limits.max_object_members ({})",
                        members.len(),
                        limits.max_object_members
                    ),
                );
                return;
            }
            for (name, member) in members {
                if name.len() > limits.max_string_bytes {
                    // The object's pointer: the name itself is the long string.
                    fail(
                        errors,
                        path,
                        format!(
                            "a member name is {} bytes, over limits.max_string_bytes ({})",
                            name.len(),
                            limits.max_string_bytes
                        ),
                    );
                    continue;
                }
                let step = Path {
                    parent: path,
                    segment: Segment::Name(name),
                };
                guard_at(member, limits, Some(&step), errors);
            }
        }
        _ => {}
    }
}

fn fail(errors: &mut Vec<FieldError>, path: Option<&Path<'_>>, message: String) {
    if errors.len() < MAX_ERRORS {
        errors.push(FieldError {
            location: "body",
            pointer: pointer(path),
            message,
        });
    }
}

/// Parses `bytes` strictly; the error says what is wrong without echoing the input.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err("the body starts with a byte-order mark".to_owned());
    }
    scan(bytes, max_depth)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut deserializer).map_err(describe)?;
    deserializer.end().map_err(describe)?;
    Ok(value)
}

fn describe(error: serde_json::Error) -> String {
    // serde_json's messages name the problem and position, never the input text.
    error.to_string()
}

/// One pass over the bytes outside strings: nesting depth and integer literal ranges.
fn scan(bytes: &[u8], max_depth: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(format!("the JSON is nested deeper than {max_depth} levels"));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                let mut integer = true;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'0'..=b'9' | b'.' | b'e' | b'E')
                {
                    integer &= !matches!(bytes[i], b'.' | b'e' | b'E');
                    i += 1;
                }
                if integer {
                    let literal = std::str::from_utf8(&bytes[start..i]).unwrap_or_default();
                    if literal.parse::<i64>().is_err()
                        && literal.parse::<u64>().is_err()
                        && !literal.is_empty()
                        && literal != "-"
                    {
                        return Err(format!(
                            "an integer at byte {start} does not fit in 64 bits"
                        ));
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Builds a `Value` like serde_json does, refusing duplicate object keys.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Strict)?;
            match object.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    let key = slot.key();
                    let mut shown: String = key.chars().take(64).collect();
                    if shown.len() < key.len() {
                        shown.push('…');
                    }
                    return Err(de::Error::custom(format!("duplicate key `{shown}`")));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guard_rails_bound_strings_arrays_and_objects_with_pointers() {
        let limits = JsonLimits {
            max_depth: 8,
            max_string_bytes: 4,
            max_array_items: 3,
            max_object_members: 2,
        };
        let mut errors = Vec::new();
        guard(
            &json!({"a/b": ["ok", "toolong"], "c": [1, 2, 3]}),
            &limits,
            &mut errors,
        );
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/a~1b/1"], "{errors:?}");
        assert!(
            !errors[0].message.contains("toolong"),
            "never echoes the value"
        );
        for (value, pointer) in [
            (json!([1, 2, 3, 4]), ""),
            (json!({"x": {"a": 1, "b": 2, "c": 3}}), "/x"),
            (json!({"longname": 1}), ""),
        ] {
            let mut errors = Vec::new();
            guard(&value, &limits, &mut errors);
            assert_eq!(errors.len(), 1, "{value}");
            assert_eq!(errors[0].pointer, pointer, "{value}");
        }
        let mut errors = Vec::new();
        guard(&json!({"a": "abcd", "b": [1, 2, 3]}), &limits, &mut errors);
        assert!(errors.is_empty(), "limits are inclusive: {errors:?}");
    }

    #[test]
    fn ordinary_json_parses() {
        assert_eq!(
            parse(
                br#" {"a": [1, -2, 3.5e2, "x\"]", true, null], "b": {}} "#,
                8
            )
            .unwrap(),
            json!({"a": [1, -2, 350.0, "x\"]", true, null], "b": {}})
        );
        assert_eq!(parse(b"18446744073709551615", 8).unwrap(), json!(u64::MAX));
        assert_eq!(parse(b"-9223372036854775808", 8).unwrap(), json!(i64::MIN));
    }

    /// Each of these could be read differently by the model's parser.
    #[test]
    fn documents_parsers_disagree_on_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"a": 1, "a": 2}"#, "duplicate key"),
            (br#"{"o": {"k": 1, "k": 1}}"#, "duplicate key"),
            (b"{} {}", "trailing"),
            (b"[1] x", "trailing"),
            (b"\xEF\xBB\xBF{}", "byte-order mark"),
            (b"[NaN]", "expected"),
            (b"[Infinity]", "expected"),
            (b"[-Infinity]", "invalid number"),
            (br#"["\ud800"]"#, "escape"),
            (br#"["\udc00x"]"#, "escape"),
            (b"[1e400]", "out of range"),
            (b"[18446744073709551616]", "64 bits"),
            (b"[-9223372036854775809]", "64 bits"),
            (b"\"\xff\"", "unicode"),
            (b"[[[[1]]]]", "nested deeper"),
            (b"", "EOF"),
        ];
        for (input, expected) in cases {
            let error = parse(input, 3).expect_err(&String::from_utf8_lossy(input));
            assert!(
                error.to_lowercase().contains(&expected.to_lowercase()),
                "{:?}: {error}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn depth_is_counted_outside_strings_only() {
        assert!(parse(br#"{"a": "[[[[[[[["}"#, 2).is_ok());
        assert!(parse(b"[[1]]", 2).is_ok());
    }

    #[test]
    fn a_duplicate_key_error_does_not_echo_a_huge_key() {
        let key = "k".repeat(10_000);
        let input = format!(r#"{{"{key}": 1, "{key}": 2}}"#);
        let error = parse(input.as_bytes(), 8).unwrap_err();
        assert!(error.len() < 200, "{error}");
    }
}
