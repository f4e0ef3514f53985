//! What each stage tells the trail when `moat explain` asks (built only when explaining).

use super::Admission;
use super::route::Target;
use crate::auth::Principal;
use crate::config::LimitStore;
use crate::llm::{Grant, LlmRequest};

pub(super) fn describe_route(target: &Target<'_, '_>) -> String {
    match (target.operation, &target.template) {
        (Some(operation), Some(template)) => format!(
            "operation `{}` ({} {template}), mode {}",
            operation.id,
            operation.method,
            target.mode.as_str()
        ),
        _ => "no `openapi` configured: every path is forwarded".to_owned(),
    }
}

pub(super) fn describe_principal(principal: Option<&Principal>) -> String {
    match principal {
        None => "no credentials needed".to_owned(),
        Some(p) => format!(
            "subject {}, key {}, scopes [{}]",
            p.subject.as_deref().unwrap_or("-"),
            p.key_id.as_deref().unwrap_or("-"),
            p.scopes.join(" ")
        ),
    }
}

pub(super) fn describe_llm(request: &LlmRequest, grant: Option<&Grant>) -> String {
    let reserved = match grant.and_then(Grant::reserved) {
        Some(tokens) => format!("{tokens} tokens reserved"),
        None => "no token budget".to_owned(),
    };
    let bound = match grant.map(Grant::admitted) {
        Some(0) | None => String::new(),
        Some(tokens) => format!("; the answer may carry {tokens} completion tokens"),
    };
    format!(
        "LLM call: model {}, max_tokens {}, n {}, {}, prompt estimated at {} tokens; {reserved}{bound}",
        request.model.as_deref().unwrap_or("-"),
        request
            .max_tokens
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        request.n,
        if request.stream {
            "streamed"
        } else {
            "not streamed"
        },
        request.prompt_estimate
    )
}

pub(super) fn describe_limits(snapshot: &Admission<'_>, principal: Option<&Principal>) -> String {
    let mut limits = Vec::new();
    if let Some(limit) = &snapshot.config.policy.client_rate_limit {
        limits.push(format!(
            "per client {}/s burst {}",
            limit.per_second, limit.burst
        ));
    }
    if principal.is_some_and(|p| p.key_id.is_some()) {
        limits.push("the key's own rate_limit and quota, if its record sets them".to_owned());
    }
    let counted = match &snapshot.config.limits.store {
        LimitStore::Memory => "limits count per running process",
        LimitStore::Redis(_) => "limits count in Redis, for every replica",
    };
    if limits.is_empty() {
        "no rate limit applies".to_owned()
    } else {
        format!("{} (within them; {counted})", limits.join("; "))
    }
}
