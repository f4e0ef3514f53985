//! Each event of a streamed answer held to the schema the spec declares for it
//! (`respond` finds it; see `ResponseMedia::events`): an event whose `data` is JSON and does
//! not match is counted, and in `enforce` the stream ends before it with moat's error event.
//! Data that is not JSON (`[DONE]`, plain text) is not an event the schema describes; data
//! that starts as JSON but does not parse (cut short, a duplicate key, too deep) breaks it.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::spec::compile::Schema;
use crate::spec::plan::Plan;
use crate::validate::json::{JsonLimits, certainly_valid};

/// The schema each event's JSON `data` must match, and what a mismatch does.
#[derive(Debug, Clone)]
pub struct EventCheck {
    pub schema: Arc<Schema>,
    /// `responses.mode: enforce`: the stream ends before the first event that does not
    /// match; else (`shadow`) it is only counted.
    pub enforce: bool,
    /// The schema's plan: a valid event is checked while it is parsed, without a tree.
    pub plan: Option<Arc<Plan>>,
    /// The guard rails every JSON moat parses is held to (`max_json_depth`, …).
    pub limits: JsonLimits,
    /// `moat_response_violations_total{operation, kind="event"}`.
    pub violations: Counter,
}

impl EventCheck {
    /// Why `data` does not match, by the first failure's pointer (never a value); `None`
    /// when it matches or is not JSON.
    pub(super) fn violation(&self, data: &[u8]) -> Option<String> {
        if !looks_like_json(data) {
            return None;
        }
        if let Some(plan) = &self.plan
            && certainly_valid(data, plan, &self.limits)
        {
            return None;
        }
        let value = match crate::validate::json::parse(data, self.limits.max_depth) {
            Ok(value) => value,
            Err(why) => {
                self.violations.inc();
                return Some(format!("its data is not acceptable JSON: {why}"));
            }
        };
        let mut errors = Vec::new();
        if self.schema.check(&value, "body", "", &mut errors) {
            return None;
        }
        self.violations.inc();
        let reason = match errors.first() {
            Some(first) if first.pointer.is_empty() => format!("/: {}", first.message),
            Some(first) => format!("{}: {}", first.pointer, first.message),
            None => "it does not match the declared event schema".to_owned(),
        };
        tracing::debug!(%reason, "a streamed event does not match its declared schema");
        Some(reason)
    }
}

/// Whether `data` is meant as JSON (an object or an array, not OpenAI's `[DONE]`): the
/// events a schema describes.
fn looks_like_json(data: &[u8]) -> bool {
    let start = data.iter().find(|b| !b.is_ascii_whitespace());
    matches!(start, Some(b'{' | b'[')) && data.trim_ascii() != b"[DONE]"
}
