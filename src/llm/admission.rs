//! The checks of an LLM operation at admission, on its validated body: the key's `models`
//! allowlist (403), its `max_tokens` cap (400), its stream slots (429), a reservation in its
//! token budgets of prompt estimate + bound × n (429 when it does not fit), and the bound
//! admitted written into the body.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, HeaderValue};

use super::rewrite::{Edit, rewrite};
use super::{Bound, Grant, KeyRules, Limit, LlmRequest, Rules};
use crate::auth::Principal;
use crate::config::Mode;
use crate::limit::{RateLimits, Reservation};
use crate::reject::Rejection;

/// How a refusal is decided: returned (enforce mode), or noted and let through (shadow).
pub type Enforce<'a> = &'a mut (dyn FnMut(Result<(), Rejection>) -> Result<(), Rejection> + Send);

/// The checks of an LLM operation, on its validated body: returns the body to forward and
/// what to meter the response by. Whenever the key has a cap or a token budget, the bound
/// it admits is written into the body (`policy.max_tokens_fields`, and every bound field
/// the client sent), so the model stops there whichever field it reads.
/// Refusals go through `enforce` (shadow mode lets limits and validation through), except
/// `model_not_allowed`: authorisation is always enforced. A request let through by shadow
/// mode is forwarded as the client sent it.
pub async fn check_request(
    rules: &Rules,
    limits: &RateLimits,
    principal: Option<&Principal>,
    headers: &mut HeaderMap,
    body: Bytes,
    enforce: Enforce<'_>,
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
    check_model(key_rules, &request)?;
    let cap = key_rules.and_then(|r| r.max_tokens);
    // Whether every limit held: a request that shadow mode lets past one is not rewritten.
    let mut within = check_cap(cap, &request, enforce)?;
    // The meter reads the answer as it passes: a compressed one it could not count.
    headers.remove(ACCEPT_ENCODING);
    let mut grant = Grant::new(&request, key_id);
    if let Some(key_id) = key_id {
        within &= take_limits(limits, key_id, &request, cap, &mut grant, enforce).await?;
    }
    let bound = within
        .then(|| admitted_bound(&request, cap, grant.reservation.as_ref()))
        .flatten();
    let ask_usage = within && rules.stream_usage && request.stream && !request.include_usage;
    let body = write_bound(rules, bound, ask_usage, headers, body, &mut grant);
    grant.limit = bound
        .filter(|_| mode == Mode::Enforce)
        .map(|(per_choice, bound)| Limit {
            completion: per_choice.saturating_mul(request.n),
            bound,
        });
    Ok((body, Some(grant), request))
}

/// The key's `models` allowlist: authorisation, so never let through by shadow mode.
fn check_model(key_rules: Option<&KeyRules>, request: &LlmRequest) -> Result<(), Rejection> {
    match key_rules.is_none_or(|rules| rules.allows_model(request.model.as_deref())) {
        true => Ok(()),
        false => Err(Rejection::ModelNotAllowed),
    }
}

/// The key's `max_tokens` cap against the bound the request asks for: whether it held.
fn check_cap(
    cap: Option<u64>,
    request: &LlmRequest,
    enforce: Enforce<'_>,
) -> Result<bool, Rejection> {
    match (cap, request.max_tokens) {
        (Some(cap), Some(asked)) if asked > cap => {
            enforce(Err(Rejection::MaxTokensExceeded { cap }))?;
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// A key's stream slot and token reservation, onto `grant`: whether the reservation held
/// (a missing slot does not change what is written into the request).
async fn take_limits(
    limits: &RateLimits,
    key_id: &str,
    request: &LlmRequest,
    cap: Option<u64>,
    grant: &mut Grant,
    enforce: Enforce<'_>,
) -> Result<bool, Rejection> {
    if request.stream {
        match limits.open_stream(key_id) {
            Ok(slot) => grant.slot = slot,
            Err(rejection) => enforce(Err(rejection))?,
        }
    }
    if !limits.has_token_budget(key_id) {
        return Ok(true);
    }
    let (want, at_least) = reservation(request, cap);
    match limits.reserve_tokens(key_id, want, at_least).await {
        Ok(reservation) => grant.reservation = reservation,
        Err(rejection) => {
            enforce(Err(rejection))?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// The body with the bound (and the usage request) written in, `Content-Length` following
/// it; the client's own bytes when there is nothing to write.
fn write_bound(
    rules: &Rules,
    bound: Option<(u64, Bound)>,
    ask_usage: bool,
    headers: &mut HeaderMap,
    body: Bytes,
    grant: &mut Grant,
) -> Bytes {
    let edit = Edit {
        bound: bound.map(|(per_choice, _)| per_choice),
        fields: &rules.fields,
        ask_usage,
    };
    let Some(rewritten) = rewrite(&body, &edit) else {
        return body;
    };
    if headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    }
    grant.hide_usage = ask_usage;
    rewritten
}

impl Grant {
    /// A grant with nothing reserved yet, for `request` of key `key_id` (`-`: no key).
    fn new(request: &LlmRequest, key_id: Option<&str>) -> Grant {
        Grant {
            reservation: None,
            limit: None,
            generates: request.generates,
            slot: None,
            prompt_estimate: request.prompt_estimate,
            hide_usage: false,
            key: Arc::from(key_id.unwrap_or("-")),
        }
    }
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
