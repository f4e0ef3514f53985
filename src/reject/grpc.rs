//! A [`Rejection`] as a gRPC client reads it: a Trailers-Only response (HTTP 200,
//! `content-type: application/grpc`, `grpc-status`, a percent-encoded `grpc-message`),
//! moat's stable code and the request id as metadata, and — for refusals a client should
//! wait on — `google.rpc.RetryInfo` / `QuotaFailure` in `grpc-status-details-bin`.
//!
//! The gRPC code is read off the refusal's HTTP status ([`GrpcCode::of_status`]), so the
//! one table in `reject/mod.rs` decides both answers and nothing here can drift from it.

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use prost::Message as _;

use super::Rejection;

/// The gRPC status codes moat answers with (grpc/doc/statuscodes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GrpcCode {
    Ok = 0,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code of a refusal with this HTTP status: the mapping the README's table shows.
    pub fn of_status(status: StatusCode) -> GrpcCode {
        match status.as_u16() {
            400 | 414 | 415 => GrpcCode::InvalidArgument,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 | 405 | 501 => GrpcCode::Unimplemented,
            408 | 504 => GrpcCode::DeadlineExceeded,
            413 | 429 | 431 => GrpcCode::ResourceExhausted,
            502 | 503 => GrpcCode::Unavailable,
            _ => GrpcCode::Internal,
        }
    }

    pub fn header(self) -> HeaderValue {
        HeaderValue::from(u16::from(self as u8))
    }
}

/// The status of a gRPC call, in its response head (Trailers-Only) or its trailers.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
const MOAT_CODE: HeaderName = HeaderName::from_static("moat-code");

/// The `grpc-encoding`s moat reads (`grpc::encoding`), listed in `grpc-accept-encoding` when
/// it refuses another.
pub const GRPC_ENCODINGS: &str = "identity,deflate,gzip";

impl Rejection {
    pub fn grpc_code(&self) -> GrpcCode {
        GrpcCode::of_status(self.status())
    }

    /// The Trailers-Only response: every field in the one header block, no body.
    pub(super) fn into_grpc_response(self, _request_id: &str) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        let code = self.grpc_code();
        let detail = self.detail();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(GRPC_STATUS, code.header());
        if let Ok(message) = HeaderValue::from_str(&percent_encoded(&detail)) {
            headers.insert(GRPC_MESSAGE, message);
        }
        headers.insert(MOAT_CODE, HeaderValue::from_static(self.code()));
        if matches!(self, Rejection::GrpcEncodingUnsupported) {
            // The gRPC spec's answer to an encoding the server cannot read: what it can.
            let accepted = HeaderValue::from_static(GRPC_ENCODINGS);
            headers.insert(HeaderName::from_static("grpc-accept-encoding"), accepted);
        }
        if let Some(details) = self.status_details(code, &detail) {
            headers.insert(GRPC_DETAILS, details);
        }
        debug_assert_eq!(response.status(), StatusCode::OK);
        response
    }

    /// `google.rpc.Status` with the details a client acts on: when to retry, which quota is
    /// spent, which fields of a message are wrong.
    fn status_details(&self, code: GrpcCode, detail: &str) -> Option<HeaderValue> {
        let details = match self {
            Rejection::GrpcMessageSchema { errors, .. } => vec![bad_request(errors)],
            _ => self.retry_details(detail)?,
        };
        let status = Status {
            code: code as i32,
            message: detail.to_owned(),
            details,
        };
        let encoded =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
        HeaderValue::from_str(&encoded).ok()
    }

    /// `RetryInfo`, and `QuotaFailure` for a spent quota or budget; `None` for a refusal a
    /// retry does not cure.
    fn retry_details(&self, detail: &str) -> Option<Vec<prost_types::Any>> {
        use Rejection as R;
        let (retry_after, quota) = match self {
            R::RateLimited { retry_after, .. } => (*retry_after, false),
            R::QuotaExceeded(usage) => (usage.reset, true),
            R::TokenBudgetExceeded { retry_after, .. } => (*retry_after, true),
            R::TooManyStreams { .. }
            | R::Overloaded
            | R::BodiesOverloaded
            | R::LimitStoreUnavailable
            | R::KeyStoreStale => (1, false),
            _ => return None,
        };
        let retry_delay = Some(prost_types::Duration {
            seconds: i64::try_from(retry_after).unwrap_or(i64::MAX),
            nanos: 0,
        });
        let mut details = vec![any("google.rpc.RetryInfo", RetryInfo { retry_delay })];
        if quota {
            let violation = Violation {
                subject: "api_key".to_owned(),
                description: detail.to_owned(),
            };
            let failure = QuotaFailure {
                violations: vec![violation],
            };
            details.push(any("google.rpc.QuotaFailure", failure));
        }
        Some(details)
    }
}

/// `google.rpc.BadRequest`: each field path and what is wrong with it (never the value).
fn bad_request(errors: &[super::FieldError]) -> prost_types::Any {
    let field_violations = errors
        .iter()
        .map(|error| FieldViolation {
            field: error.pointer.clone(),
            description: error.message.clone(),
        })
        .collect();
    any("google.rpc.BadRequest", BadRequest { field_violations })
}

fn any(name: &str, message: impl prost::Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{name}"),
        value: message.encode_to_vec(),
    }
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself
/// (PROTOCOL-HTTP2.md). Written out because the set is gRPC's own, not a URL's.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b' '..=b'~' if byte != b'%' => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `google.rpc.Status` (google/rpc/status.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.RetryInfo` (google/rpc/error_details.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

/// `google.rpc.QuotaFailure`.
#[derive(Clone, PartialEq, prost::Message)]
struct QuotaFailure {
    #[prost(message, repeated, tag = "1")]
    violations: Vec<Violation>,
}

/// `google.rpc.BadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    field_violations: Vec<FieldViolation>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FieldViolation {
    #[prost(string, tag = "1")]
    field: String,
    #[prost(string, tag = "2")]
    description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Violation {
    #[prost(string, tag = "1")]
    subject: String,
    #[prost(string, tag = "2")]
    description: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reject::{Audience, QuotaUsage};

    #[test]
    fn refusals_map_to_the_codes_the_readme_lists() {
        let cases = [
            (Rejection::CredentialsMissing, 16),
            (Rejection::OperationNotAllowed, 7),
            (Rejection::RouteNotFound, 12),
            (Rejection::BodyTooLarge { limit: 1 }, 8),
            (Rejection::InvalidGrpcMessage("x"), 3),
            (Rejection::UpstreamUnavailable, 14),
            (Rejection::UpstreamTimeout, 4),
            (Rejection::Internal(crate::reject::Stage::Forward), 13),
        ];
        for (rejection, code) in cases {
            assert_eq!(rejection.grpc_code() as u8, code, "{rejection:?}");
        }
    }

    #[test]
    fn a_rate_limit_is_trailers_only_with_retry_info() {
        let rejection = Rejection::RateLimited {
            retry_after: 7,
            quota: None,
        };
        let response = rejection.into_response("req-1", Audience::Grpc);
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["grpc-status"], "8");
        assert_eq!(headers["moat-code"], "rate_limited");
        assert_eq!(headers["grpc-message"], "rate limit exceeded; retry in 7s");
        assert!(response.body().is_empty());
        let details = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(headers["grpc-status-details-bin"].as_bytes())
            .unwrap();
        let status = Status::decode(details.as_slice()).unwrap();
        assert_eq!(status.code, 8);
        assert_eq!(
            status.details[0].type_url,
            "type.googleapis.com/google.rpc.RetryInfo"
        );
        let retry = RetryInfo::decode(status.details[0].value.as_slice()).unwrap();
        assert_eq!(retry.retry_delay.unwrap().seconds, 7);
    }

    #[test]
    fn a_spent_quota_says_which_and_when() {
        let usage = QuotaUsage {
            limit: 10,
            remaining: 0,
            reset: 3600,
            window: 86_400,
        };
        let response = Rejection::QuotaExceeded(usage).into_response("r", Audience::Grpc);
        let details = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(response.headers()["grpc-status-details-bin"].as_bytes())
            .unwrap();
        let status = Status::decode(details.as_slice()).unwrap();
        let types: Vec<&str> = status.details.iter().map(|d| d.type_url.as_str()).collect();
        assert_eq!(
            types,
            [
                "type.googleapis.com/google.rpc.RetryInfo",
                "type.googleapis.com/google.rpc.QuotaFailure"
            ]
        );
    }

    /// docs/grpc.md's table says what `of_status` does, row by row.
    #[test]
    fn the_documented_table_is_the_mapping() {
        let doc = include_str!("../../docs/grpc.md");
        let rows: Vec<&str> = doc
            .lines()
            .filter(|line| line.starts_with("| 4") || line.starts_with("| 5"))
            .collect();
        assert_eq!(rows.len(), 8, "{rows:?}");
        for row in rows {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let code: u8 = cells[2]
                .split(['(', ')'])
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap();
            for status in cells[1].split(", ") {
                let status = StatusCode::from_u16(status.parse().unwrap()).unwrap();
                assert_eq!(GrpcCode::of_status(status) as u8, code, "{row}");
            }
        }
    }

    #[test]
    fn the_message_is_percent_encoded() {
        assert_eq!(percent_encoded("a b%c\u{e9}\n"), "a b%25c%C3%A9%0A");
    }
}
