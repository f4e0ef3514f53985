//! A [`Rejection`] on the wire: the problem+json body, the RFC 6750 challenge and the
//! headers some refusals carry (`Retry-After`, `Allow`). The body is plain bytes: the
//! pipeline wraps it in its response body, so refusals know nothing of the access record.

use bytes::Bytes;
use http::Response;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::Serialize;

use super::{FieldError, Rejection};

impl Rejection {
    /// The problem+json response. `request_id` is moat's own validated id, safe to echo.
    pub fn into_response(self, request_id: &str) -> Response<Bytes> {
        let status = self.status();
        let problem = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            request_id,
            errors: self.errors(),
        };
        // Serialising a struct of strings and integers cannot fail; fall back to an empty
        // object rather than panic if it ever did.
        let json = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = Response::new(Bytes::from(json));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        match self {
            Rejection::Overloaded
            | Rejection::LimitStoreUnavailable
            | Rejection::KeyStoreStale
            | Rejection::TooManyStreams { .. } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Rejection::QuotaExceeded(usage) => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(usage.reset));
                usage.write(response.headers_mut());
            }
            Rejection::RateLimited { retry_after, quota } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after));
                if let Some(quota) = quota {
                    quota.write(response.headers_mut());
                }
            }
            Rejection::TokenBudgetExceeded { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        if let Rejection::UpstreamExceededMaxTokens { .. } = self {
            // The OpenAI SDKs retry a 502 unless told not to; the same request would make
            // the model run past its bound again, and be charged again.
            response.headers_mut().insert(
                http::header::HeaderName::from_static("x-should-retry"),
                HeaderValue::from_static("false"),
            );
        }
        if let Rejection::MethodNotAllowed { allow } = self {
            response.headers_mut().insert(ALLOW, allow);
        }
        response
    }

    /// The RFC 6750 `WWW-Authenticate` challenge of a 401 or 403.
    pub(super) fn challenge(&self) -> Option<HeaderValue> {
        let challenge = match self {
            Rejection::CredentialsMissing => r#"Bearer realm="moat""#.to_owned(),
            Rejection::InvalidToken => r#"Bearer realm="moat", error="invalid_token""#.to_owned(),
            Rejection::TokenExpired => {
                r#"Bearer realm="moat", error="invalid_token", error_description="the token has expired""#
                    .to_owned()
            }
            Rejection::InsufficientScope { scope, bearer: true } => {
                format!(r#"Bearer realm="moat", error="insufficient_scope", scope="{scope}""#)
            }
            Rejection::InvalidApiKey => r#"ApiKey realm="moat""#.to_owned(),
            Rejection::InvalidBearerKey => {
                r#"Bearer realm="moat", error="invalid_token""#.to_owned()
            }
            // Listed, not `_`: a new 401 or 403 must decide its challenge.
            Rejection::InsufficientScope { bearer: false, .. }
            | Rejection::InvalidPath(_)
            | Rejection::UriTooLong { .. }
            | Rejection::HeadersTooLarge { .. }
            | Rejection::InvalidHost(_)
            | Rejection::RouteNotFound
            | Rejection::MethodNotAllowed { .. }
            | Rejection::Overloaded
            | Rejection::OperationNotAllowed
            | Rejection::RateLimited { .. }
            | Rejection::QuotaExceeded(_)
            | Rejection::LimitStoreUnavailable
            | Rejection::KeyStoreStale
            | Rejection::ModelNotAllowed
            | Rejection::MaxTokensExceeded { .. }
            | Rejection::TokenBudgetExceeded { .. }
            | Rejection::TooManyStreams { .. }
            | Rejection::InvalidLlmRequest(_)
            | Rejection::InvalidParameters(_)
            | Rejection::UnsupportedMediaType { .. }
            | Rejection::BodyRequired
            | Rejection::UnexpectedBody
            | Rejection::InvalidJson(_)
            | Rejection::BodySchema(_)
            | Rejection::BodyTooLarge { .. }
            | Rejection::BodyTimeout
            | Rejection::BodyUnreadable
            | Rejection::UpstreamUnavailable
            | Rejection::UpstreamTimeout
            | Rejection::UpstreamExceededMaxTokens { .. }
            | Rejection::Internal(_) => return None,
        };
        HeaderValue::from_str(&challenge).ok()
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
    request_id: &'a str,
    errors: &'a [FieldError],
}
