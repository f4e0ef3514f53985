//! A [`Rejection`] on the wire: the problem+json body, the RFC 6750 challenge and the
//! headers some refusals carry (`Retry-After`, `Allow`). The body is plain bytes: the
//! pipeline wraps it in its response body, so refusals know nothing of the access record.
//!
//! Every body carries `message` (the same sentence as `detail`), which most client
//! libraries print; on an LLM operation it also carries OpenAI's `error` object, from which
//! the official OpenAI SDKs build their exception text.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response};
use serde::Serialize;

use super::{FieldError, Rejection};

/// Which clients a refusal's body is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Any HTTP client: RFC 9457 problem+json.
    Any,
    /// An OpenAI-protocol operation: problem+json with OpenAI's `error` object beside it.
    OpenAi,
    /// A gRPC call: a Trailers-Only response with `grpc-status` (see `reject/grpc.rs`).
    Grpc,
}

impl Rejection {
    /// The problem+json response. `request_id` is moat's own validated id, safe to echo.
    pub fn into_response(self, request_id: &str, audience: Audience) -> Response<Bytes> {
        if audience == Audience::Grpc {
            return self.into_grpc_response(request_id);
        }
        let mut response = Response::new(self.problem(request_id, audience));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = self.challenge() {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        self.write_headers(headers);
        response
    }

    /// The RFC 9457 body.
    fn problem(&self, request_id: &str, audience: Audience) -> Bytes {
        let status = self.status();
        let detail = self.detail();
        let error = (audience == Audience::OpenAi).then(|| OpenAiError {
            message: &detail,
            kind: openai_type(status),
            code: self.code(),
            param: self.param(),
        });
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: &detail,
            message: &detail,
            code: self.code(),
            request_id,
            errors: self.errors(),
            error,
        };
        // Serialising a struct of strings and integers cannot fail; fall back to an empty
        // object rather than panic if it ever did.
        Bytes::from(serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec()))
    }

    /// The headers some refusals carry: when to retry, where a quota stands, what the path
    /// allows, and that a withheld answer is not worth retrying.
    fn write_headers(self, headers: &mut HeaderMap) {
        use Rejection as R;
        match self {
            R::Overloaded
            | R::BodiesOverloaded
            | R::LimitStoreUnavailable
            | R::KeyStoreStale
            | R::TooManyStreams { .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            R::QuotaExceeded(usage) => {
                retry_after_at_most_once(headers, usage.reset);
                usage.write(headers);
            }
            R::RateLimited { retry_after, quota } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
                if let Some(quota) = quota {
                    quota.write(headers);
                }
            }
            R::TokenBudgetExceeded { retry_after, .. } => {
                retry_after_at_most_once(headers, retry_after);
            }
            // The OpenAI SDKs retry a 502 unless told not to; the same request would make
            // the model run past its bound again, and be charged again.
            R::UpstreamExceededMaxTokens { .. } => {
                headers.insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
            }
            R::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, allow);
            }
            _ => {}
        }
    }

    /// The RFC 6750 `WWW-Authenticate` challenge of a 401 or 403. Every other refusal
    /// carries none; the table test (`reject/tests.rs`) states each variant's challenge, so
    /// a new 401 or 403 cannot go without deciding its own.
    pub(super) fn challenge(&self) -> Option<HeaderValue> {
        use Rejection as R;
        let challenge = match self {
            R::CredentialsMissing => r#"Bearer realm="moat""#.to_owned(),
            R::InvalidToken | R::InvalidBearerKey => {
                r#"Bearer realm="moat", error="invalid_token""#.to_owned()
            }
            R::TokenExpired => r#"Bearer realm="moat", error="invalid_token", error_description="the token has expired""#
                .to_owned(),
            R::InsufficientScope { scope, bearer: true } => {
                format!(r#"Bearer realm="moat", error="insufficient_scope", scope="{scope}""#)
            }
            R::InvalidApiKey => r#"ApiKey realm="moat""#.to_owned(),
            _ => return None,
        };
        HeaderValue::from_str(&challenge).ok()
    }
}

/// `Retry-After: seconds`, and, when that is further off than a client should wait in a
/// call, `x-should-retry: false`: the OpenAI SDKs otherwise sleep and retry a 429 that
/// cannot succeed until a quota or budget window turns.
fn retry_after_at_most_once(headers: &mut HeaderMap, seconds: u64) {
    headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    if seconds > WORTH_WAITING_FOR {
        headers.insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
    }
}

/// The longest `Retry-After` a client library sleeps on (the OpenAI SDKs' own bound).
const WORTH_WAITING_FOR: u64 = 60;

const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: &'a str,
    /// `detail` again, where client libraries look for a reason.
    message: &'a str,
    code: &'static str,
    request_id: &'a str,
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<OpenAiError<'a>>,
}

/// OpenAI's error object, as its API and the servers that follow it answer.
#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    param: Option<&'a str>,
}

/// OpenAI's error `type` for a status.
fn openai_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

impl Rejection {
    /// The request field an LLM refusal is about, as OpenAI's `param` names it.
    fn param(&self) -> Option<&str> {
        match self {
            Rejection::MaxTokensExceeded { .. } => Some("max_tokens"),
            Rejection::ModelNotAllowed => Some("model"),
            Rejection::InvalidLlmRequest(reason) => reason.split('`').nth(1),
            Rejection::BodySchema(errors) | Rejection::InvalidParameters(errors) => {
                errors.first().map(|error| error.pointer.as_str())
            }
            _ => None,
        }
    }
}
