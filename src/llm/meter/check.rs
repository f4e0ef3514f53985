//! Each event of a streamed answer held to the schema the spec declares for it
//! (`respond` finds it; see `ResponseMedia::events`): an event whose `data` is JSON and does
//! not match is counted, and in `enforce` the stream ends before it with moat's error event.
//! Data that is not JSON (`[DONE]`, plain text) is not an event the schema describes.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::spec::compile::Schema;

/// The schema each event's JSON `data` must match, and what a mismatch does.
#[derive(Debug, Clone)]
pub struct EventCheck {
    pub schema: Arc<Schema>,
    /// `responses.mode: enforce`: the stream ends before the first event that does not
    /// match; else (`shadow`) it is only counted.
    pub enforce: bool,
    /// `limits.max_json_depth`, as for every JSON moat parses.
    pub max_depth: usize,
    /// `moat_response_violations_total{operation, kind="event"}`.
    pub violations: Counter,
}

impl EventCheck {
    /// Why `data` does not match, by the first failure's pointer (never a value); `None`
    /// when it matches or is not JSON.
    pub(super) fn violation(&self, data: &[u8]) -> Option<String> {
        let value = crate::validate::json::parse(data, self.max_depth).ok()?;
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
