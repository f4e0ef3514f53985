//! Every refusal moat can give, and the one place where each becomes a status code and an
//! `application/problem+json` body (design §6). Stages return a `Rejection`; only
//! [`Rejection::into_response`] turns it into bytes on the wire.

mod detail;
mod grpc;
mod problems;
mod quota;
mod response;
mod stage;

pub use self::grpc::{GRPC_STATUS, GrpcCode};
// For `grpc::encoding`'s test that the list is what it reads.
#[cfg(test)]
pub use self::grpc::GRPC_ENCODINGS;
pub use self::problems::{FieldError, HostProblem, PathProblem};
pub use self::quota::QuotaUsage;
pub use self::response::Audience;
pub use self::stage::Stage;

use http::StatusCode;
use http::header::HeaderValue;

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
    /// Stage 6: the bodies being read already fill `limits.max_buffered_body_bytes`, and
    /// no room came free within `limits.body_buffer_wait`.
    BodiesOverloaded,
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
    /// A gRPC call framed wrong, or not over HTTP/2: the reason says which, never the bytes.
    InvalidGrpcMessage(&'static str),
    /// A gRPC call's `message`th message (from 1) does not match its method's input type.
    GrpcMessageSchema {
        message: u64,
        errors: Vec<FieldError>,
    },
    /// A gRPC message's length prefix, or its size decompressed, is past
    /// `grpc.max_message_bytes`.
    GrpcMessageTooLarge {
        limit: u64,
    },
    /// A gRPC call's `grpc-encoding` names a compression moat cannot read.
    GrpcEncodingUnsupported,
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
    /// `responses.mode: enforce`: the model's answer is not one the spec declares (its
    /// status or content type); the detail names which, never the body.
    UpstreamResponseInvalid(String),
    /// `responses.conceal_upstream_errors`: the model answered with this 5xx; its body is
    /// replaced (and logged), its status kept.
    UpstreamError {
        status: StatusCode,
    },
    /// A fault inside moat at `stage` (a verification task that panicked, say); the detail
    /// goes to the log, never to the client.
    Internal(Stage),
}

impl Rejection {
    /// The HTTP status of each refusal. This, [`Rejection::code`] and [`Rejection::stage`]
    /// are the one table: exhaustive matches, so a new variant does not compile until it
    /// has its row in each (and in the test's).
    pub fn status(&self) -> StatusCode {
        use Rejection as R;
        use StatusCode as S;
        match self {
            R::InvalidPath(_)
            | R::InvalidHost(_)
            | R::MaxTokensExceeded { .. }
            | R::InvalidLlmRequest(_)
            | R::InvalidParameters(_)
            | R::BodyRequired
            | R::UnexpectedBody
            | R::InvalidJson(_)
            | R::BodySchema(_)
            | R::BodyUnreadable
            | R::InvalidGrpcMessage(_)
            | R::GrpcMessageSchema { .. } => S::BAD_REQUEST,
            R::UriTooLong { .. } => S::URI_TOO_LONG,
            R::HeadersTooLarge { .. } => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            R::RouteNotFound => S::NOT_FOUND,
            R::MethodNotAllowed { .. } => S::METHOD_NOT_ALLOWED,
            R::CredentialsMissing | R::InvalidToken | R::TokenExpired => S::UNAUTHORIZED,
            R::InvalidApiKey | R::InvalidBearerKey => S::UNAUTHORIZED,
            R::OperationNotAllowed | R::InsufficientScope { .. } | R::ModelNotAllowed => {
                S::FORBIDDEN
            }
            R::RateLimited { .. }
            | R::QuotaExceeded(_)
            | R::TokenBudgetExceeded { .. }
            | R::TooManyStreams { .. } => S::TOO_MANY_REQUESTS,
            R::Overloaded | R::BodiesOverloaded => S::SERVICE_UNAVAILABLE,
            R::LimitStoreUnavailable | R::KeyStoreStale => S::SERVICE_UNAVAILABLE,
            R::UnsupportedMediaType { .. } => S::UNSUPPORTED_MEDIA_TYPE,
            R::BodyTooLarge { .. } | R::GrpcMessageTooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            R::BodyTimeout => S::REQUEST_TIMEOUT,
            R::GrpcEncodingUnsupported => S::NOT_IMPLEMENTED,
            R::UpstreamUnavailable | R::UpstreamExceededMaxTokens { .. } => S::BAD_GATEWAY,
            R::UpstreamTimeout => S::GATEWAY_TIMEOUT,
            R::UpstreamResponseInvalid(_) => S::BAD_GATEWAY,
            R::UpstreamError { status } => *status,
            R::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case reason clients and dashboards match on.
    pub fn code(&self) -> &'static str {
        use Rejection as R;
        match self {
            R::InvalidPath(_) => "invalid_path",
            R::UriTooLong { .. } => "uri_too_long",
            R::HeadersTooLarge { .. } => "headers_too_large",
            R::InvalidHost(_) => "invalid_host",
            R::RouteNotFound => "route_not_found",
            R::MethodNotAllowed { .. } => "method_not_allowed",
            R::CredentialsMissing => "credentials_missing",
            R::InvalidToken => "invalid_token",
            R::TokenExpired => "token_expired",
            R::InvalidApiKey | R::InvalidBearerKey => "invalid_api_key",
            R::Overloaded | R::BodiesOverloaded => "overloaded",
            R::OperationNotAllowed => "operation_not_allowed",
            R::InsufficientScope { .. } => "insufficient_scope",
            R::RateLimited { .. } => "rate_limited",
            R::QuotaExceeded(_) => "quota_exceeded",
            R::LimitStoreUnavailable => "limit_store_unavailable",
            R::KeyStoreStale => "key_store_stale",
            R::ModelNotAllowed => "model_not_allowed",
            R::MaxTokensExceeded { .. } => "max_tokens_exceeded",
            R::TokenBudgetExceeded { .. } => "token_budget_exceeded",
            R::TooManyStreams { .. } => "too_many_streams",
            R::InvalidLlmRequest(_) => "invalid_llm_request",
            R::InvalidParameters(_) => "invalid_parameters",
            R::UnsupportedMediaType { .. } => "unsupported_media_type",
            R::BodyRequired => "body_required",
            R::UnexpectedBody => "unexpected_body",
            R::InvalidJson(_) => "invalid_json",
            R::BodySchema(_) => "body_schema",
            R::BodyTooLarge { .. } => "body_too_large",
            R::BodyTimeout => "body_timeout",
            R::BodyUnreadable => "body_unreadable",
            R::InvalidGrpcMessage(_) => "invalid_grpc_message",
            R::GrpcMessageSchema { .. } => "grpc_message_schema",
            R::GrpcMessageTooLarge { .. } => "grpc_message_too_large",
            R::GrpcEncodingUnsupported => "grpc_encoding_unsupported",
            R::UpstreamUnavailable => "upstream_unavailable",
            R::UpstreamTimeout => "upstream_timeout",
            R::UpstreamExceededMaxTokens { .. } => "upstream_exceeded_max_tokens",
            R::UpstreamResponseInvalid(_) => "upstream_response_invalid",
            R::UpstreamError { .. } => "upstream_error",
            R::Internal(_) => "internal_error",
        }
    }

    /// The field-level failures listed in the problem's `errors`.
    pub fn errors(&self) -> &[FieldError] {
        match self {
            Rejection::InvalidParameters(errors) | Rejection::BodySchema(errors) => errors,
            Rejection::GrpcMessageSchema { errors, .. } => errors,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests;
