//! The access log and request metrics (design §7). A [`Completion`] rides on the response
//! body and is written when that body ends or is dropped, so every request gives exactly
//! one log line and one count, with its full duration, however it ended.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode, Uri};

use crate::metrics::{Metrics, OperationLabel, RejectionLabels, RequestLabels};
use crate::reject::Rejection;

pub struct Completion {
    metrics: Arc<Metrics>,
    started: Instant,
    pub request_id: String,
    client_ip: IpAddr,
    method: Method,
    uri: Uri,
    pub operation: OperationLabel,
    pub status: StatusCode,
    rejection: Option<(&'static str, &'static str)>,
    pub upstream_time: Option<Duration>,
    pub bytes_sent: u64,
    /// The body reached its end (false: the client went away or the stream broke).
    pub finished: bool,
    pub stream_error: Option<String>,
}

impl Completion {
    pub fn start(
        metrics: Arc<Metrics>,
        started: Instant,
        request_id: String,
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
            operation,
            status: StatusCode::OK,
            rejection: None,
            upstream_time: None,
            bytes_sent: 0,
            finished: false,
            stream_error: None,
        }
    }

    pub fn rejected(&mut self, rejection: &Rejection) {
        self.rejection = Some((rejection.stage().as_str(), rejection.code()));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        let metrics = &self.metrics;
        metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: self.operation.clone(),
                status: self.status.as_u16(),
            })
            .inc();
        metrics.request_duration.observe(duration.as_secs_f64());
        if let Some(upstream) = self.upstream_time {
            metrics.upstream_duration.observe(upstream.as_secs_f64());
        }
        if let Some((stage, code)) = self.rejection {
            metrics
                .rejections
                .get_or_create(&RejectionLabels { stage, code })
                .inc();
        }
        let (stage, code) = self.rejection.unzip();
        tracing::info!(
            target: "moat::access",
            request_id = %self.request_id,
            client = %self.client_ip,
            method = %self.method,
            path = self.uri.path(),
            operation = &*self.operation,
            status = self.status.as_u16(),
            stage,
            code,
            duration_ms = duration.as_secs_f64() * 1000.0,
            upstream_ms = self.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
            bytes_sent = self.bytes_sent,
            completed = self.finished,
            stream_error = self.stream_error.as_deref(),
            "request"
        );
    }
}
