//! Every refusal moat can give, and the one place where each becomes a status code and an
//! `application/problem+json` body (design §6). Stages return a `Rejection`; only
//! [`Rejection::into_response`] turns it into bytes on the wire.

mod quota;
mod response;

pub use self::quota::QuotaUsage;

use http::StatusCode;
use http::header::HeaderValue;
use serde::Serialize;

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

/// Why a request's `Host` was refused at stage 1 (RFC 9112 §3.2): its value is never echoed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostProblem {
    Twice,
    Missing,
    Malformed,
    Conflicting,
}

impl HostProblem {
    pub fn detail(self) -> &'static str {
        match self {
            HostProblem::Twice => "the request carries more than one Host header",
            HostProblem::Missing => "an HTTP/1.1 request must carry a Host header",
            HostProblem::Malformed => "the Host header is not a valid host[:port]",
            HostProblem::Conflicting => "the Host header and :authority name different hosts",
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
    /// Stage 1: no `Host`, two of them, or one that is not `host[:port]` (RFC 9112 §3.2).
    InvalidHost(HostProblem),
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
    /// Stage 3: the same, for a key sent as `Authorization: Bearer` (its 401 carries the
    /// RFC 6750 challenge a bearer client expects; the code is the same).
    InvalidBearerKey,
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
    /// `quota`: where the key's quota stands (not spent by this request), when it has one.
    RateLimited {
        retry_after: u64,
        quota: Option<QuotaUsage>,
    },
    /// Stage 5: the key's quota for this window is spent; it resets at the window's end.
    QuotaExceeded(QuotaUsage),
    /// Stage 5: the shared limit store (Redis) did not answer and `on_error` is `deny`.
    LimitStoreUnavailable,
    /// LLM operations (after the body is read): the key's `models` does not list the model
    /// the request names (or it names none).
    ModelNotAllowed,
    /// LLM operations: the request asks for more `max_tokens` than the key's cap.
    MaxTokensExceeded {
        cap: u64,
    },
    /// LLM operations: the request's reservation does not fit in the key's token budget.
    TokenBudgetExceeded {
        tokens: u64,
        per: crate::config::Period,
        retry_after: u64,
    },
    /// LLM operations: the key has `max_concurrent_streams` streams open already.
    TooManyStreams {
        limit: u32,
    },
    /// LLM operations: the body is not an object, or a field moat meters by has the wrong
    /// type (`model` not a string, `max_tokens` not a whole number, ...): the request cannot
    /// be accounted. The reason names the field, never its value.
    InvalidLlmRequest(&'static str),
    /// Stage 3: the key store could not be re-read for longer than `max_store_age`, so no
    /// key is trusted until it is.
    KeyStoreStale,
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
    /// LLM operations: the model's (non-streamed) answer carries more completion tokens
    /// than the bound moat wrote into the request: a server that ignores `max_tokens`. The
    /// answer is withheld, not relayed.
    UpstreamExceededMaxTokens {
        admitted: u64,
    },
    /// A fault inside moat at `stage` (a verification task that panicked, say); the detail
    /// goes to the log, never to the client.
    Internal(Stage),
}

impl Rejection {
    /// Status, stable code and stage of each refusal: the one table, one exhaustive match
    /// (a new variant does not compile until it has its row here and in the test below).
    fn row(&self) -> (StatusCode, &'static str, Stage) {
        use Stage::{Authenticate, Authorize, Forward, Frame, Limit, Route, Validate};
        use StatusCode as S;
        match self {
            Rejection::InvalidPath(_) => (S::BAD_REQUEST, "invalid_path", Frame),
            Rejection::UriTooLong { .. } => (S::URI_TOO_LONG, "uri_too_long", Frame),
            Rejection::HeadersTooLarge { .. } => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                Frame,
            ),
            Rejection::InvalidHost(_) => (S::BAD_REQUEST, "invalid_host", Frame),
            Rejection::RouteNotFound => (S::NOT_FOUND, "route_not_found", Route),
            Rejection::MethodNotAllowed { .. } => {
                (S::METHOD_NOT_ALLOWED, "method_not_allowed", Route)
            }
            Rejection::CredentialsMissing => (S::UNAUTHORIZED, "credentials_missing", Authenticate),
            Rejection::InvalidToken => (S::UNAUTHORIZED, "invalid_token", Authenticate),
            Rejection::TokenExpired => (S::UNAUTHORIZED, "token_expired", Authenticate),
            Rejection::InvalidApiKey | Rejection::InvalidBearerKey => {
                (S::UNAUTHORIZED, "invalid_api_key", Authenticate)
            }
            Rejection::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded", Authenticate),
            Rejection::OperationNotAllowed => (S::FORBIDDEN, "operation_not_allowed", Authorize),
            Rejection::InsufficientScope { .. } => (S::FORBIDDEN, "insufficient_scope", Authorize),
            Rejection::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited", Limit),
            Rejection::QuotaExceeded(_) => (S::TOO_MANY_REQUESTS, "quota_exceeded", Limit),
            Rejection::LimitStoreUnavailable => {
                (S::SERVICE_UNAVAILABLE, "limit_store_unavailable", Limit)
            }
            Rejection::KeyStoreStale => (S::SERVICE_UNAVAILABLE, "key_store_stale", Authenticate),
            Rejection::ModelNotAllowed => (S::FORBIDDEN, "model_not_allowed", Authorize),
            Rejection::MaxTokensExceeded { .. } => {
                (S::BAD_REQUEST, "max_tokens_exceeded", Validate)
            }
            Rejection::TokenBudgetExceeded { .. } => {
                (S::TOO_MANY_REQUESTS, "token_budget_exceeded", Limit)
            }
            Rejection::TooManyStreams { .. } => (S::TOO_MANY_REQUESTS, "too_many_streams", Limit),
            Rejection::InvalidLlmRequest(_) => (S::BAD_REQUEST, "invalid_llm_request", Validate),
            Rejection::InvalidParameters(_) => (S::BAD_REQUEST, "invalid_parameters", Validate),
            Rejection::UnsupportedMediaType { .. } => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                Validate,
            ),
            Rejection::BodyRequired => (S::BAD_REQUEST, "body_required", Validate),
            Rejection::UnexpectedBody => (S::BAD_REQUEST, "unexpected_body", Validate),
            Rejection::InvalidJson(_) => (S::BAD_REQUEST, "invalid_json", Validate),
            Rejection::BodySchema(_) => (S::BAD_REQUEST, "body_schema", Validate),
            Rejection::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "body_too_large", Validate),
            Rejection::BodyTimeout => (S::REQUEST_TIMEOUT, "body_timeout", Validate),
            Rejection::BodyUnreadable => (S::BAD_REQUEST, "body_unreadable", Validate),
            Rejection::UpstreamUnavailable => (S::BAD_GATEWAY, "upstream_unavailable", Forward),
            Rejection::UpstreamTimeout => (S::GATEWAY_TIMEOUT, "upstream_timeout", Forward),
            Rejection::UpstreamExceededMaxTokens { .. } => {
                (S::BAD_GATEWAY, "upstream_exceeded_max_tokens", Forward)
            }
            Rejection::Internal(stage) => (S::INTERNAL_SERVER_ERROR, "internal_error", *stage),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.row().0
    }

    /// The stable snake_case reason clients and dashboards match on.
    pub fn code(&self) -> &'static str {
        self.row().1
    }

    pub fn stage(&self) -> Stage {
        self.row().2
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
            Rejection::InvalidHost(problem) => problem.detail().to_owned(),
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
            Rejection::InvalidApiKey | Rejection::InvalidBearerKey => {
                "the API key is not valid".to_owned()
            }
            Rejection::Overloaded => {
                "too many credential checks in progress; retry shortly".to_owned()
            }
            Rejection::OperationNotAllowed => "this API key may not call this operation".to_owned(),
            Rejection::RateLimited { retry_after, .. } => {
                format!("rate limit exceeded; retry in {retry_after}s")
            }
            Rejection::QuotaExceeded(usage) => format!(
                "the API key's quota of {} requests is spent; it resets in {}s",
                usage.limit, usage.reset
            ),
            Rejection::LimitStoreUnavailable => {
                "rate limits cannot be checked right now; retry shortly".to_owned()
            }
            Rejection::KeyStoreStale => {
                "API keys cannot be checked right now; retry shortly".to_owned()
            }
            Rejection::ModelNotAllowed => {
                "this API key may not use the model the request names".to_owned()
            }
            Rejection::MaxTokensExceeded { cap } => {
                format!("this API key may ask for at most {cap} max_tokens")
            }
            Rejection::TokenBudgetExceeded {
                tokens,
                per,
                retry_after,
            } => format!(
                "the request's tokens do not fit in the API key's budget of {tokens} per {}; \
                 it resets in {retry_after}s",
                per.as_str()
            ),
            Rejection::TooManyStreams { limit } => {
                format!("this API key has {limit} streams open already; retry when one ends")
            }
            Rejection::InvalidLlmRequest(reason) => (*reason).to_owned(),
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
            Rejection::UpstreamExceededMaxTokens { admitted } => format!(
                "the model answered with more than the {admitted} completion tokens moat \
                 admitted and wrote into the request as max_tokens; the answer was withheld"
            ),
            Rejection::Internal(_) => "internal error".to_owned(),
        }
    }

    /// The field-level failures listed in the problem's `errors`.
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Rejection::InvalidParameters(errors) | Rejection::BodySchema(errors) => errors,
            _ => &[],
        }
    }
}

/// One entry of a problem's `errors` list (filled by the validation stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub location: &'static str,
    pub pointer: String,
    pub message: String,
}

#[cfg(test)]
mod tests;
