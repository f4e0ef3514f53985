//! Every refusal moat can give, and the one place where each becomes a status code and an
//! `application/problem+json` body (design §6). Stages return a `Rejection`; only
//! [`Rejection::into_response`] turns it into bytes on the wire.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::ResponseBody;

/// The pipeline stage that refused a request; the `stage` label of
/// `moat_rejections_total` and the `stage` field of the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Frame,
    Route,
    Authenticate,
    Authorize,
    Limit,
    Validate,
    Forward,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Frame => "frame",
            Stage::Route => "route",
            Stage::Authenticate => "authenticate",
            Stage::Authorize => "authorize",
            Stage::Limit => "limit",
            Stage::Validate => "validate",
            Stage::Forward => "forward",
        }
    }
}

/// Why a request path was refused at stage 1. The reason is public: it names the rule, never
/// the offending bytes, so nothing the client sent is echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathProblem {
    NotOriginForm,
    DotSegment,
    EmptySegment,
    Backslash,
    ControlByte,
    NonAscii,
    InvalidCharacter,
    BadPercentEncoding,
    EncodedDelimiter,
    InvalidUtf8,
    QueryByte,
}

impl PathProblem {
    fn detail(self) -> &'static str {
        match self {
            PathProblem::NotOriginForm => {
                "the request target must be an absolute path starting with '/'"
            }
            PathProblem::DotSegment => "the path contains a '.' or '..' segment",
            PathProblem::EmptySegment => "the path contains an empty segment ('//')",
            PathProblem::Backslash => "the path contains a backslash",
            PathProblem::ControlByte => "the path contains a control byte",
            PathProblem::NonAscii => "the path contains raw non-ASCII bytes; percent-encode them",
            PathProblem::InvalidCharacter => {
                "the path contains a character that must be percent-encoded"
            }
            PathProblem::BadPercentEncoding => "the path contains an invalid percent-encoding",
            PathProblem::EncodedDelimiter => {
                "the path contains an encoded '/', '\\', '.', '%' or control byte"
            }
            PathProblem::InvalidUtf8 => "the decoded path is not valid UTF-8",
            PathProblem::QueryByte => {
                "the query contains a control byte, raw non-ASCII byte or invalid percent-encoding"
            }
        }
    }
}

/// A refusal. Each variant fixes its status, stable `code` and public detail right here, so
/// the mapping is exhaustive and pinned by the table test below.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Stage 1: the path or query could be read two ways (design §1 "One interpretation").
    InvalidPath(PathProblem),
    UriTooLong {
        limit: usize,
    },
    HeadersTooLarge {
        limit: usize,
    },
    /// Stage 2: the spec declares no such path.
    RouteNotFound,
    /// Stage 2: the path exists, the method does not; `allow` lists what does.
    MethodNotAllowed {
        allow: HeaderValue,
    },
    /// Stage 3: the operation needs a credential and none of its alternatives' was sent.
    CredentialsMissing,
    /// Stage 3: a bearer token was sent and failed verification (final, never a fallback).
    InvalidToken,
    /// Stage 3: a bearer token was sent and has expired.
    TokenExpired,
    /// Stage 3: an API key was sent and is not valid now (any reason: the client is told
    /// nothing more, the log says which).
    InvalidApiKey,
    /// Stage 3: the key-verification queue is full.
    Overloaded,
    /// Stage 4: the API key's `operations` allowlist does not include this operation.
    OperationNotAllowed,
    /// Stage 4: the credential is valid but lacks scopes the operation needs.
    InsufficientScope {
        scope: String,
        /// The credential lacking it was a bearer token: only then is the RFC 6750
        /// challenge the right answer (an API key is not a Bearer credential).
        bearer: bool,
    },
    /// Stage 5: over a rate limit; `retry_after` seconds until the next request may pass.
    RateLimited {
        retry_after: u64,
    },
    /// Stage 6: path, query, header or cookie parameters failed their schemas.
    InvalidParameters(Vec<FieldError>),
    /// Stage 6: the content type is not one the operation lists.
    UnsupportedMediaType {
        accepted: String,
    },
    /// Stage 6: the operation requires a body and none was sent.
    BodyRequired,
    /// Stage 6: the operation takes no body and one was sent.
    UnexpectedBody,
    /// Stage 6: the body is not JSON every parser would read the same way.
    InvalidJson(String),
    /// Stage 6: the body failed its schema.
    BodySchema(Vec<FieldError>),
    /// The request declared or sent more body than `limits.max_body_bytes`.
    BodyTooLarge {
        limit: u64,
    },
    /// The client did not finish sending its body within `limits.body_read_timeout`.
    BodyTimeout,
    /// The client's body framing broke off (reset, malformed chunking).
    BodyUnreadable,
    /// The upstream refused or reset the connection, or answered with garbage.
    UpstreamUnavailable,
    /// The upstream did not connect or answer within its timeout.
    UpstreamTimeout,
    /// A fault inside moat at `stage` (a verification task that panicked, say); the detail
    /// goes to the log, never to the client.
    Internal(Stage),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::InvalidPath(_) => StatusCode::BAD_REQUEST,
            Rejection::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Rejection::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::RouteNotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::CredentialsMissing | Rejection::InvalidToken | Rejection::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Rejection::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Rejection::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Rejection::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::OperationNotAllowed => StatusCode::FORBIDDEN,
            Rejection::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Rejection::InvalidParameters(_) => StatusCode::BAD_REQUEST,
            Rejection::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::BodyRequired => StatusCode::BAD_REQUEST,
            Rejection::UnexpectedBody => StatusCode::BAD_REQUEST,
            Rejection::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Rejection::BodySchema(_) => StatusCode::BAD_REQUEST,
            Rejection::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::BodyUnreadable => StatusCode::BAD_REQUEST,
            Rejection::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case reason clients and dashboards match on.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidPath(_) => "invalid_path",
            Rejection::UriTooLong { .. } => "uri_too_long",
            Rejection::HeadersTooLarge { .. } => "headers_too_large",
            Rejection::RouteNotFound => "route_not_found",
            Rejection::MethodNotAllowed { .. } => "method_not_allowed",
            Rejection::CredentialsMissing => "credentials_missing",
            Rejection::InvalidToken => "invalid_token",
            Rejection::TokenExpired => "token_expired",
            Rejection::InsufficientScope { .. } => "insufficient_scope",
            Rejection::InvalidApiKey => "invalid_api_key",
            Rejection::Overloaded => "overloaded",
            Rejection::OperationNotAllowed => "operation_not_allowed",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::InvalidParameters(_) => "invalid_parameters",
            Rejection::UnsupportedMediaType { .. } => "unsupported_media_type",
            Rejection::BodyRequired => "body_required",
            Rejection::UnexpectedBody => "unexpected_body",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::BodySchema(_) => "body_schema",
            Rejection::BodyTooLarge { .. } => "body_too_large",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::BodyUnreadable => "body_unreadable",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::Internal(_) => "internal_error",
        }
    }

    pub fn stage(&self) -> Stage {
        match self {
            Rejection::InvalidPath(_)
            | Rejection::UriTooLong { .. }
            | Rejection::HeadersTooLarge { .. } => Stage::Frame,
            Rejection::RouteNotFound | Rejection::MethodNotAllowed { .. } => Stage::Route,
            Rejection::CredentialsMissing | Rejection::InvalidToken | Rejection::TokenExpired => {
                Stage::Authenticate
            }
            Rejection::InsufficientScope { .. } | Rejection::OperationNotAllowed => {
                Stage::Authorize
            }
            Rejection::InvalidApiKey | Rejection::Overloaded => Stage::Authenticate,
            Rejection::RateLimited { .. } => Stage::Limit,
            Rejection::InvalidParameters(_)
            | Rejection::UnsupportedMediaType { .. }
            | Rejection::BodyRequired
            | Rejection::UnexpectedBody
            | Rejection::InvalidJson(_)
            | Rejection::BodySchema(_)
            | Rejection::BodyTooLarge { .. }
            | Rejection::BodyTimeout
            | Rejection::BodyUnreadable => Stage::Validate,
            Rejection::UpstreamUnavailable | Rejection::UpstreamTimeout => Stage::Forward,
            Rejection::Internal(stage) => *stage,
        }
    }

    pub fn detail(&self) -> String {
        match self {
            Rejection::InvalidPath(problem) => problem.detail().to_owned(),
            Rejection::UriTooLong { limit } => {
                format!("the request target is longer than {limit} bytes")
            }
            Rejection::HeadersTooLarge { limit } => {
                format!("the request headers are larger than {limit} bytes")
            }
            Rejection::RouteNotFound => "no operation is declared at this path".to_owned(),
            Rejection::MethodNotAllowed { .. } => {
                "the operation at this path does not accept this method".to_owned()
            }
            Rejection::CredentialsMissing => "this operation requires credentials".to_owned(),
            Rejection::InvalidToken => "the bearer token is not valid".to_owned(),
            Rejection::TokenExpired => "the bearer token has expired".to_owned(),
            Rejection::InsufficientScope { scope, .. } => {
                format!("the credential lacks a required scope: {scope}")
            }
            Rejection::InvalidApiKey => "the API key is not valid".to_owned(),
            Rejection::Overloaded => {
                "too many credential checks in progress; retry shortly".to_owned()
            }
            Rejection::OperationNotAllowed => "this API key may not call this operation".to_owned(),
            Rejection::RateLimited { retry_after } => {
                format!("rate limit exceeded; retry in {retry_after}s")
            }
            Rejection::InvalidParameters(_) => "request parameters are invalid".to_owned(),
            Rejection::UnsupportedMediaType { accepted } => {
                format!("the Content-Type must be one of: {accepted}")
            }
            Rejection::BodyRequired => "this operation requires a request body".to_owned(),
            Rejection::UnexpectedBody => "this operation takes no request body".to_owned(),
            Rejection::InvalidJson(reason) => format!("the body is not acceptable JSON: {reason}"),
            Rejection::BodySchema(_) => "the request body does not match its schema".to_owned(),
            Rejection::BodyTooLarge { limit } => {
                format!("the request body is larger than {limit} bytes")
            }
            Rejection::BodyTimeout => "the request body was not received in time".to_owned(),
            Rejection::BodyUnreadable => "the request body could not be read".to_owned(),
            Rejection::UpstreamUnavailable => "the model server is unavailable".to_owned(),
            Rejection::UpstreamTimeout => "the model server did not answer in time".to_owned(),
            Rejection::Internal(_) => "internal error".to_owned(),
        }
    }

    /// The RFC 6750 `WWW-Authenticate` challenge of a 401 or 403.
    fn challenge(&self) -> Option<HeaderValue> {
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
            _ => return None,
        };
        HeaderValue::from_str(&challenge).ok()
    }

    /// The field-level failures listed in the problem's `errors`.
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Rejection::InvalidParameters(errors) | Rejection::BodySchema(errors) => errors,
            _ => &[],
        }
    }

    /// The problem+json response. `request_id` is moat's own validated id, safe to echo.
    pub fn into_response(self, request_id: &str) -> Response<ResponseBody> {
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
        let mut response = Response::new(ResponseBody::full(Bytes::from(json)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        match self {
            Rejection::Overloaded => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Rejection::RateLimited { retry_after } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        if let Rejection::MethodNotAllowed { allow } = self {
            response.headers_mut().insert(ALLOW, allow);
        }
        response
    }
}

/// One entry of a problem's `errors` list (filled by the validation stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub location: &'static str,
    pub pointer: String,
    pub message: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per variant: what a client and a dashboard see. Changing a row is an API change.
    #[test]
    fn each_rejection_has_a_fixed_status_code_and_stage() {
        let table: &[(Rejection, u16, &str, &str)] = &[
            (
                Rejection::InvalidPath(PathProblem::DotSegment),
                400,
                "invalid_path",
                "frame",
            ),
            (
                Rejection::UriTooLong { limit: 8 },
                414,
                "uri_too_long",
                "frame",
            ),
            (
                Rejection::HeadersTooLarge { limit: 8 },
                431,
                "headers_too_large",
                "frame",
            ),
            (
                Rejection::BodyTooLarge { limit: 8 },
                413,
                "body_too_large",
                "validate",
            ),
            (Rejection::BodyTimeout, 408, "body_timeout", "validate"),
            (
                Rejection::BodyUnreadable,
                400,
                "body_unreadable",
                "validate",
            ),
            (
                Rejection::UpstreamUnavailable,
                502,
                "upstream_unavailable",
                "forward",
            ),
            (
                Rejection::UpstreamTimeout,
                504,
                "upstream_timeout",
                "forward",
            ),
            (
                Rejection::Internal(Stage::Forward),
                500,
                "internal_error",
                "forward",
            ),
            (
                Rejection::Internal(Stage::Authenticate),
                500,
                "internal_error",
                "authenticate",
            ),
        ];
        for (rejection, status, code, stage) in table {
            assert_eq!(rejection.status().as_u16(), *status, "{rejection:?}");
            assert_eq!(rejection.code(), *code, "{rejection:?}");
            assert_eq!(rejection.stage().as_str(), *stage, "{rejection:?}");
        }
    }

    #[test]
    fn a_rejection_renders_as_problem_json_with_the_request_id() {
        let response = Rejection::BodyTooLarge { limit: 10 }.into_response("req-1");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let body = response.into_body().into_full_bytes().expect("a full body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(json["type"], "about:blank");
        assert_eq!(json["title"], "Payload Too Large");
        assert_eq!(json["status"], 413);
        assert_eq!(json["code"], "body_too_large");
        assert_eq!(json["request_id"], "req-1");
        assert_eq!(json["detail"], "the request body is larger than 10 bytes");
        assert_eq!(json["errors"], serde_json::json!([]));
    }
}
