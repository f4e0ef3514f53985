//! The model's answer held to what the spec declares, before any of it is relayed (see
//! `respond` for the rules): its head first; then, for a JSON body the spec gives a schema
//! and whose `Content-Length` is within `responses.max_body_bytes`, the body read whole
//! and validated. Bodies past the bound, without a length, of LLM operations (metered
//! instead) or of HEAD requests (none) stream on unchecked.

use http::Response;
use http::header::CONTENT_LENGTH;

use super::{Answer, Outcome, hold};
use crate::access::AccessRecord;
use crate::forward::Forwarded;
use crate::metrics::ReasonLabels;
use crate::reject::Rejection;
use crate::respond::{self, Check};
use crate::snapshot::Snapshot;
use crate::spec::Declared;
use crate::spec::Responses;
use crate::spec::compile::Schema;

/// What came of the check: the answer to relay (metered if it is an LLM's), or an outcome
/// already decided — a refusal, a concealed error, or a body read and checked.
#[allow(clippy::large_enum_variant)] // both are the common case: boxing either allocates per request
pub(super) enum Held {
    Relay(Forwarded),
    Done(Outcome),
}

/// Holds `forwarded` to `responses`; `unread`: why its body is not checked, when it is
/// not — `metered` (an LLM operation's: the meter reads it), `head` (a HEAD's: it has none).
pub(super) async fn held(
    snapshot: &Snapshot,
    responses: Option<&Responses>,
    unread: Option<&'static str>,
    forwarded: Forwarded,
    record: &mut AccessRecord,
) -> Held {
    let head = &forwarded.response;
    let config = &snapshot.config.responses;
    match respond::check(config, responses, head.status(), head.headers()) {
        Check::Relay => Held::Relay(forwarded),
        Check::Validate(schema, declared) => {
            match unchecked(&forwarded, unread, config.max_body_bytes) {
                None => validated(snapshot, forwarded, &schema, declared.as_deref(), record).await,
                Some(reason) => {
                    let labels = ReasonLabels { reason };
                    record
                        .metrics()
                        .responses_not_checked
                        .get_or_create(&labels)
                        .inc();
                    Held::Relay(forwarded)
                }
            }
        }
        Check::Shadowed(violation) => {
            record.trail().shadowed.push(violation);
            Held::Relay(forwarded)
        }
        Check::Refuse(violation) => Held::Done(Outcome::Refused(violation, None)),
        Check::Conceal(status) => {
            let body = forwarded.response.into_body();
            respond::log_concealed(status, body, record.request_id().as_str()).await;
            Held::Done(Outcome::Refused(Rejection::UpstreamError { status }, None))
        }
    }
}

/// Why the body goes on unchecked, if it does: `unread`'s reason, `no_length` (streamed),
/// `too_large` (past `limit`).
fn unchecked(
    forwarded: &Forwarded,
    unread: Option<&'static str>,
    limit: u64,
) -> Option<&'static str> {
    let length = forwarded.response.headers().get(CONTENT_LENGTH);
    let length = length.and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    match length {
        _ if unread.is_some() => unread,
        None => Some("no_length"),
        Some(length) if length > limit => Some("too_large"),
        Some(_) => None,
    }
}

/// The body read whole and checked against its schema: relayed (a violation counted, in
/// shadow; undeclared members removed with `strip_undeclared`), or refused in enforce.
async fn validated(
    snapshot: &Snapshot,
    forwarded: Forwarded,
    schema: &Schema,
    declared: Option<&Declared>,
    record: &mut AccessRecord,
) -> Held {
    let config = &snapshot.config.responses;
    let upstream_time = forwarded.upstream_time;
    let (mut head, body) = forwarded.response.into_parts();
    let limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    let mut bytes = match hold::read_whole(body, limit).await {
        Ok(bytes) => bytes,
        Err(refusal) => {
            let refusal = refusal.unwrap_or(Rejection::UpstreamUnavailable);
            return Held::Done(Outcome::Refused(refusal, None));
        }
    };
    let depth = snapshot.config.limits.max_json_depth;
    let parsed = match respond::json_verdict(&bytes, schema, depth) {
        Ok(value) => Some(value),
        Err((reason, value)) => match respond::violation(config, reason) {
            Err(refusal) => return Held::Done(Outcome::Refused(refusal, None)),
            Ok(shadowed) => {
                record.trail().shadowed.push(shadowed);
                value
            }
        },
    };
    if let (true, Some(declared), Some(value)) = (config.strip_undeclared, declared, parsed) {
        if let Some(stripped) = respond::stripped(declared, value) {
            head.headers.insert(CONTENT_LENGTH, stripped.len().into());
            bytes = stripped;
        }
    }
    let response = Response::from_parts(head, Answer::moat(bytes));
    Held::Done(Outcome::Forwarded(response, upstream_time))
}
