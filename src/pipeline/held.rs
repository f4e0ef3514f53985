//! The model's answer held to what the spec declares, before any of it is relayed (see
//! `respond` for the rules): its head first; then, for a JSON body the spec gives a schema
//! and whose `Content-Length` is within `responses.max_body_bytes`, the body read whole
//! and validated. Bodies past the bound, without a length, of LLM operations (metered
//! instead) or of HEAD requests (none) stream on unchecked; an LLM operation's event
//! stream has each event checked by its meter as it passes.

use std::sync::Arc;

use http::Response;
use http::header::CONTENT_LENGTH;

use super::{Answer, Outcome, hold};
use crate::access::AccessRecord;
use crate::admit::Admitted;
use crate::config::{ResponseMode, ResponsePolicy};
use crate::forward::Forwarded;
use crate::llm::EventCheck;
use crate::metrics::{OperationLabels, ReasonLabels, ViolationLabels};
use crate::reject::Rejection;
use crate::respond::{self, Check};
use crate::snapshot::Snapshot;
use crate::spec::{ResponseMedia, Responses};
use crate::validate::json::JsonLimits;

/// What came of the check: the answer to relay (metered if it is an LLM's, its events held
/// to a schema if the spec gives one), or an outcome already decided — a refusal, a
/// concealed error, or a body read and checked.
#[allow(clippy::large_enum_variant)] // both are the common case: boxing either allocates per request
pub(super) enum Held {
    Relay(Forwarded, Option<EventCheck>),
    Done(Outcome),
}

/// What the answer is held to: the spec's `declared` responses under `policy`; `unread`:
/// why its body is not read whole, when it is not — `metered` (an LLM operation's: the
/// meter reads it), `head` (a HEAD's: it has none).
pub(super) struct Answering {
    declared: Option<Arc<Responses>>,
    policy: ResponsePolicy,
    unread: Option<&'static str>,
}

impl Answering {
    /// Taken from `admitted` before it is forwarded (and before its LLM grant is).
    pub(super) fn of<B>(admitted: &mut Admitted<B>) -> Answering {
        let (declared, policy) = admitted.take_responses();
        let unread = admitted.unread();
        Answering {
            declared,
            policy,
            unread,
        }
    }
}

/// Holds `forwarded` to what `answering` says.
pub(super) async fn held(
    snapshot: &Snapshot,
    answering: &Answering,
    forwarded: Forwarded,
    record: &mut AccessRecord,
) -> Held {
    let head = &forwarded.response;
    let policy = &answering.policy;
    let declared = answering.declared.as_deref();
    match respond::check(policy, declared, head.status(), head.headers()) {
        Check::Relay => Held::Relay(forwarded, None),
        Check::Validate(media) => {
            let length = match unchecked(&forwarded, answering.unread, policy.max_body_bytes) {
                Ok(length) => length,
                Err(reason) => return not_checked(reason, forwarded, record),
            };
            // The answer is held in the room request bodies share, so the memory held
            // answers take stays bounded however many arrive at once.
            let Some(_room) = snapshot.bodies.try_reserve(length) else {
                return not_checked("no_room", forwarded, record);
            };
            validated(snapshot, policy, forwarded, media, record).await
        }
        Check::Events(media) if answering.unread == Some("metered") => {
            let Some(schema) = media.events.clone() else {
                return Held::Relay(forwarded, None);
            };
            let check = EventCheck {
                schema,
                plan: media.events_plan.clone(),
                enforce: policy.mode == ResponseMode::Enforce,
                limits: JsonLimits::of(&snapshot.config.limits),
                violations: violations(record, "event"),
            };
            Held::Relay(forwarded, Some(check))
        }
        Check::Events(_) => not_checked("stream", forwarded, record),
        Check::Shadowed(violation, kind) => {
            violations(record, kind).inc();
            record.trail().shadowed.push(violation);
            Held::Relay(forwarded, None)
        }
        Check::Refuse(violation, kind) => {
            violations(record, kind).inc();
            Held::Done(Outcome::Refused(violation, None))
        }
        Check::Conceal(status) => {
            let body = forwarded.response.into_body();
            respond::log_concealed(status, body, record.request_id().as_str()).await;
            Held::Done(Outcome::Refused(Rejection::UpstreamError { status }, None))
        }
    }
}

/// The answer relayed with its body unchecked, counted under `reason`.
fn not_checked(reason: &'static str, forwarded: Forwarded, record: &mut AccessRecord) -> Held {
    let labels = ReasonLabels { reason };
    let metrics = &record.metrics().responses;
    metrics.not_checked.get_or_create(&labels).inc();
    Held::Relay(forwarded, None)
}

/// The counter of the operation's violations of `kind`.
fn violations(
    record: &AccessRecord,
    kind: &'static str,
) -> prometheus_client::metrics::counter::Counter {
    let operation = record.operation();
    let labels = ViolationLabels { operation, kind };
    let metrics = &record.metrics().responses;
    metrics.violations.get_or_create(&labels).clone()
}

/// The body's length, to read it whole; else why it goes on unchecked: `unread`'s reason,
/// `no_length` (streamed), `too_large` (past `limit`).
fn unchecked(
    forwarded: &Forwarded,
    unread: Option<&'static str>,
    limit: u64,
) -> Result<u64, &'static str> {
    let length = forwarded.response.headers().get(CONTENT_LENGTH);
    let length = length.and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    match (unread, length) {
        (Some(reason), _) => Err(reason),
        (None, None) => Err("no_length"),
        (None, Some(length)) if length > limit => Err("too_large"),
        (None, Some(length)) => Ok(length),
    }
}

/// The body read whole and checked against its schema: relayed (a violation counted, in
/// shadow; undeclared members removed with `strip_undeclared`), or refused in enforce.
async fn validated(
    snapshot: &Snapshot,
    policy: &ResponsePolicy,
    forwarded: Forwarded,
    media: &ResponseMedia,
    record: &mut AccessRecord,
) -> Held {
    let upstream_time = forwarded.upstream_time;
    let (mut head, body) = forwarded.response.into_parts();
    let limit = usize::try_from(policy.max_body_bytes).unwrap_or(usize::MAX);
    let mut bytes = match hold::read_whole(body, limit).await {
        Ok(bytes) => bytes,
        Err(refusal) => {
            let refusal = refusal.unwrap_or(Rejection::UpstreamUnavailable);
            return Held::Done(Outcome::Refused(refusal, None));
        }
    };
    let limits = JsonLimits::of(&snapshot.config.limits);
    let strip = policy.strip_undeclared && media.declared.is_some();
    let parsed = match respond::json_verdict(&bytes, media, &limits, strip) {
        Ok(value) => value,
        Err((reason, value)) => {
            violations(record, "body").inc();
            // The original, for the operator: its size and the pointer, never its bytes.
            let request_id = record.request_id().as_str();
            tracing::debug!(request_id, bytes = bytes.len(), %reason, "the model's answer does not match its schema");
            match respond::violation(policy, reason) {
                Err(refusal) => return Held::Done(Outcome::Refused(refusal, None)),
                Ok(shadowed) => {
                    record.trail().shadowed.push(shadowed);
                    value
                }
            }
        }
    };
    if let (true, Some(declared), Some(value)) = (strip, &media.declared, parsed)
        && let Some((stripped, removed)) = respond::stripped(declared, value)
    {
        head.headers.insert(CONTENT_LENGTH, stripped.len().into());
        bytes = stripped;
        let operation = record.operation();
        let metrics = &record.metrics().responses;
        (metrics
            .stripped_fields
            .get_or_create(&OperationLabels { operation }))
        .inc_by(removed);
    }
    let response = Response::from_parts(head, Answer::moat(bytes));
    Held::Done(Outcome::Forwarded(response, upstream_time))
}
