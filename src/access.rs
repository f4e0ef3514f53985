//! The access log and request metrics (design §7). A [`Completion`] rides on the response
//! body and is written when that body ends or is dropped, so every request gives exactly
//! one log line and one count, with its full duration, however it ended.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode, Uri};
use serde::Serialize;

use crate::forward::RequestId;
use crate::metrics::{Metrics, OperationLabel, PhaseLabels, RejectionLabels, RequestLabels};
use crate::reject::Rejection;
use crate::status::{Outcome, Refusal};
use crate::telemetry;
use crate::trail::Trail;

pub struct Completion {
    metrics: Arc<Metrics>,
    started: Instant,
    pub request_id: RequestId,
    client_ip: IpAddr,
    method: Method,
    uri: Uri,
    /// `unrouted` until the trail names an operation.
    unrouted: OperationLabel,
    /// What the admission stages decided: operation, route, caller, shadowed failures.
    pub trail: Trail,
    pub status: StatusCode,
    rejection: Option<(&'static str, &'static str)>,
    pub upstream_time: Option<Duration>,
    pub bytes_sent: u64,
    /// The body reached its end (false: the client went away or the stream broke).
    pub finished: bool,
    pub stream_error: Option<String>,
    /// An LLM operation's (prompt, completion) tokens, as metered.
    pub tokens: Option<(u64, u64)>,
    /// moat ended the LLM stream at its token budget.
    pub stream_cut: bool,
    /// Keeps the connection counted as busy until the response is done (see `idle`), and
    /// tells it whether the client reset this request (see `connection`).
    pub stream: Option<crate::connection::RequestGuard>,
}

impl Completion {
    pub fn start(
        metrics: Arc<Metrics>,
        started: Instant,
        request_id: RequestId,
        client_ip: IpAddr,
        method: Method,
        uri: Uri,
        operation: OperationLabel,
    ) -> Self {
        Self {
            metrics,
            started,
            request_id,
            client_ip,
            method,
            uri,
            unrouted: operation,
            trail: Trail::default(),
            // Until a response exists: a request dropped before then was cancelled by its
            // client (nginx's 499 "client closed request").
            status: CLIENT_CLOSED_REQUEST,
            rejection: None,
            upstream_time: None,
            bytes_sent: 0,
            finished: false,
            stream_error: None,
            tokens: None,
            stream_cut: false,
            stream: None,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn rejected(&mut self, rejection: &Rejection) {
        self.rejection = Some((rejection.stage().as_str(), rejection.code()));
    }
}

/// nginx's non-standard status for a request whose client went away before any response.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

impl Drop for Completion {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        // The client went away before the response ended (not a stream the upstream broke).
        let client_reset = !self.finished && self.stream_error.is_none();
        if let Some(guard) = &mut self.stream {
            guard.client_reset = client_reset;
        }
        let metrics = &self.metrics;
        if client_reset {
            let phase = if self.status == CLIENT_CLOSED_REQUEST {
                "before_response"
            } else {
                "during_response"
            };
            metrics
                .cancelled
                .get_or_create(&PhaseLabels { phase })
                .inc();
        }
        metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: self.operation().clone(),
                status: self.status.as_u16(),
            })
            .inc();
        metrics.board.record(&Outcome {
            operation: self.operation(),
            duration,
            upstream: self.upstream_time,
            refused: self.rejection.is_some(),
            shadowed: !self.trail.shadowed.is_empty(),
        });
        if let Some((stage, code)) = self.rejection {
            metrics
                .rejections
                .get_or_create(&RejectionLabels { stage, code })
                .inc();
        }
        for shadowed in &self.trail.shadowed {
            let labels = RejectionLabels {
                stage: shadowed.stage().as_str(),
                code: shadowed.code(),
            };
            metrics.shadow_rejections.get_or_create(&labels).inc();
        }
        if tracing::enabled!(target: "moat::access", tracing::Level::INFO) {
            self.write_line(duration);
        }
        self.post_to_board();
    }
}

impl Completion {
    /// The status page's list of the last refusals (and shadowed failures). Called last, so
    /// the caller's names move there instead of being copied: the log line is written.
    fn post_to_board(&mut self) {
        if self.rejection.is_none() && self.trail.shadowed.is_empty() {
            return;
        }
        let at = SystemTime::now();
        for shadowed in std::mem::take(&mut self.trail.shadowed) {
            let caller = (self.trail.key_id.clone(), self.trail.subject.clone());
            let labels = (shadowed.stage().as_str(), shadowed.code());
            let refusal = self.refusal(at, labels, shadowed.status(), caller);
            self.metrics.board.shadowed(refusal);
        }
        if let Some(labels) = self.rejection {
            let caller = (self.trail.key_id.take(), self.trail.subject.take());
            let refusal = self.refusal(at, labels, self.status, caller);
            self.metrics.board.refused(refusal);
        }
    }

    fn refusal(
        &self,
        at: SystemTime,
        (stage, code): (&'static str, &'static str),
        status: StatusCode,
        (key_id, subject): (Option<String>, Option<String>),
    ) -> Refusal {
        Refusal {
            at,
            request_id: self.request_id.clone(),
            operation: self.operation().clone(),
            status: status.as_u16(),
            stage,
            code,
            key_id,
            subject,
        }
    }
}

impl Completion {
    /// The `operation` label: the trail's, or `unrouted`.
    fn operation(&self) -> &OperationLabel {
        self.trail.operation.as_ref().unwrap_or(&self.unrouted)
    }

    /// Writes the access-log line. Serialised with serde straight into the log buffer rather
    /// than through `tracing`'s field visitors: on the hot path that measured at 17% of
    /// throughput against ~5% this way. The layout matches moat's other JSON log lines, and
    /// `MOAT_LOG` still switches it (`moat::access=off`).
    fn write_line(&self, duration: Duration) {
        let (stage, code) = self.rejection.unzip();
        let line = AccessLine {
            timestamp: Timestamp(SystemTime::now()),
            level: "INFO",
            message: "request",
            target: "moat::access",
            request_id: self.request_id.as_str(),
            client: self.client_ip,
            method: self.method.as_str(),
            path: self.uri.path(),
            operation: self.operation(),
            route: self.trail.route.as_deref(),
            subject: self.trail.subject.as_deref(),
            key_id: self.trail.key_id.as_deref(),
            status: self.status.as_u16(),
            stage,
            code,
            shadow_code: self.trail.shadowed.first().map(Rejection::code),
            duration_ms: duration.as_secs_f64() * 1000.0,
            upstream_ms: self.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
            bytes_sent: self.bytes_sent,
            completed: self.finished,
            stream_error: self.stream_error.as_deref(),
            prompt_tokens: self.tokens.map(|(prompt, _)| prompt),
            completion_tokens: self.tokens.map(|(_, completion)| completion),
            stream_cut: self.stream_cut,
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
}

/// RFC 3339 with microseconds, as the other log lines write it.
struct Timestamp(SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_micros(self.0))
    }
}
