//! Strict JSON for request bodies: only documents every parser reads the same way pass.
//! serde_json already refuses invalid UTF-8, trailing data, `NaN`/`Infinity`, lone
//! surrogates and floats out of range; this adds what it lets through — duplicate keys
//! (Python keeps the last, others the first), integers beyond 64 bits (Python reads them
//! exactly, serde_json as a rounded float), a byte-order mark, and nesting deeper than
//! `limits.max_json_depth` (checked before parsing, so a deep document costs no recursion).

pub(crate) mod fuzz;
mod guard;
mod strict;
mod walk;

use serde::de::DeserializeSeed;
use serde_json::Value;

pub use self::guard::guard;
use self::strict::Strict;
pub use self::walk::certainly_valid;

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
            b'"' => i = past_string(bytes, i),
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
            b'-' | b'0'..=b'9' => i = past_number(bytes, i)?,
            _ => i += 1,
        }
    }
    Ok(())
}

/// Where the string opening at `quote` ends (past its closing quote).
fn past_string(bytes: &[u8], quote: usize) -> usize {
    let mut i = quote + 1;
    while i < bytes.len() && bytes[i] != b'"' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// Where the number starting at `start` ends; an error when it is an integer that does not
/// fit in 64 bits.
fn past_number(bytes: &[u8], start: usize) -> Result<usize, String> {
    let mut i = start;
    let mut integer = true;
    while i < bytes.len() && matches!(bytes[i], b'-' | b'+' | b'0'..=b'9' | b'.' | b'e' | b'E') {
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
    Ok(i)
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
