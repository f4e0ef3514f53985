//! The access log and request metrics (design §7). An [`AccessRecord`] is begun when a
//! request's head arrives — as if its client went away before an answer (nginx's 499) —
//! the stages write its trail, the answer sets its status once, and it rides on the
//! response body ([`Recorded`]) to be written when that body ends or is dropped: exactly
//! one log line and one count per request, with its full duration, however it ended.

mod body;
mod line;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{Method, StatusCode, Uri};

pub use self::body::{Recorded, Tokens, TokensOf};
use crate::connection::RequestGuard;
use crate::ids::{Name, OperationLabel, RequestId, unrouted};
use crate::metrics::{Metrics, PhaseLabels, RequestLabels};
use crate::reject::{FieldError, GRPC_STATUS, Rejection};
use crate::status::{Outcome, Refusal};
use crate::trail::Trail;

/// Who asked for what: the request's head as the record keeps it.
pub struct RequestHead {
    pub request_id: RequestId,
    pub client: IpAddr,
    pub method: Method,
    pub uri: Uri,
}

pub struct AccessRecord {
    metrics: Arc<Metrics>,
    started: Instant,
    request_id: RequestId,
    client_ip: IpAddr,
    method: Method,
    uri: Uri,
    /// What the admission stages decided: operation, route, caller, shadowed failures.
    trail: Trail,
    status: StatusCode,
    rejection: Option<(&'static str, &'static str)>,
    /// A validation refusal's field errors: pointers and messages, never values.
    errors: Vec<FieldError>,
    upstream_time: Option<Duration>,
    bytes_sent: u64,
    /// The body reached its end (false: the client went away or the stream broke).
    finished: bool,
    stream_error: Option<String>,
    /// An LLM operation's tokens, as metered.
    tokens: Option<Tokens>,
    /// A gRPC call's `grpc-status`: from the response head (Trailers-Only, moat's refusals)
    /// or the trailers that end its body.
    grpc_status: Option<u16>,
    /// Keeps the connection counted as busy until the response is done (see `idle`), and
    /// tells it whether the client reset this request (see `connection`).
    stream: RequestGuard,
}

impl AccessRecord {
    /// A record of a request whose head just arrived: until it is answered, it stands as
    /// cancelled by its client (499).
    pub fn begin(
        metrics: Arc<Metrics>,
        started: Instant,
        head: RequestHead,
        stream: RequestGuard,
    ) -> Self {
        Self {
            metrics,
            started,
            request_id: head.request_id,
            client_ip: head.client,
            method: head.method,
            uri: head.uri,
            trail: Trail::default(),
            status: CLIENT_CLOSED_REQUEST,
            rejection: None,
            errors: Vec::new(),
            upstream_time: None,
            bytes_sent: 0,
            finished: false,
            stream_error: None,
            tokens: None,
            grpc_status: None,
            stream,
        }
    }

    /// When the request head arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where the stages write what they decided.
    pub fn trail(&mut self) -> &mut Trail {
        &mut self.trail
    }

    /// The request and the trail its stages wrote, at once (for `admit`).
    pub fn request_and_trail(&mut self) -> (&RequestId, &mut Trail) {
        (&self.request_id, &mut self.trail)
    }

    /// The request was answered with `status`: `refused` the refusal when moat refused it
    /// (its stage, code and field errors are kept), `upstream_time` how long the model took to its response head, `tokens`
    /// those of an LLM answer moat withheld.
    pub fn answered(
        &mut self,
        status: StatusCode,
        refused: Option<&Rejection>,
        upstream_time: Option<Duration>,
        tokens: Option<Tokens>,
    ) {
        self.status = status;
        if let Some(rejection) = refused {
            self.rejection = Some((rejection.stage().as_str(), rejection.code()));
            self.errors = rejection.errors().to_vec();
        }
        self.upstream_time = upstream_time;
        self.tokens = tokens;
    }

    /// The `grpc-status` in `headers` (a response head or trailers), if there is one.
    pub fn grpc_status_in(&mut self, headers: &http::HeaderMap) {
        let status = headers
            .get(GRPC_STATUS)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        if status.is_some() {
            self.grpc_status = status;
        }
    }

    /// `bytes` of the response body reached the client.
    fn sent(&mut self, bytes: usize) {
        self.bytes_sent += bytes as u64;
    }

    /// The `operation` label: the trail's, or `unrouted`.
    pub fn operation(&self) -> OperationLabel {
        self.trail.operation.clone().unwrap_or_else(unrouted)
    }
}

/// nginx's non-standard status for a request whose client went away before any response.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        // The client went away before the response ended (not a stream the upstream broke).
        let client_reset = !self.finished && self.stream_error.is_none();
        self.stream.client_reset = client_reset;
        if client_reset {
            self.count_cancelled();
        }
        let operation = self.operation();
        if let Some(cut) = self.tokens.and_then(|t| t.invalid_event) {
            // Known only as the stream passed. Cut (`enforce`): the answer was refused part
            // way, and is counted and shown with the refusals; else with the shadowed ones.
            let why = "a streamed event does not match its declared schema";
            let violation = Rejection::UpstreamResponseInvalid(why.to_owned());
            match cut && self.rejection.is_none() {
                true => self.rejection = Some((violation.stage().as_str(), violation.code())),
                false => self.trail.shadowed.push(violation),
            }
        }
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: operation.clone(),
                status: self.status.as_u16(),
            })
            .inc();
        self.metrics.board.record(&Outcome {
            operation: &operation,
            duration,
            upstream: self.upstream_time,
            refused: self.rejection.is_some(),
            shadowed: !self.trail.shadowed.is_empty(),
        });
        if tracing::enabled!(target: "moat::access", tracing::Level::INFO) {
            self.write_line(duration, &operation);
        }
        self.post_to_board(operation);
    }
}

impl AccessRecord {
    fn count_cancelled(&self) {
        let phase = if self.status == CLIENT_CLOSED_REQUEST {
            "before_response"
        } else {
            "during_response"
        };
        self.metrics
            .cancelled
            .get_or_create(&PhaseLabels { phase })
            .inc();
    }

    /// The refusal (and shadowed failures) to the status board, which counts them for the
    /// page and for `/metrics` alike. Called last, so the caller's names move there instead
    /// of being copied: the log line is written.
    fn post_to_board(&mut self, operation: OperationLabel) {
        if self.rejection.is_none() && self.trail.shadowed.is_empty() {
            return;
        }
        let at = SystemTime::now();
        for shadowed in std::mem::take(&mut self.trail.shadowed) {
            let caller = (self.trail.key_id.clone(), self.trail.subject.clone());
            let labels = (shadowed.stage().as_str(), shadowed.code());
            let mut refusal = self.refusal(at, &operation, labels, shadowed.status(), caller);
            refusal.errors = shadowed.errors().to_vec();
            self.metrics.board.shadowed(refusal);
        }
        if let Some(labels) = self.rejection {
            let caller = (self.trail.key_id.take(), self.trail.subject.take());
            let mut refusal = self.refusal(at, &operation, labels, self.status, caller);
            refusal.errors = std::mem::take(&mut self.errors);
            self.metrics.board.refused(refusal);
        }
    }

    fn refusal(
        &self,
        at: SystemTime,
        operation: &OperationLabel,
        (stage, code): (&'static str, &'static str),
        status: StatusCode,
        (key_id, subject): (Option<Name>, Option<Name>),
    ) -> Refusal {
        Refusal {
            at,
            request_id: self.request_id.clone(),
            operation: operation.clone(),
            status: status.as_u16(),
            stage,
            code,
            key_id,
            subject,
            errors: Vec::new(),
        }
    }
}
