//! The access-log line: one JSON object per request on stdout, serialised with serde
//! straight into the log buffer rather than through `tracing`'s field visitors — on the hot
//! path that measured at 17% of throughput against ~5% this way. The layout matches moat's
//! other JSON log lines, and `MOAT_LOG` still switches it (`moat::access=off`).

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::AccessRecord;
use crate::reject::{FieldError, Rejection};
use crate::telemetry;

impl AccessRecord {
    /// Writes the access-log line.
    pub(super) fn write_line(&self, duration: Duration, operation: &str) {
        let (stage, code) = self.rejection.unzip();
        let tokens = self.tokens;
        let line = AccessLine {
            timestamp: Timestamp(SystemTime::now()),
            level: "INFO",
            message: "request",
            target: "moat::access",
            request_id: self.request_id.as_str(),
            client: self.client_ip,
            method: self.method.as_str(),
            path: self.uri.path(),
            operation,
            route: self.trail.route.as_deref(),
            subject: self.trail.subject.as_deref(),
            key_id: self.trail.key_id.as_deref(),
            status: self.status.as_u16(),
            grpc_status: self.grpc_status,
            stage,
            code,
            shadow_code: self.trail.shadowed.first().map(Rejection::code),
            duration_ms: duration.as_secs_f64() * 1000.0,
            upstream_ms: self.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
            bytes_sent: self.bytes_sent,
            completed: self.finished,
            stream_error: self.stream_error.as_deref(),
            prompt_tokens: tokens.map(|t| t.prompt),
            completion_tokens: tokens.map(|t| t.completion),
            stream_cut: tokens.is_some_and(|t| t.cut),
            errors: &self.errors,
        };
        LINE.with_borrow_mut(|buffer| {
            buffer.clear();
            if serde_json::to_writer(&mut *buffer, &line).is_ok() {
                buffer.push(b'\n');
                telemetry::write_line(buffer);
            }
        });
    }
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

#[derive(Serialize)]
struct AccessLine<'a> {
    timestamp: Timestamp,
    level: &'static str,
    message: &'static str,
    target: &'static str,
    request_id: &'a str,
    client: IpAddr,
    method: &'a str,
    path: &'a str,
    operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    grpc_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow_code: Option<&'static str>,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_ms: Option<f64>,
    bytes_sent: u64,
    completed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream_cut: bool,
    /// A validation refusal's pointers and messages (never the values sent).
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

/// RFC 3339 with microseconds, as the other log lines write it.
struct Timestamp(SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_micros(self.0))
    }
}
