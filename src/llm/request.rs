//! What moat reads of an OpenAI-protocol request body (chat completions, completions,
//! embeddings), and the one rewrite it may make of it.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::reject::Rejection;

/// The fields a request is metered by. Borrowed from the body: nothing is copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LlmRequest {
    pub model: Option<String>,
    /// `max_completion_tokens`, else `max_tokens` (the larger when both are sent: a server
    /// may honour either).
    pub max_tokens: Option<u64>,
    /// Choices asked for (`n`, default 1).
    pub n: u64,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    /// Whether `stream_options` is present at all.
    pub has_stream_options: bool,
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
        let max_tokens = field::<u64>(fields.max_tokens, "`max_tokens` must be a whole number")?;
        let max_completion_tokens = field::<u64>(
            fields.max_completion_tokens,
            "`max_completion_tokens` must be a whole number",
        )?;
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
            max_tokens: max_tokens.max(max_completion_tokens),
            n: n.max(1),
            stream: stream.unwrap_or(false),
            include_usage: options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            has_stream_options: fields.stream_options.is_some_and(|raw| raw.get() != "null"),
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

/// `body` (a JSON object) with `members` (`"name":value` text) added before its closing
/// brace, or `None` when it does not end in one. The caller adds only members it knows
/// are absent, so no name is ever duplicated.
pub fn append_members(body: &[u8], members: &[String]) -> Option<Bytes> {
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if body[end] != b'}' {
        return None;
    }
    let before = body[..end].iter().rposition(|b| !b.is_ascii_whitespace())?;
    let mut out =
        BytesMut::with_capacity(body.len() + members.iter().map(|m| m.len() + 1).sum::<usize>());
    out.extend_from_slice(&body[..end]);
    for (i, member) in members.iter().enumerate() {
        if i > 0 || body[before] != b'{' {
            out.extend_from_slice(b",");
        }
        out.extend_from_slice(member.as_bytes());
    }
    out.extend_from_slice(&body[end..]);
    Some(out.freeze())
}

/// `body` with `stream_options.include_usage` set to true, when `stream_options` is already
/// there (re-serialised: member order may change; the rare case).
pub fn with_include_usage(body: &[u8]) -> Option<Bytes> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get_mut("stream_options")?
        .as_object_mut()?
        .insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    serde_json::to_vec(&value).ok().map(Bytes::from)
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
        assert!(request.generates && request.has_stream_options);
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
    fn a_field_of_the_wrong_type_or_a_duplicate_is_refused_without_echoing_it() {
        for body in [
            &br#"{"model": 7, "messages": []}"#[..],
            br#"{"model": "m", "max_tokens": -1}"#,
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

    #[test]
    fn members_are_appended_inside_the_closing_brace() {
        let members = ["\"max_tokens\":256".to_owned()];
        assert_eq!(
            append_members(b"{\"model\": \"m\"}\n", &members).unwrap(),
            &b"{\"model\": \"m\",\"max_tokens\":256}\n"[..]
        );
        assert_eq!(
            append_members(b"{ }", &members).unwrap(),
            &b"{ \"max_tokens\":256}"[..]
        );
        assert!(append_members(b"[1]", &members).is_none());
        let both = [members[0].clone(), "\"b\":1".to_owned()];
        let appended = append_members(b"{\"a\":0}", &both).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&appended).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": 0, "max_tokens": 256, "b": 1})
        );
        let usage = with_include_usage(br#"{"stream_options": {"x": 1}}"#).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&usage).unwrap();
        assert_eq!(
            value["stream_options"],
            serde_json::json!({"x": 1, "include_usage": true})
        );
    }
}
