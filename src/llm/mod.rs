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

mod meter;
mod request;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

pub use self::meter::{Feed, Meter};
pub use self::request::LlmRequest;
use crate::auth::Principal;
use crate::auth::keystore::KeyRecord;
use crate::config::{LlmSetting, Mode};
use crate::limit::{RateLimits, Reservation, StreamSlot};
use crate::metrics::{KeyLabels, Metrics, TokenLabels};
use crate::reject::Rejection;
use crate::spec::Operation;

/// An operation metered as an OpenAI-protocol LLM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Found from the path, not named by `llm: openai` (for `moat check`).
    pub detected: bool,
}

/// The paths OpenAI-compatible servers serve the metered calls at (after any prefix:
/// `/v1/chat/completions`, KServe's `/openai/v1/chat/completions`, OpenAI's own spec
/// `/chat/completions` under a `/v1` server).
const DETECTED: [&str; 3] = ["/chat/completions", "/completions", "/embeddings"];

impl Profile {
    /// `llm: openai` meters the operation, `llm: none` does not; unset, a POST at one of
    /// the usual paths is metered.
    pub fn resolve(setting: Option<LlmSetting>, operation: &Operation) -> Option<Profile> {
        match setting {
            Some(LlmSetting::Openai) => Some(Profile { detected: false }),
            Some(LlmSetting::None) => None,
            None => (operation.method == http::Method::POST
                && DETECTED
                    .iter()
                    .any(|path| operation.template.ends_with(path)))
            .then_some(Profile { detected: true }),
        }
    }
}

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

/// Every key's rules, by key id.
#[derive(Debug, Default)]
pub struct Rules {
    keys: HashMap<String, KeyRules>,
    /// `policy.inject_max_tokens`.
    inject: bool,
}

impl Rules {
    pub fn new(keys: Vec<(String, KeyRules)>, inject: bool) -> Result<Rules, Vec<String>> {
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
            inject,
        })
    }
}

/// What admission granted an LLM request, carried to its response.
#[derive(Debug)]
pub struct Grant {
    reservation: Option<Reservation>,
    /// Cut the stream at the reservation (not in shadow mode).
    enforce: bool,
    slot: Option<StreamSlot>,
    prompt_estimate: u64,
    /// moat asked for a stream's usage: the client did not, so it is not passed on.
    hide_usage: bool,
    key: Arc<str>,
}

/// The checks of an LLM operation, on its validated body: returns the body to forward (the
/// same bytes, unless `inject_max_tokens` added a field) and what to meter the response by.
/// Refusals go through `enforce` (shadow mode lets limits and validation through), except
/// `model_not_allowed`: authorisation is always enforced.
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
    let cap = key_rules.and_then(|r| r.max_tokens);
    if let (Some(cap), Some(asked)) = (cap, request.max_tokens)
        && asked > cap
    {
        enforce(Err(Rejection::MaxTokensExceeded { cap }))?;
    }
    let (body, hide_usage) = rewrite(rules.inject, &request, cap, headers, body);
    // The meter reads the answer as it passes: a compressed one it could not count.
    headers.remove(ACCEPT_ENCODING);
    let mut grant = Grant {
        reservation: None,
        enforce: mode == Mode::Enforce,
        slot: None,
        prompt_estimate: request.prompt_estimate,
        hide_usage,
        key: Arc::from(key_id.unwrap_or("-")),
    };
    let Some(key_id) = key_id else {
        return Ok((body, Some(grant), request));
    };
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
            Err(rejection) => enforce(Err(rejection))?,
        }
    }
    Ok((body, Some(grant), request))
}

/// Tokens to reserve: (as many as wanted, the fewest that will do). A request that bounds
/// its completion — its own `max_tokens`, else the key's cap — must fit whole: prompt
/// estimate + max_tokens × n. One bounded by neither takes what is left of the budget (at
/// least its prompt and one token), and is cut when it has used that.
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
        None => (u64::MAX, request.prompt_estimate.saturating_add(1)),
    }
}

/// With `inject_max_tokens`: the key's cap written into a request that asks for no
/// `max_tokens`, and a stream asked for its usage. Returns the body and whether moat asked
/// for the usage the client did not.
fn rewrite(
    inject: bool,
    request: &LlmRequest,
    cap: Option<u64>,
    headers: &mut HeaderMap,
    body: Bytes,
) -> (Bytes, bool) {
    if !inject {
        return (body, false);
    }
    let mut members = Vec::new();
    if let (Some(cap), None, true) = (cap, request.max_tokens, request.generates) {
        members.push(format!("\"max_tokens\":{cap}"));
    }
    let ask_usage = request.stream && !request.include_usage;
    if ask_usage && !request.has_stream_options {
        members.push("\"stream_options\":{\"include_usage\":true}".to_owned());
    }
    let mut rewritten = body.clone();
    if ask_usage
        && request.has_stream_options
        && let Some(with_usage) = request::with_include_usage(&rewritten)
    {
        rewritten = with_usage;
    }
    if !members.is_empty()
        && let Some(appended) = request::append_members(&rewritten, &members)
    {
        rewritten = appended;
    }
    if rewritten != body && headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    }
    (rewritten, ask_usage)
}

impl Grant {
    /// The meter of the response this grant's request got.
    pub fn meter(&self, status: http::StatusCode, headers: &HeaderMap) -> Meter {
        let events = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let limit = self
            .reservation
            .as_ref()
            .filter(|_| self.enforce)
            .map(|r| r.granted);
        Meter::new(
            events,
            status.is_success(),
            self.prompt_estimate,
            limit,
            self.hide_usage,
        )
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
