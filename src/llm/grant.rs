//! What admission granted an LLM request — its reservation, stream slot and the bound its
//! answer is held to — and how the answer settles it.

use std::sync::Arc;

use http::HeaderMap;
use http::header::CONTENT_TYPE;

use super::{Limit, Meter};
use crate::limit::{Reservation, StreamSlot};
use crate::metrics::{KeyLabels, Metrics, TokenLabels};

/// What admission granted an LLM request, carried to its response.
#[derive(Debug)]
pub struct Grant {
    pub(super) reservation: Option<Reservation>,
    /// The completion tokens the answer may carry, enforced on the response (none in
    /// shadow mode, or where nothing bounds the request).
    pub(super) limit: Option<Limit>,
    /// The request generates text (not an embedding): only such an answer is held to its
    /// limit.
    pub(super) generates: bool,
    pub(super) slot: Option<StreamSlot>,
    pub(super) prompt_estimate: u64,
    /// moat asked for a stream's usage: the client did not, so it is not passed on.
    pub(super) hide_usage: bool,
    pub(super) key: Arc<str>,
}

impl Grant {
    /// The meter of the response this grant's request got.
    pub fn meter(&self, status: http::StatusCode, headers: &HeaderMap) -> Meter {
        let events = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let media = v.split(';').next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case("text/event-stream")
            });
        Meter::new(
            events,
            status.is_success(),
            self.prompt_estimate,
            self.limit,
            self.hide_usage,
        )
    }

    /// Whether the answer `meter` reads must be held whole before it is relayed: a JSON
    /// answer to a request with a limit cannot be cut part-way, only withheld, and that is
    /// decided at its end.
    pub fn holds(&self, meter: &Meter) -> bool {
        self.generates && self.limit.is_some() && meter.is_json()
    }

    /// The completion tokens admitted, for the refusal of an answer that went past them.
    pub fn admitted(&self) -> u64 {
        self.limit.map_or(0, |limit| limit.completion)
    }

    /// A held answer went past its limit and is withheld: the key pays its whole
    /// reservation (the model did generate at least that), not what the model ran to.
    pub fn withhold(mut self, meter: &Meter, metrics: &Metrics) {
        if let Some(reservation) = self.reservation.take() {
            let granted = reservation.granted;
            reservation.settle(granted);
        }
        self.settle(meter, metrics);
    }

    /// The response ended (or was abandoned): settle the reservation to what `meter`
    /// counted, free the stream slot, and count the tokens.
    pub fn settle(self, meter: &Meter, metrics: &Metrics) {
        let key = self.key;
        for (kind, tokens) in [("prompt", meter.prompt), ("completion", meter.completion)] {
            if tokens > 0 {
                metrics
                    .llm
                    .tokens
                    .get_or_create(&TokenLabels {
                        key: key.clone(),
                        kind,
                    })
                    .inc_by(tokens);
            }
        }
        if meter.cut {
            metrics
                .llm
                .streams_cut
                .get_or_create(&KeyLabels { key })
                .inc();
        }
        if let Some(reservation) = self.reservation {
            reservation.settle(meter.total());
        }
    }

    /// Tokens reserved, for the trail.
    pub fn reserved(&self) -> Option<u64> {
        self.reservation.as_ref().map(|r| r.granted)
    }
}
