//! Stages 1–6 of design §1 — frame, route, authenticate, authorize, limit, validate — in one
//! function, the only place their order is written. `serve` forwards what [`admit`] lets
//! through; `moat explain` runs the same function on an in-memory request and prints the
//! trail. Stages run cheapest first, and the body is read only after the request has been
//! routed, authenticated, authorised and rate-limited, so an unauthenticated caller can
//! never make moat buffer or parse a body.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use crate::auth::{self, Auth, Caller, KeyLocation, Principal};
use crate::config::{Config, Limits, Mode};
use crate::frame;
use crate::limit::RateLimits;
use crate::llm::{self, Grant};
use crate::policy::{Requirement, Routes};
use crate::reject::{Rejection, Stage};
use crate::route::Routed;
use crate::spec::{Operation, Spec};
use crate::trail::Trail;
use crate::validate;

/// What admission reads of the serving snapshot: its policy data, never the client to the
/// model (as linkerd2-proxy keeps policy apart from the client). The snapshot hands one out
/// per request; only references, so building it costs nothing.
pub struct Admission<'s> {
    pub config: &'s Config,
    /// `None` when no spec is configured: every path is forwarded.
    pub spec: Option<&'s Spec>,
    pub routes: &'s Routes,
    pub auth: &'s Auth,
    pub limits: &'s RateLimits,
    pub llm: &'s llm::Rules,
    /// Where API keys travel, to strip them before the request goes on.
    pub credentials: &'s [KeyLocation],
}

/// A request every stage let through: its head (a query credential already removed), its
/// checked body and who sent it. Only [`admit`] makes one, so nothing reaches `forward`
/// without having passed the stages.
#[derive(Debug)]
pub struct Admitted {
    parts: Parts,
    body: Bytes,
    principal: Option<Principal>,
    /// An LLM operation's reservation and stream slot, to meter its response by.
    llm: Option<Grant>,
}

impl Admitted {
    /// Read by the pipeline tests; `forward` takes the principal by value.
    #[cfg(test)]
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    /// What the response of an LLM operation is metered by; `None` on other operations.
    pub fn take_llm(&mut self) -> Option<Grant> {
        self.llm.take()
    }

    pub fn into_parts(self) -> (Parts, Bytes, Option<Principal>) {
        (self.parts, self.body, self.principal)
    }
}

/// What admission decided, short of a refusal.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // `Forward` is the common case: boxing it allocates per request
pub enum Verdict {
    Forward(Admitted),
    /// `OPTIONS` on a declared path that does not declare it: moat answers with `Allow`.
    Options(HeaderValue),
}

/// Runs stages 1–6 on a request. `body` is any HTTP body: hyper's for `serve`, an
/// in-memory one for `moat explain` and the pipeline tests.
#[allow(clippy::too_many_lines)] // the stages in order, in one place: split, the order would hide
pub async fn admit<B>(
    snapshot: &Admission<'_>,
    mut parts: Parts,
    body: B,
    client: IpAddr,
    request_id: &str,
    trail: &mut Trail,
) -> Result<Verdict, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = &snapshot.config;

    // 1. frame: sizes and the one canonical reading of the path.
    let path = frame::check(&parts.uri, parts.version, &parts.headers, &config.limits)?;
    trail.pass(Stage::Frame, || format!("canonical path {path}"));

    // 2. route: only what the spec declares goes further.
    let target = match route(snapshot, &parts.method, &path)? {
        Routing::Options(allow) => {
            trail.pass(Stage::Route, || {
                let allow = allow.to_str().unwrap_or_default();
                format!("OPTIONS answered by moat: 204, Allow: {allow}")
            });
            return Ok(Verdict::Options(allow));
        }
        Routing::Target(target) => target,
    };
    trail.operation = target.operation.map(Operation::label);
    trail.route = target.template.clone();
    trail.pass(Stage::Route, || describe_route(&target));
    let mode = target.mode;

    // 5 (first half). The per-client limit is taken before credentials are checked, so it
    // also bounds failed attempts.
    enforce(snapshot.limits.check_client(client), mode, trail)?;

    // 3–4. authenticate and authorize: credentials, then scopes.
    let caller = Caller {
        headers: &parts.headers,
        query: parts.uri.query(),
        client,
        operation: target.operation,
        request_id,
    };
    let principal = snapshot
        .auth
        .check(target.requirement, &caller, trail)
        .await?;
    if let Some(principal) = &principal {
        trail.subject = principal.subject.clone();
        trail.key_id = principal.key_id.clone();
    }
    trail.pass(Stage::Authenticate, || {
        describe_principal(principal.as_ref())
    });
    // A key carried in the query leaves it right here: neither validation nor the model
    // sees it (unless `forward_credentials`).
    let stripped = without_query_credentials(&parts.uri, snapshot);
    let query = stripped.as_ref().map_or(parts.uri.query(), Uri::query);

    // 5. limit: the key's own rate limit and quota (and, on Redis, the shared per-client
    // limit), in one round trip at most.
    let key_id = principal.as_ref().and_then(|p| p.key_id.as_deref());
    match snapshot.limits.check(client, key_id).await {
        Ok(quota) => trail.quota = quota,
        Err(rejection) => enforce(Err(rejection), mode, trail)?,
    }
    trail.pass(Stage::Limit, || {
        describe_limits(snapshot, principal.as_ref())
    });

    // 6. validate: parameters first, then the body, read only now within its limits.
    if let Some(operation) = target.operation {
        let reject_unknown = config
            .openapi
            .as_ref()
            .is_some_and(|o| o.reject_unknown_query);
        let verdict = validate::parameters(
            operation,
            &target.path_values,
            query,
            &parts.headers,
            reject_unknown,
        );
        note_validity(trail, "parameters", verdict.is_ok());
        enforce(verdict, mode, trail)?;
    }
    let body = read_body(body, &parts.headers, &config.limits).await?;
    trail.body_read = true;
    match target.operation {
        Some(operation) => {
            let verdict = validate::request_body(
                operation,
                &parts.headers,
                &body,
                &validate::json::JsonLimits::of(&config.limits),
            );
            note_validity(trail, "body", verdict.is_ok());
            enforce(verdict, mode, trail)?;
            trail.pass(Stage::Validate, || format!("body {} bytes", body.len()));
        }
        None => trail.pass(Stage::Validate, || {
            "nothing to validate without an operation".to_owned()
        }),
    }
    // 5 (LLM operations). With the body read and valid: the key's model allowlist,
    // max_tokens cap and stream slots, and a reservation in its token budgets.
    let (body, grant) = match target.llm {
        Some(_) => {
            admit_llm(
                snapshot,
                principal.as_ref(),
                &mut parts.headers,
                body,
                mode,
                trail,
            )
            .await?
        }
        None => (body, None),
    };
    if !config.policy.forward_credentials {
        if let Some(uri) = stripped {
            parts.uri = uri;
        }
        auth::strip_credentials(&mut parts.headers, snapshot.credentials);
    }
    Ok(Verdict::Forward(Admitted {
        parts,
        body,
        principal,
        llm: grant,
    }))
}

/// Stage 5 of an LLM operation (see `llm::admit`), on the body stage 6 let through.
async fn admit_llm(
    snapshot: &Admission<'_>,
    principal: Option<&Principal>,
    headers: &mut HeaderMap,
    body: Bytes,
    mode: Mode,
    trail: &mut Trail,
) -> Result<(Bytes, Option<Grant>), Rejection> {
    let (body, grant, request) = llm::admit(
        snapshot.llm,
        snapshot.limits,
        principal,
        headers,
        body,
        &mut |verdict| enforce(verdict, mode, trail),
        mode,
    )
    .await?;
    trail.pass(Stage::Limit, || describe_llm(&request, grant.as_ref()));
    Ok((body, grant))
}

/// What stage 2 decided.
pub enum Routing<'s, 'p> {
    /// `OPTIONS` on a declared path that does not declare it: moat answers with `Allow`.
    Options(HeaderValue),
    Target(Target<'s, 'p>),
}

/// The operation a request goes on to, with what stages 3–6 need of it.
pub struct Target<'s, 'p> {
    /// `None` when no spec is configured: every path is forwarded.
    pub operation: Option<&'s Operation>,
    pub template: Option<Arc<str>>,
    pub path_values: Vec<&'p str>,
    pub requirement: &'s Requirement,
    pub mode: Mode,
    /// Metered as an LLM call.
    pub llm: Option<crate::policy::LlmProfile>,
}

/// Stage 2: the operation at `path` and its security requirement and mode (the
/// operation's own mode, else the policy's).
pub fn route<'s, 'p>(
    snapshot: &'s Admission<'s>,
    method: &Method,
    path: &'p str,
) -> Result<Routing<'s, 'p>, Rejection> {
    let Some(spec) = &snapshot.spec else {
        let route = snapshot.routes.unrouted();
        return Ok(Routing::Target(Target {
            operation: None,
            template: None,
            path_values: Vec::new(),
            requirement: &route.requirement,
            mode: route.mode,
            llm: None,
        }));
    };
    Ok(match spec.router.route(method, path)? {
        Routed::Options { allow } => Routing::Options(allow),
        Routed::Operation {
            index,
            template,
            values,
        } => {
            let route = snapshot.routes.operation(index);
            Routing::Target(Target {
                operation: Some(&spec.operations[index]),
                template: Some(template),
                path_values: values,
                requirement: &route.requirement,
                mode: route.mode,
                llm: route.llm,
            })
        }
    })
}

/// A key carried in the query, removed from the URI; `None` when nothing was removed.
fn without_query_credentials(uri: &Uri, snapshot: &Admission<'_>) -> Option<Uri> {
    if snapshot.config.policy.forward_credentials {
        return None;
    }
    auth::without_query_credentials(uri, snapshot.credentials)
}

/// In shadow mode a limit or validation failure is kept on the trail (logged and counted)
/// and the request goes on.
fn enforce(verdict: Result<(), Rejection>, mode: Mode, trail: &mut Trail) -> Result<(), Rejection> {
    match (verdict, mode) {
        (Err(rejection), Mode::Shadow) => {
            trail.shadowed.push(rejection);
            Ok(())
        }
        (verdict, _) => verdict,
    }
}

fn note_validity(trail: &mut Trail, what: &'static str, valid: bool) {
    if valid {
        trail.note(Stage::Validate, || format!("{what}: valid"));
    }
}

fn describe_route(target: &Target<'_, '_>) -> String {
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

fn describe_principal(principal: Option<&Principal>) -> String {
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

fn describe_llm(request: &llm::LlmRequest, grant: Option<&Grant>) -> String {
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

fn describe_limits(snapshot: &Admission<'_>, principal: Option<&Principal>) -> String {
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
        crate::config::LimitStore::Memory => "limits count per running process",
        crate::config::LimitStore::Redis(_) => "limits count in Redis, for every replica",
    };
    if limits.is_empty() {
        "no rate limit applies".to_owned()
    } else {
        format!("{} (within them; {counted})", limits.join("; "))
    }
}

/// Buffers the request body: refused from `Content-Length` before reading when it
/// declares too much, and cut off at the limit when it doesn't say.
pub async fn read_body<B>(body: B, headers: &HeaderMap, limits: &Limits) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = limits.max_body_bytes;
    if declared_length(headers).is_some_and(|length| length > limit) {
        return Err(Rejection::BodyTooLarge { limit });
    }
    // A body that is already over (most GETs) needs neither a read nor its timer.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    collect_within(Limited::new(body, max), limits.body_read_timeout, limit).await
}

async fn collect_within<B>(
    body: Limited<B>,
    timeout: Duration,
    limit: u64,
) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Rejection::BodyTooLarge { limit })
        }
        Ok(Err(error)) => {
            tracing::debug!(error = %error, "client body unreadable");
            Err(Rejection::BodyUnreadable)
        }
        Err(_elapsed) => Err(Rejection::BodyTimeout),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
