//! What moat reads of an OpenAI-protocol request body (chat completions, completions,
//! embeddings), and the one rewrite it may make of it.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::BoundField;
use crate::reject::Rejection;

/// The fields a request is metered by. Borrowed from the body: nothing is copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LlmRequest {
    pub model: Option<String>,
    /// The completion bound the request asks for: the smallest of `max_tokens`,
    /// `max_completion_tokens` and `n_predict` it sends (moat writes the bound it admits
    /// into all of them, so a server honours it whichever it reads).
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`, default 1).
    pub n: u64,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// It generates text (`messages` or `prompt`); otherwise it embeds (`input`).
    pub generates: bool,
    /// The prompt as estimated before the model counts it: a quarter of the JSON length in
    /// bytes of `messages`, `prompt`, `input` and `tools`, rounded up.
    pub prompt_estimate: u64,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    n_predict: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// `null` is as good as absent (clients send `"max_tokens": null`); anything else must be a `T`.
fn field<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    wrong: &'static str,
) -> Result<Option<T>, Rejection> {
    match raw {
        Some(raw) if raw.get() != "null" => serde_json::from_str::<T>(raw.get())
            .map(Some)
            .map_err(|_| Rejection::InvalidLlmRequest(wrong)),
        _ => Ok(None),
    }
}

/// A completion bound: a whole number of at least 1. `0` and negative numbers are refused,
/// never read as "no bound": llama.cpp, llama-cpp-python and others generate until their
/// context is full for them, which is the opposite of what a cap means.
fn bound(raw: Option<&RawValue>, wrong: &'static str) -> Result<Option<u64>, Rejection> {
    match field::<u64>(raw, wrong)? {
        Some(0) => Err(Rejection::InvalidLlmRequest(wrong)),
        other => Ok(other),
    }
}

impl LlmRequest {
    /// Reads the metered fields of `body` (already through validation, when the spec gives
    /// it a schema; when it gives none, this is the only check, so it fails closed).
    pub fn parse(body: &[u8]) -> Result<LlmRequest, Rejection> {
        // No body at all reads as `{}`: nothing named, nothing bounded (the spec, not moat,
        // decides whether an operation takes a body).
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            body
        };
        let fields: Fields<'_> = serde_json::from_slice(body).map_err(|_| {
            Rejection::InvalidLlmRequest("an LLM request must be one JSON object, each field once")
        })?;
        let model = field::<String>(fields.model, "`model` must be a string")?;
        let bounds = [
            bound(
                fields.max_tokens,
                "`max_tokens` must be a whole number of at least 1",
            )?,
            bound(
                fields.max_completion_tokens,
                "`max_completion_tokens` must be a whole number of at least 1",
            )?,
            bound(
                fields.n_predict,
                "`n_predict` must be a whole number of at least 1",
            )?,
        ];
        let n = field::<u64>(fields.n, "`n` must be a whole number")?.unwrap_or(1);
        let stream = field::<bool>(fields.stream, "`stream` must be true or false")?;
        let options = field::<StreamOptions>(
            fields.stream_options,
            "`stream_options` must be an object whose `include_usage` is true or false",
        )?;
        let prompt_bytes: usize = [fields.messages, fields.prompt, fields.input, fields.tools]
            .iter()
            .flatten()
            .map(|raw| raw.get().len())
            .sum();
        Ok(LlmRequest {
            model,
            max_tokens: bounds.into_iter().flatten().min(),
            n: n.max(1),
            stream: stream.unwrap_or(false),
            include_usage: options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            generates: fields.messages.is_some() || fields.prompt.is_some(),
            prompt_estimate: estimate(prompt_bytes),
        })
    }
}

/// Tokens in `bytes` of text as moat estimates them before a model counts: one per four
/// bytes, rounded up (English runs at about four characters a token; JSON punctuation makes
/// it an overestimate, which errs on the side of the budget).
pub fn estimate(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX)
}

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

/// `body` (one JSON object, already read by [`LlmRequest::parse`]) with `edit` applied, or
/// `None` when there is nothing to change. The object's members keep their order and
/// bytes; a member moat sets replaces the client's, so no name is ever sent twice.
pub fn rewrite(body: &[u8], edit: &Edit<'_>) -> Option<Bytes> {
    if edit.bound.is_none() && !edit.ask_usage {
        return None;
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let Members(members) = serde_json::from_slice(body).ok()?;
    let mut out = BytesMut::with_capacity(body.len() + 96);
    let mut written = Vec::with_capacity(BoundField::ALL.len());
    let mut has_options = false;
    out.extend_from_slice(b"{");
    for (name, value) in &members {
        let bound_field = BoundField::ALL.into_iter().find(|f| f.as_str() == name);
        if out.len() > 1 {
            out.extend_from_slice(b",");
        }
        write_name(&mut out, name);
        match (bound_field, edit.bound) {
            (Some(field), Some(bound)) => {
                written.push(field);
                out.extend_from_slice(bound.to_string().as_bytes());
            }
            _ if name == "stream_options" && edit.ask_usage => {
                has_options = true;
                out.extend_from_slice(&with_include_usage(value.get())?);
            }
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    if let Some(bound) = edit.bound {
        for field in edit.fields.iter().filter(|f| !written.contains(f)) {
            if out.len() > 1 {
                out.extend_from_slice(b",");
            }
            write_name(&mut out, field.as_str());
            out.extend_from_slice(bound.to_string().as_bytes());
        }
    }
    if edit.ask_usage && !has_options {
        if out.len() > 1 {
            out.extend_from_slice(b",");
        }
        out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
    }
    out.extend_from_slice(b"}");
    Some(out.freeze())
}

fn write_name(out: &mut BytesMut, name: &str) {
    // A string always serialises.
    out.extend_from_slice(&serde_json::to_vec(name).unwrap_or_default());
    out.extend_from_slice(b":");
}

/// `stream_options` (an object, or `null`) with `include_usage` set to true, its other
/// members kept as they were.
fn with_include_usage(options: &str) -> Option<Vec<u8>> {
    if options == "null" {
        return Some(br#"{"include_usage":true}"#.to_vec());
    }
    let Members(members) = serde_json::from_str(options).ok()?;
    let mut out = b"{".to_vec();
    for (name, value) in members.iter().filter(|(name, _)| name != "include_usage") {
        out.extend_from_slice(&serde_json::to_vec(name.as_ref()).ok()?);
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(br#""include_usage":true}"#);
    Some(out)
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

    #[test]
    fn the_metered_fields_are_read_and_null_is_absent() {
        let chat =
            br#"{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": null, "max_completion_tokens": 64, "n": 2, "stream": true,
            "stream_options": {"include_usage": false}, "temperature": 0.2}"#;
        let request = LlmRequest::parse(chat).unwrap();
        assert_eq!(request.model.as_deref(), Some("llama-3.1-8b"));
        assert_eq!(request.max_tokens, Some(64));
        assert_eq!(
            (request.n, request.stream, request.include_usage),
            (2, true, false)
        );
        assert!(request.generates);
        let messages = r#"[{"role": "user", "content": "hello there"}]"#;
        assert_eq!(request.prompt_estimate, estimate(messages.len()));

        let embed = LlmRequest::parse(br#"{"model": "e5", "input": ["a", "b"]}"#).unwrap();
        assert!(!embed.generates && !embed.stream);
        assert_eq!((embed.n, embed.max_tokens), (1, None));
        assert_eq!(embed.prompt_estimate, 3);

        let empty = LlmRequest::parse(b"").unwrap();
        assert_eq!(
            empty,
            LlmRequest {
                n: 1,
                ..LlmRequest::default()
            }
        );
    }

    #[test]
    fn the_smallest_bound_of_every_spelling_is_the_request_s() {
        let both = LlmRequest::parse(
            br#"{"prompt": "x", "max_tokens": 12, "max_completion_tokens": 8, "n_predict": 30}"#,
        )
        .unwrap();
        assert_eq!(both.max_tokens, Some(8));
        let llama = LlmRequest::parse(br#"{"prompt": "x", "n_predict": 30}"#).unwrap();
        assert_eq!(llama.max_tokens, Some(30));
    }

    #[test]
    fn a_field_of_the_wrong_type_a_duplicate_or_a_bound_of_zero_is_refused_without_echoing_it() {
        for body in [
            &br#"{"model": 7, "messages": []}"#[..],
            br#"{"model": "m", "max_tokens": -1}"#,
            br#"{"model": "m", "max_tokens": 0}"#,
            br#"{"model": "m", "max_completion_tokens": 0}"#,
            br#"{"model": "m", "n_predict": -1}"#,
            br#"{"model": "m", "max_tokens": 1.5}"#,
            br#"{"model": "m", "stream": "yes"}"#,
            br#"{"model": "m", "n": "2"}"#,
            br#"{"model": "m", "stream_options": {"include_usage": 1}}"#,
            br#"{"model": "a", "model": "b"}"#,
            br#"["model"]"#,
            b"not json",
        ] {
            let Err(Rejection::InvalidLlmRequest(reason)) = LlmRequest::parse(body) else {
                panic!("accepted {}", String::from_utf8_lossy(body));
            };
            assert!(
                !reason.contains("yes") && !reason.contains("-1"),
                "{reason}"
            );
        }
    }

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
