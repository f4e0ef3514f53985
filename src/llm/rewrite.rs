//! The one rewrite moat makes of an LLM request: the bound it admitted written over every
//! bound field the client sent and into the configured ones it lacks, and a stream asked for
//! its usage. The object's members keep their order and raw bytes; a member moat sets
//! replaces the client's, so no name is ever sent twice.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::request::as_object;
use crate::config::BoundField;

/// What moat writes into a request it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit<'a> {
    /// The completion bound admitted: written over every bound field the request carries
    /// (`null` included) and into each of `fields` it lacks.
    pub bound: Option<u64>,
    pub fields: &'a [BoundField],
    /// Set `stream_options.include_usage` to true.
    pub ask_usage: bool,
}

/// `body` (one JSON object, already read by `LlmRequest::parse`) with `edit` applied, or
/// `None` when there is nothing to change.
pub fn rewrite(body: &[u8], edit: &Edit<'_>) -> Option<Bytes> {
    if edit.bound.is_none() && !edit.ask_usage {
        return None;
    }
    let Members(members) = serde_json::from_slice(as_object(body)).ok()?;
    let mut out = Object::with_capacity(body.len() + 96);
    let mut written = Vec::with_capacity(BoundField::ALL.len());
    let mut has_options = false;
    for (name, value) in &members {
        let bound_field = BoundField::ALL.into_iter().find(|f| f.as_str() == name);
        match (bound_field, edit.bound) {
            (Some(field), Some(bound)) => {
                written.push(field);
                out.member(name, bound.to_string().as_bytes());
            }
            _ if name == "stream_options" && edit.ask_usage => {
                has_options = true;
                out.member(name, &with_include_usage(value.get())?);
            }
            _ => out.member(name, value.get().as_bytes()),
        }
    }
    if let Some(bound) = edit.bound {
        for field in edit.fields.iter().filter(|f| !written.contains(f)) {
            out.member(field.as_str(), bound.to_string().as_bytes());
        }
    }
    if edit.ask_usage && !has_options {
        out.member("stream_options", br#"{"include_usage":true}"#);
    }
    Some(out.finish())
}

/// `stream_options` (an object, or `null`) with `include_usage` set to true, its other
/// members kept as they were.
fn with_include_usage(options: &str) -> Option<Vec<u8>> {
    if options == "null" {
        return Some(br#"{"include_usage":true}"#.to_vec());
    }
    let Members(members) = serde_json::from_str(options).ok()?;
    let mut out = Object::with_capacity(options.len() + 24);
    for (name, value) in members.iter().filter(|(name, _)| name != "include_usage") {
        out.member(name, value.get().as_bytes());
    }
    out.member("include_usage", b"true");
    Some(out.finish().to_vec())
}

/// A JSON object written member by member.
struct Object(BytesMut);

impl Object {
    fn with_capacity(capacity: usize) -> Self {
        let mut out = BytesMut::with_capacity(capacity);
        out.extend_from_slice(b"{");
        Object(out)
    }

    /// `"name":value`, `value` already JSON.
    fn member(&mut self, name: &str, value: &[u8]) {
        if self.0.len() > 1 {
            self.0.extend_from_slice(b",");
        }
        // A string always serialises.
        self.0
            .extend_from_slice(&serde_json::to_vec(name).unwrap_or_default());
        self.0.extend_from_slice(b":");
        self.0.extend_from_slice(value);
    }

    fn finish(mut self) -> Bytes {
        self.0.extend_from_slice(b"}");
        self.0.freeze()
    }
}

/// A JSON object's members in order, each value as its raw bytes. serde_json's maps would
/// sort or merge them; this keeps what the client wrote except where moat writes.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(name) = map.next_key::<Name<'de>>()? {
                    members.push((name.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A member name, borrowed from the body unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[BoundField] = &[BoundField::MaxTokens, BoundField::MaxCompletionTokens];

    fn edited(body: &str, bound: Option<u64>, ask_usage: bool) -> serde_json::Value {
        let edit = Edit {
            bound,
            fields: BOTH,
            ask_usage,
        };
        let out = rewrite(body.as_bytes(), &edit).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        // No member twice: a strict reader of what moat sends refuses duplicates.
        let strict = crate::validate::json::parse(text.as_bytes(), 64);
        assert!(strict.is_ok(), "{text}: {strict:?}");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_bound_replaces_every_spelling_null_included_and_is_added_where_missing() {
        let value = edited(
            r#"{"model": "m", "max_tokens": null, "n_predict": 99, "x": {"a": [1, 2]}}"#,
            Some(16),
            false,
        );
        assert_eq!(
            value,
            serde_json::json!({"model": "m", "max_tokens": 16, "n_predict": 16,
                "x": {"a": [1, 2]}, "max_completion_tokens": 16})
        );
        let order = rewrite(
            br#"{"b": 1, "a": "\u00e9"}"#,
            &Edit {
                bound: Some(3),
                fields: &[BoundField::MaxTokens],
                ask_usage: false,
            },
        )
        .unwrap();
        assert_eq!(&order[..], br#"{"b":1,"a":"\u00e9","max_tokens":3}"#);
        assert_eq!(
            edited("  ", Some(2), false),
            serde_json::json!({"max_tokens": 2, "max_completion_tokens": 2})
        );
        assert!(
            rewrite(
                b"{}",
                &Edit {
                    bound: None,
                    fields: BOTH,
                    ask_usage: false
                }
            )
            .is_none()
        );
    }

    #[test]
    fn usage_is_asked_for_in_stream_options_whatever_the_client_sent_there() {
        for (options, expected) in [
            ("", serde_json::json!({"include_usage": true})),
            (
                r#","stream_options":null"#,
                serde_json::json!({"include_usage": true}),
            ),
            (
                r#","stream_options":{"x":1,"include_usage":false}"#,
                serde_json::json!({"x": 1, "include_usage": true}),
            ),
        ] {
            let body = format!(r#"{{"stream":true{options}}}"#);
            let value = edited(&body, None, true);
            assert_eq!(value["stream_options"], expected, "{body}");
        }
    }
}
