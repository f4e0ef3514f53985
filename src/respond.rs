//! The model's answer held to what the spec declares, before any of it is relayed
//! (`responses:`): its status must be one the operation declares (the code, its class, or
//! `default`), its content type one declared for that status, and a JSON body the schema
//! declared for it (read by `pipeline::held`; undeclared members removed with
//! `strip_undeclared`). In `shadow` (the default) a violation is logged and counted and the
//! answer relayed; in `enforce` it becomes 502 `upstream_response_invalid`, naming what was
//! wrong, never a value of the body. Separately, a 5xx's body — where tracebacks, paths and
//! configuration leak — is concealed behind moat's own problem+json when
//! `conceal_upstream_errors` is on, its first and last KiB logged with the request id so an
//! operator can still find it.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use http_body::Body;
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::config::{ResponseMode, ResponsePolicy};
use crate::reject::Rejection;
use crate::spec::{Declared, ResponseMedia, Responses};
use crate::validate::body::select_by;
use crate::validate::json::{JsonLimits, certainly_valid};

/// What to do with the model's answer, from its head.
#[derive(Debug)]
pub enum Check<'r> {
    Relay,
    /// Relayed once its JSON body (within `responses.max_body_bytes`) matches this media's
    /// schema (what the schema does not declare stripped, with `strip_undeclared`).
    Validate(&'r ResponseMedia),
    /// An event stream: each event's JSON `data` is held to this media's event schema as
    /// it passes (by the LLM meter, see `llm::EventCheck`).
    Events(&'r ResponseMedia),
    /// Relayed; the violation (of this kind: `status`, `content_type`) is logged and
    /// counted (`shadow`).
    Shadowed(Rejection, &'static str),
    /// Replaced by this refusal (`enforce`).
    Refuse(Rejection, &'static str),
    /// A 5xx whose body is replaced by moat's (`conceal_upstream_errors`).
    Conceal(StatusCode),
}

/// The verdict on an answer of `status` with `headers`, for an operation that declares
/// `declared` (`None`: the spec declares no responses, or there is no spec).
pub fn check<'r>(
    config: &ResponsePolicy,
    declared: Option<&'r Responses>,
    status: StatusCode,
    headers: &HeaderMap,
) -> Check<'r> {
    if status.is_server_error() && config.conceal {
        return Check::Conceal(status);
    }
    let Some(declared) = declared.filter(|_| config.mode != ResponseMode::Off) else {
        return Check::Relay;
    };
    match held(declared, status, headers) {
        Ok(Some(media)) => match (&media.schema, &media.events) {
            (Some(_), _) => Check::Validate(media),
            (None, Some(_)) => Check::Events(media),
            (None, None) => Check::Relay,
        },
        Ok(None) => Check::Relay,
        Err((kind, reason)) => match violation(config, reason) {
            Ok(shadowed) => Check::Shadowed(shadowed, kind),
            Err(refusal) => Check::Refuse(refusal, kind),
        },
    }
}

/// A violation as the mode has it: `Err` the refusal in `enforce`; `Ok` the violation to
/// log and count while the answer is relayed (`shadow`).
pub fn violation(config: &ResponsePolicy, reason: String) -> Result<Rejection, Rejection> {
    let detail = format!("the model's answer does not match its API definition: {reason}");
    let violation = Rejection::UpstreamResponseInvalid(detail);
    match config.mode {
        ResponseMode::Enforce => Err(violation),
        _ => Ok(violation),
    }
}

/// Whether the head matches what the spec declares — and the media its body is held to,
/// if it has one; else what kind of violation it is (`status`, `content_type`) and why.
fn held<'r>(
    declared: &'r Responses,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Option<&'r ResponseMedia>, (&'static str, String)> {
    let code = status.as_u16();
    let media = declared.media_for(code).ok_or_else(|| {
        let reason = format!("status {code} is not declared for this operation");
        ("status", reason)
    })?;
    if media.is_empty() || !has_body(status, headers) {
        return Ok(None);
    }
    let ranges = || {
        media
            .iter()
            .map(|m| m.range.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        let reason = format!(
            "it has no Content-Type; status {code} declares {}",
            ranges()
        );
        return Err(("content_type", reason));
    };
    match select_by(media, |m| &m.range, content_type) {
        Some(media) => Ok(Some(media)),
        None => Err((
            "content_type",
            format!(
                "its content type is not one declared for status {code} ({})",
                ranges()
            ),
        )),
    }
}

/// A JSON body against its media's schema: accepted by the schema's plan while parsing
/// (`Ok(None)`: no tree built — unless `strip` needs one), else parsed as strictly as
/// requests are and validated; the first failure by its pointer, never a value. `Ok` with
/// the parsed body (for stripping), `Err` with the reason and the body if it parsed.
pub fn json_verdict(
    body: &[u8],
    media: &ResponseMedia,
    limits: &JsonLimits,
    strip: bool,
) -> Result<Option<Value>, (String, Option<Value>)> {
    let Some(schema) = &media.schema else {
        return Ok(None);
    };
    if let (false, Some(plan)) = (strip, &media.plan)
        && certainly_valid(body, plan, limits)
    {
        return Ok(None);
    }
    let value = crate::validate::json::parse(body, limits.max_depth)
        .map_err(|why| (format!("its body is not acceptable JSON: {why}"), None))?;
    let mut errors = Vec::new();
    if schema.check(&value, "body", "", &mut errors) {
        return Ok(Some(value));
    }
    let reason = match errors.first() {
        Some(first) => format!("{}: {}", pointer(&first.pointer), first.message),
        None => "its body does not match the declared schema".to_owned(),
    };
    Err((reason, Some(value)))
}

/// `value` without the members `declared` does not declare, serialised, and how many
/// were removed — `None` when nothing was (the model's own bytes then go on untouched).
pub fn stripped(declared: &Declared, mut value: Value) -> Option<(Bytes, u64)> {
    let removed = declared.strip(&mut value);
    if removed == 0 {
        return None;
    }
    let body = serde_json::to_vec(&value).ok()?;
    Some((Bytes::from(body), removed as u64))
}

/// A pointer as the detail shows it: `/` for the whole body.
fn pointer(pointer: &str) -> &str {
    match pointer {
        "" => "/",
        pointer => pointer,
    }
}

/// Whether the answer carries a body at all (a 204, a 304, or `Content-Length: 0` does not).
fn has_body(status: StatusCode, headers: &HeaderMap) -> bool {
    let empty = headers
        .get(CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() == b"0");
    !(empty || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED)
}

/// How much of a concealed body is read (the rest is dropped unread), and how much of its
/// start and its end is logged: a Python traceback names the error on its last line.
const READ_BYTES: usize = 64 * 1024;
const LOGGED_BYTES: usize = 1024;

/// Logs a concealed 5xx's body at warn — its first and last KiB, with the request id —
/// reading at most [`READ_BYTES`] for at most a second.
pub async fn log_concealed<B: Body<Data = Bytes>>(status: StatusCode, body: B, request_id: &str) {
    let mut read = Vec::new();
    let mut body = std::pin::pin!(body);
    let reading = async {
        while read.len() < READ_BYTES {
            let Some(Ok(frame)) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame.into_data() {
                let take = (READ_BYTES - read.len()).min(data.len());
                read.extend_from_slice(&data[..take]);
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), reading).await;
    tracing::warn!(
        request_id,
        status = status.as_u16(),
        body = %ends(&read),
        "the model answered with an error; its body was concealed from the client"
    );
}

/// `body`'s first and last [`LOGGED_BYTES`], or all of it when that is shorter.
fn ends(body: &[u8]) -> String {
    if body.len() <= 2 * LOGGED_BYTES {
        return String::from_utf8_lossy(body).into_owned();
    }
    let (head, tail) = (&body[..LOGGED_BYTES], &body[body.len() - LOGGED_BYTES..]);
    format!(
        "{} … {}",
        String::from_utf8_lossy(head),
        String::from_utf8_lossy(tail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Responses {
        Responses::for_tests(&[
            ("200", &["application/json"]),
            ("422", &["application/json"]),
        ])
    }

    fn head(content_type: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, content_type.parse().unwrap());
        }
        headers
    }

    fn config(mode: ResponseMode) -> ResponsePolicy {
        ResponsePolicy {
            mode,
            conceal: mode == ResponseMode::Enforce,
            ..ResponsePolicy::default()
        }
    }

    #[test]
    fn a_declared_status_and_type_is_relayed_and_others_are_violations() {
        let enforce = config(ResponseMode::Enforce);
        let spec = declared();
        let json = head(Some("application/json; charset=utf-8"));
        assert!(matches!(
            check(&enforce, Some(&spec), StatusCode::OK, &json),
            Check::Relay
        ));
        let teapot = check(&enforce, Some(&spec), StatusCode::IM_A_TEAPOT, &json);
        let Check::Refuse(Rejection::UpstreamResponseInvalid(reason), "status") = teapot else {
            panic!("{teapot:?}")
        };
        assert!(reason.ends_with(": status 418 is not declared for this operation"));
        let html = check(
            &enforce,
            Some(&spec),
            StatusCode::OK,
            &head(Some("text/html")),
        );
        assert!(matches!(html, Check::Refuse(_, "content_type")), "{html:?}");
        let shadow = check(
            &config(ResponseMode::Shadow),
            Some(&spec),
            StatusCode::OK,
            &head(None),
        );
        assert!(matches!(shadow, Check::Shadowed(_, _)), "{shadow:?}");
        let off = check(
            &config(ResponseMode::Off),
            Some(&spec),
            StatusCode::IM_A_TEAPOT,
            &json,
        );
        assert!(matches!(off, Check::Relay), "{off:?}");
        assert!(matches!(
            check(&enforce, None, StatusCode::IM_A_TEAPOT, &json),
            Check::Relay
        ));
    }

    #[test]
    fn a_5xx_is_concealed_in_enforce_or_when_asked() {
        let spec = declared();
        let error = StatusCode::INTERNAL_SERVER_ERROR;
        let enforce = config(ResponseMode::Enforce);
        assert!(
            matches!(check(&enforce, Some(&spec), error, &head(None)), Check::Conceal(e) if e == error)
        );
        let shadow = config(ResponseMode::Shadow);
        assert!(matches!(
            check(&shadow, Some(&spec), error, &head(None)),
            Check::Shadowed(_, _)
        ));
        let asked = ResponsePolicy {
            conceal: true,
            ..ResponsePolicy::default()
        };
        assert!(matches!(check(&asked, None, error, &head(None)), Check::Conceal(e) if e == error));
    }
}
