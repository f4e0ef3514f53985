//! What moat reads of an OpenAI-protocol request body (chat completions, completions,
//! embeddings), and the one rewrite it may make of it.

use serde::Deserialize;
use serde_json::value::RawValue;

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
        let fields: Fields<'_> = serde_json::from_slice(as_object(body)).map_err(|_| {
            Rejection::InvalidLlmRequest("an LLM request must be one JSON object, each field once")
        })?;
        let model = field::<String>(fields.model, "`model` must be a string")?;
        let n = field::<u64>(fields.n, "`n` must be a whole number")?.unwrap_or(1);
        let stream = field::<bool>(fields.stream, "`stream` must be true or false")?;
        let options = field::<StreamOptions>(
            fields.stream_options,
            "`stream_options` must be an object whose `include_usage` is true or false",
        )?;
        Ok(LlmRequest {
            model,
            max_tokens: smallest_bound(&fields)?,
            n: n.max(1),
            stream: stream.unwrap_or(false),
            include_usage: options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            generates: fields.messages.is_some() || fields.prompt.is_some(),
            prompt_estimate: estimate(prompt_bytes(&fields)),
        })
    }
}

/// No body at all reads as `{}`: nothing named, nothing bounded (the spec, not moat,
/// decides whether an operation takes a body).
pub(super) fn as_object(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    }
}

/// The smallest of the completion bounds the request sends, each a whole number ≥ 1.
fn smallest_bound(fields: &Fields<'_>) -> Result<Option<u64>, Rejection> {
    let bounds = [
        (
            fields.max_tokens,
            "`max_tokens` must be a whole number of at least 1",
        ),
        (
            fields.max_completion_tokens,
            "`max_completion_tokens` must be a whole number of at least 1",
        ),
        (
            fields.n_predict,
            "`n_predict` must be a whole number of at least 1",
        ),
    ];
    let mut smallest = None;
    for (raw, wrong) in bounds {
        if let Some(value) = bound(raw, wrong)? {
            smallest = Some(smallest.map_or(value, |s: u64| s.min(value)));
        }
    }
    Ok(smallest)
}

/// The bytes the prompt takes in the request: its `messages`, `prompt`, `input`, `tools`.
fn prompt_bytes(fields: &Fields<'_>) -> usize {
    [fields.messages, fields.prompt, fields.input, fields.tools]
        .iter()
        .flatten()
        .map(|raw| raw.get().len())
        .sum()
}

/// Tokens in `bytes` of text as moat estimates them before a model counts: one per four
/// bytes, rounded up (English runs at about four characters a token; JSON punctuation makes
/// it an overestimate, which errs on the side of the budget).
pub fn estimate(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX)
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
}
