//! `moat explain --response-status … [--response-body …]`: the answer the model might give
//! to the request, held to the spec as `serve` holds it (`respond`) — the status, the
//! content type, the JSON body against its schema (or an event stream's events against
//! theirs), `strip_undeclared` and concealment — and what the client would get. Like the
//! rest of the report it names pointers and reasons, never a value of the body.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use prometheus_client::metrics::counter::Counter;

use super::Explanation;
use crate::config::{ResponseMode, ResponsePolicy};
use crate::llm::{EventCheck, Feed, Meter};
use crate::reject::Rejection;
use crate::respond::{self, Check};
use crate::snapshot::Snapshot;
use crate::spec::{ResponseMedia, Responses};
use crate::validate::json::JsonLimits;

/// `moat explain`'s answer from the model, to hold to the spec as `serve` would.
#[derive(Debug, clap::Args)]
pub struct ResponseArgs {
    /// The status the model answers with: the answer is explained too (`responses:`).
    #[arg(long = "response-status")]
    pub status: Option<u16>,
    /// The answer's body, or @FILE to read it from a file.
    #[arg(long = "response-body", requires = "status")]
    pub body: Option<String>,
    /// The answer's Content-Type (default with a body: application/json).
    #[arg(long = "response-type", requires = "status")]
    pub content_type: Option<String>,
}

/// The answer to explain, as the command line gave it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
}

const LABEL: &str = "7 response";

impl Explanation {
    /// The answer's verdict under `policy`, for an operation that declares `declared`;
    /// `relayed` is false when the client would not get the model's answer.
    pub(super) fn response(
        &mut self,
        snapshot: &Snapshot,
        (declared, policy): (Option<Arc<Responses>>, ResponsePolicy),
        unread: Option<&'static str>,
        answer: &Answer,
    ) -> Result<(), String> {
        let status = StatusCode::from_u16(answer.status)
            .map_err(|_| format!("--response-status {} is not a status", answer.status))?;
        let headers = head(answer)?;
        let mode = policy.mode.as_str();
        let check = respond::check(&policy, declared.as_deref(), status, &headers);
        let body = answer.body.as_deref().unwrap_or_default();
        match check {
            Check::Relay => self.answer_pass(&format!(
                "relayed as the model wrote it (responses.mode: {mode}{})",
                why_unchecked(declared.as_deref(), &policy)
            )),
            Check::Validate(_) if unread.is_some() => self.answer_pass(&format!(
                "relayed unchecked ({}): as serve, which does not read it whole",
                unread.unwrap_or_default()
            )),
            Check::Validate(_) if body.len() as u64 > policy.max_body_bytes => {
                self.answer_pass("relayed unchecked: past responses.max_body_bytes");
            }
            Check::Validate(media) => self.body(media, &policy, body, snapshot),
            Check::Events(_) if unread != Some("metered") => self.answer_pass(
                "relayed unchecked: the event stream of an operation moat does not meter",
            ),
            Check::Events(media) => self.events(media, &policy, body, snapshot),
            Check::Shadowed(violation, _) => self.violation(Ok(violation)),
            Check::Refuse(violation, _) => self.violation(Err(violation)),
            Check::Conceal(status) => {
                self.answer_fail(&Rejection::UpstreamError { status }, "FAIL");
                self.note("conceal_upstream_errors: the body is replaced, its ends logged");
            }
        }
        Ok(())
    }

    /// A JSON body against its media's schema, as `pipeline::held` checks it.
    fn body(
        &mut self,
        media: &ResponseMedia,
        policy: &ResponsePolicy,
        body: &[u8],
        snapshot: &Snapshot,
    ) {
        let limits = JsonLimits::of(&snapshot.config.limits);
        let strip = policy.strip_undeclared && media.declared.is_some();
        match respond::json_verdict(body, media, &limits, strip) {
            Ok(value) => {
                let declared = media.declared.as_deref();
                let removed = (declared.zip(value.filter(|_| strip)))
                    .and_then(|(declared, value)| respond::stripped(declared, value));
                self.answer_pass(&match removed {
                    Some((_, n)) => format!(
                        "the body matches its schema; strip_undeclared removes {n} undeclared \
                         member(s) before relaying"
                    ),
                    None => format!(
                        "the body matches its schema (responses.mode: {})",
                        policy.mode.as_str()
                    ),
                });
            }
            Err((reason, _)) => self.violation(respond::violation(policy, reason)),
        }
    }

    /// An event stream fed through the LLM meter with its event check, as `serve` does.
    fn events(
        &mut self,
        media: &ResponseMedia,
        policy: &ResponsePolicy,
        body: &[u8],
        snapshot: &Snapshot,
    ) {
        let Some(schema) = media.events.clone() else {
            return;
        };
        let check = EventCheck {
            schema,
            plan: media.events_plan.clone(),
            enforce: policy.mode == ResponseMode::Enforce,
            limits: JsonLimits::of(&snapshot.config.limits),
            violations: Counter::default(),
        };
        let mut meter = Meter::new(true, true, 0, None, false).checking(Some(check));
        let cut = matches!(meter.feed(Bytes::copy_from_slice(body)), Feed::Cut(_));
        let cut = cut || meter.end().is_some() && meter.cut;
        match (meter.invalid_event, cut) {
            (false, _) => self.answer_pass("each JSON event matches its schema"),
            (true, true) => {
                let reason = meter.invalid_reason().unwrap_or_default();
                self.answer_line("FAIL", &format!("an event does not match its schema ({reason}): the stream ends before it with moat's error event"));
                self.answered = false;
            }
            (true, false) => self.answer_line(
                "SHADOW",
                "an event does not match its schema: relayed, logged and counted",
            ),
        }
    }

    fn violation(&mut self, verdict: Result<Rejection, Rejection>) {
        match verdict {
            Ok(shadowed) => {
                self.answer_fail(&shadowed, "SHADOW");
                self.note("shadow mode: logged and counted, relayed anyway");
            }
            Err(refusal) => self.answer_fail(&refusal, "FAIL"),
        }
    }

    fn answer_pass(&mut self, reason: &str) {
        self.answer_line("pass", reason);
    }

    fn answer_line(&mut self, word: &str, reason: &str) {
        self.line(&format!("{LABEL:<16} {word}  {reason}"));
    }

    fn answer_fail(&mut self, rejection: &Rejection, word: &str) {
        self.answered &= word != "FAIL";
        self.answer_line(
            word,
            &format!(
                "{} {}: {}",
                rejection.status().as_u16(),
                rejection.code(),
                rejection.detail()
            ),
        );
    }
}

/// Why an answer goes unchecked, after the mode (with its leading separator).
fn why_unchecked(declared: Option<&Responses>, policy: &ResponsePolicy) -> &'static str {
    match (declared, policy.mode) {
        (_, ResponseMode::Off) => "",
        (None, _) => "; the spec declares no responses for this operation",
        (Some(_), _) => "; no schema is declared for this answer",
    }
}

/// The answer's head: its content type (JSON when a body is given without one) and length.
fn head(answer: &Answer) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let content_type = match (&answer.content_type, &answer.body) {
        (Some(given), _) => Some(given.as_str()),
        (None, Some(_)) => Some("application/json"),
        (None, None) => None,
    };
    if let Some(content_type) = content_type {
        let value = HeaderValue::from_str(content_type)
            .map_err(|_| "--response-type is not a header value".to_owned())?;
        headers.insert(CONTENT_TYPE, value);
    }
    let length = answer.body.as_ref().map_or(0, Vec::len);
    headers.insert(CONTENT_LENGTH, length.into());
    Ok(headers)
}
