//! The parts of a refusal's problem: the rules stage 1 refuses a request by (what about its
//! path or its `Host` could be read two ways — each names the rule, never the offending
//! bytes, so nothing the client sent is echoed), and one field's error of stage 6.

use serde::Serialize;

/// One entry of a problem's `errors` list (filled by the validation stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub location: &'static str,
    pub pointer: String,
    pub message: String,
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
    pub(super) fn detail(self) -> &'static str {
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
