//! LLM operations: OpenAI-protocol calls (chat completions, completions, embeddings), as
//! vLLM, TGI, Ollama, llama.cpp and KServe serve them. Requests per second is the wrong unit
//! for them, so on these operations moat also meters tokens:
//!
//! - at admission ([`admit`], after validation, with the body read): the key's `models`
//!   allowlist (403), its `max_tokens` cap (400), its stream slots (429), and a reservation
//!   in its token budgets of prompt estimate + max_tokens × n (429 when it does not fit);
//! - on the response ([`meter`]): the tokens counted as they pass — the model's own `usage`
//!   when it reports one, else one per streamed delta — the stream cut at its reservation,
//!   and the reservation settled to what was used when the response ends.

mod body;
mod meter;
mod request;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

pub use self::body::{Metered, MeteredBody};
pub use self::meter::{Bound, Feed, Limit, MAX_JSON_BYTES, Meter};
pub use self::request::LlmRequest;
use crate::auth::Principal;
use crate::auth::keystore::KeyRecord;
use crate::config::{BoundField, BoundFields, Mode, PolicyConfig};
use crate::limit::{RateLimits, Reservation, StreamSlot};
use crate::metrics::{KeyLabels, Metrics, TokenLabels};
use crate::reject::Rejection;

/// A key's rules for LLM operations, from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRules {
    pub models: Option<Vec<String>>,
    pub max_tokens: Option<u64>,
}

impl KeyRules {
    pub fn of(record: &KeyRecord) -> Option<KeyRules> {
        (record.models.is_some() || record.max_tokens.is_some()).then(|| KeyRules {
            models: record.models.clone(),
            max_tokens: record.max_tokens,
        })
    }
}

/// Every key's rules, by key id, and how the admitted bound is written.
#[derive(Debug)]
pub struct Rules {
    keys: HashMap<String, KeyRules>,
    /// `policy.max_tokens_fields`.
    fields: Vec<BoundField>,
    /// `policy.stream_usage`.
    stream_usage: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            keys: HashMap::new(),
            fields: BoundFields::default().0,
            stream_usage: false,
        }
    }
}

impl Rules {
    pub fn new(keys: Vec<(String, KeyRules)>, policy: &PolicyConfig) -> Result<Rules, Vec<String>> {
        let problems: Vec<String> = keys
            .iter()
            .filter(|(_, rules)| rules.max_tokens == Some(0))
            .map(|(id, _)| format!("key `{id}`: max_tokens must be at least 1"))
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Rules {
            keys: keys.into_iter().collect(),
            fields: policy.max_tokens_fields.0.clone(),
            stream_usage: policy.asks_stream_usage(),
        })
    }
}

/// What admission granted an LLM request, carried to its response.
#[derive(Debug)]
pub struct Grant {
    reservation: Option<Reservation>,
    /// The completion tokens the answer may carry, enforced on the response (none in
    /// shadow mode, or where nothing bounds the request).
    limit: Option<Limit>,
    /// The request generates text (not an embedding): only such an answer is held to its
    /// limit.
    generates: bool,
    slot: Option<StreamSlot>,
    prompt_estimate: u64,
    /// moat asked for a stream's usage: the client did not, so it is not passed on.
    hide_usage: bool,
    key: Arc<str>,
}

/// The checks of an LLM operation, on its validated body: returns the body to forward and
/// what to meter the response by. Whenever the key has a cap or a token budget, the bound
/// it admits is written into the body (`policy.max_tokens_fields`, and every bound field
/// the client sent), so the model stops there whichever field it reads.
/// Refusals go through `enforce` (shadow mode lets limits and validation through), except
/// `model_not_allowed`: authorisation is always enforced. A request let through by shadow
/// mode is forwarded as the client sent it.
pub async fn admit(
    rules: &Rules,
    limits: &RateLimits,
    principal: Option<&Principal>,
    headers: &mut HeaderMap,
    body: Bytes,
    enforce: &mut (dyn FnMut(Result<(), Rejection>) -> Result<(), Rejection> + Send),
    mode: Mode,
) -> Result<(Bytes, Option<Grant>, LlmRequest), Rejection> {
    let request = match LlmRequest::parse(&body) {
        Ok(request) => request,
        Err(rejection) => {
            enforce(Err(rejection))?;
            return Ok((body, None, LlmRequest::default()));
        }
    };
    let key_id = principal.and_then(|p| p.key_id.as_deref());
    let key_rules = key_id.and_then(|id| rules.keys.get(id));
    if let Some(models) = key_rules.and_then(|r| r.models.as_ref()) {
        let allowed = request
            .model
            .as_ref()
            .is_some_and(|model| models.contains(model));
        if !allowed {
            return Err(Rejection::ModelNotAllowed);
        }
    }
    // Whether every limit held: a request that shadow mode lets past one is not rewritten.
    let mut within = true;
    let cap = key_rules.and_then(|r| r.max_tokens);
    if let (Some(cap), Some(asked)) = (cap, request.max_tokens)
        && asked > cap
    {
        enforce(Err(Rejection::MaxTokensExceeded { cap }))?;
        within = false;
    }
    // The meter reads the answer as it passes: a compressed one it could not count.
    headers.remove(ACCEPT_ENCODING);
    let mut grant = Grant {
        reservation: None,
        limit: None,
        generates: request.generates,
        slot: None,
        prompt_estimate: request.prompt_estimate,
        hide_usage: false,
        key: Arc::from(key_id.unwrap_or("-")),
    };
    if let Some(key_id) = key_id {
        if request.stream {
            match limits.open_stream(key_id) {
                Ok(slot) => grant.slot = slot,
                Err(rejection) => enforce(Err(rejection))?,
            }
        }
        if limits.has_token_budget(key_id) {
            let (want, at_least) = reservation(&request, cap);
            match limits.reserve_tokens(key_id, want, at_least).await {
                Ok(reservation) => grant.reservation = reservation,
                Err(rejection) => {
                    enforce(Err(rejection))?;
                    within = false;
                }
            }
        }
    }
    let limit = if within {
        admitted_bound(&request, cap, grant.reservation.as_ref())
    } else {
        None
    };
    let ask_usage = within && rules.stream_usage && request.stream && !request.include_usage;
    let edit = request::Edit {
        bound: limit.map(|(per_choice, _)| per_choice),
        fields: &rules.fields,
        ask_usage,
    };
    let body = match request::rewrite(&body, &edit) {
        Some(rewritten) => {
            if headers.contains_key(CONTENT_LENGTH) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
            }
            grant.hide_usage = ask_usage;
            rewritten
        }
        None => body,
    };
    grant.limit = limit
        .filter(|_| mode == Mode::Enforce)
        .map(|(per_choice, bound)| Limit {
            completion: per_choice.saturating_mul(request.n),
            bound,
        });
    Ok((body, Some(grant), request))
}

/// Tokens to reserve: (as many as wanted, the fewest that will do). A request that bounds
/// its completion — its own `max_tokens`, else the key's cap — must fit whole: prompt
/// estimate + max_tokens × n. One bounded by neither takes what is left of the budget (at
/// least its prompt and one token per choice), and that becomes its bound.
fn reservation(request: &LlmRequest, cap: Option<u64>) -> (u64, u64) {
    if !request.generates {
        return (request.prompt_estimate, request.prompt_estimate);
    }
    match request.max_tokens.or(cap) {
        Some(max_tokens) => {
            let whole = request
                .prompt_estimate
                .saturating_add(max_tokens.saturating_mul(request.n));
            (whole, whole)
        }
        None => (u64::MAX, request.prompt_estimate.saturating_add(request.n)),
    }
}

/// The completion bound per choice that admission granted, and where it came from: the
/// request's own, else the key's cap, else what its reservation left after the prompt.
/// `None` for a request nothing bounds (no cap, no budget) or that generates nothing.
fn admitted_bound(
    request: &LlmRequest,
    cap: Option<u64>,
    reservation: Option<&Reservation>,
) -> Option<(u64, Bound)> {
    if !request.generates {
        return None;
    }
    match (request.max_tokens, cap, reservation) {
        (Some(asked), _, _) if cap.is_some() || reservation.is_some() => {
            Some((asked, Bound::Asked))
        }
        (None, Some(cap), _) => Some((cap, Bound::Cap)),
        (None, None, Some(reservation)) => {
            let left = reservation.granted.saturating_sub(request.prompt_estimate);
            Some(((left / request.n).max(1), Bound::Budget))
        }
        _ => None,
    }
}

impl Grant {
    /// The meter of the response this grant's request got.
    pub fn meter(&self, status: http::StatusCode, headers: &HeaderMap) -> Meter {
        let events = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
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

#[cfg(test)]
mod tests;
