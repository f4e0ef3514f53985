//! Stages 1–6 of design §1 — frame, route, authenticate, authorize, limit, validate — in one
//! function, the only place their order is written. `serve` forwards what [`admit`] lets
//! through; `moat explain` runs the same function on an in-memory request and prints the
//! trail. Stages run cheapest first, and the body is read only after the request has been
//! routed, authenticated, authorised and rate-limited, so an unauthenticated caller can
//! never make moat buffer or parse a body.

mod admitted;
mod body;
mod check;
mod describe;
mod room;
mod route;
mod stream;

use std::net::IpAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Uri};
use http_body::Body;

pub use self::admitted::{Admitted, Verdict};
pub use self::body::read_body;
use self::check::check_request;
use self::describe::{describe_limits, describe_llm, describe_principal, describe_route};
pub use self::room::{BodyBudget, Room};
use self::route::route_request;
pub use self::route::{Routing, Target};
pub use self::stream::{Bounded, CutSlot, RequestBody, refusal_in};
use crate::auth::{self, Auth, Caller, KeyLocation, Principal};
use crate::config::{Config, Mode};
use crate::frame;
use crate::grpc::Services;
use crate::limit::RateLimits;
use crate::llm::{self, Grant};
use crate::policy::Routes;
use crate::reject::{Rejection, Stage};
use crate::spec::{Operation, Spec};
use crate::trail::Trail;

/// What admission reads of the serving snapshot: its policy data, never the client to the
/// model (as linkerd2-proxy keeps policy apart from the client). The snapshot hands one out
/// per request; only references, so building it costs nothing.
pub struct Admission<'s> {
    pub config: &'s Config,
    /// `None` when no spec is configured: every path is forwarded.
    pub spec: Option<&'s Spec>,
    /// The model's gRPC services, when configured.
    pub grpc: Option<&'s Services>,
    pub routes: &'s Routes,
    pub auth: &'s Auth,
    pub limits: &'s RateLimits,
    pub llm: &'s llm::Rules,
    /// Where API keys travel, to strip them before the request goes on.
    pub credentials: &'s [KeyLocation],
    /// The room request bodies share (`limits.max_buffered_body_bytes`).
    pub bodies: &'s BodyBudget,
}

/// Runs stages 1–6 on a request. `body` is any HTTP body: hyper's for `serve`, an
/// in-memory one for `moat explain` and the pipeline tests.
pub async fn admit<B>(
    snapshot: &Admission<'_>,
    mut parts: Parts,
    body: B,
    client: IpAddr,
    request_id: &str,
    trail: &mut Trail,
) -> Result<Verdict<B>, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &snapshot.config.limits;
    // 1. frame: sizes and the one canonical reading of the path.
    let path = frame::check(&parts.uri, parts.version, &parts.headers, limits)?;
    trail.pass(Stage::Frame, || format!("canonical path {path}"));
    // 2. route: only what the spec (or the `.proto`) declares goes further.
    let target = match route_request(snapshot, &parts, &path)? {
        Routing::Options(allow) => return Ok(options(allow, trail)),
        Routing::Target(target) => target,
    };
    routed(&target, trail);
    // 5 (first half). The per-client limit is taken before credentials are checked, so it
    // also bounds failed attempts.
    enforce(snapshot.limits.check_client(client), target.mode, trail)?;
    // 3–4. authenticate and authorize: credentials, then scopes.
    let caller = caller(&parts, client, &target, request_id);
    let principal = authenticate(snapshot, &target, &caller, trail).await?;
    // A key carried in the query leaves it right here: neither validation nor the model
    // sees it (unless `forward_credentials`).
    let stripped = without_query_credentials(&parts.uri, snapshot);
    // 5. limit: the key's own rate limit and quota (and, on Redis, the shared per-client
    // limit), in one round trip at most.
    limit(snapshot, client, principal.as_ref(), target.mode, trail).await?;
    // 6. validate: parameters, then the body, read only now within its limits.
    let query = stripped.as_ref().map_or(parts.uri.query(), Uri::query);
    let (body, room) = check_request(snapshot, &target, query, &parts.headers, body, trail).await?;
    if let Some(answer) = grpc_stage(snapshot, &target, principal.as_ref(), &body)? {
        return Ok(Verdict::Health(answer));
    }
    // 5 (LLM operations). With the body read and valid: the key's model allowlist,
    // max_tokens cap and stream slots, and a reservation in its token budgets.
    let metered = target.llm.map(|_| target.mode);
    let headers = &mut parts.headers;
    let (body, grant) = llm_stage(snapshot, metered, &principal, headers, body, trail).await?;
    let responses = target.answers();
    strip_credentials(snapshot, &mut parts, stripped);
    let admitted = Admitted::new(parts, body, principal, grant, room);
    Ok(Verdict::Forward(admitted.answering(responses)))
}

/// The request as stages 3–4 see it.
fn caller<'r>(
    parts: &'r Parts,
    client: IpAddr,
    target: &Target<'r, '_>,
    request_id: &'r str,
) -> Caller<'r> {
    Caller {
        headers: &parts.headers,
        query: parts.uri.query(),
        client,
        operation: target.operation,
        request_id,
    }
}

/// `OPTIONS` on a declared path that does not declare it: moat answers itself.
fn options<B>(allow: http::HeaderValue, trail: &mut Trail) -> Verdict<B> {
    trail.pass(Stage::Route, || {
        let allow = allow.to_str().unwrap_or_default();
        format!("OPTIONS answered by moat: 204, Allow: {allow}")
    });
    Verdict::Options(allow)
}

/// The trail names the operation and route stage 2 found.
fn routed(target: &Target<'_, '_>, trail: &mut Trail) {
    trail.operation = target.operation.map(Operation::label);
    trail.route = target.template.clone();
    trail.openai = target.llm.is_some();
    trail.pass(Stage::Route, || describe_route(target));
}

/// Stages 3–4: who the caller is, and that they may call the operation.
async fn authenticate(
    snapshot: &Admission<'_>,
    target: &Target<'_, '_>,
    caller: &Caller<'_>,
    trail: &mut Trail,
) -> Result<Option<Principal>, Rejection> {
    let principal = snapshot
        .auth
        .check(target.requirement, caller, trail)
        .await?;
    if let Some(principal) = &principal {
        trail.subject = principal.subject.clone();
        trail.key_id = principal.key_id.clone();
    }
    trail.pass(Stage::Authenticate, || {
        describe_principal(principal.as_ref())
    });
    // The model an Open Inference Protocol REST call names is in its path: checked now,
    // before its body is read.
    if let Some(model) = target.inference {
        allowed_model(snapshot, Some(model), principal.as_ref())?;
    }
    Ok(principal)
}

/// Stage 5 after credentials: the key's bucket and quota; the quota's usage goes on the
/// trail for the response's `RateLimit-*` fields.
async fn limit(
    snapshot: &Admission<'_>,
    client: IpAddr,
    principal: Option<&Principal>,
    mode: Mode,
    trail: &mut Trail,
) -> Result<(), Rejection> {
    let key_id = principal.and_then(|p| p.key_id.as_deref());
    match snapshot.limits.check(client, key_id).await {
        Ok(quota) => trail.quota = quota,
        Err(rejection) => enforce(Err(rejection), mode, trail)?,
    }
    trail.pass(Stage::Limit, || describe_limits(snapshot, principal));
    Ok(())
}

/// Stage 5 of an LLM operation (see `llm::check_request`), on the body stage 6 let through;
/// `metered`: the operation's mode when it is an LLM operation, else `None` (nothing to do).
async fn llm_stage<B>(
    snapshot: &Admission<'_>,
    metered: Option<Mode>,
    principal: &Option<Principal>,
    headers: &mut HeaderMap,
    body: RequestBody<B>,
    trail: &mut Trail,
) -> Result<(RequestBody<B>, Option<Grant>), Rejection> {
    let Some(mode) = metered else {
        return Ok((body, None));
    };
    // Never streamed: stage 6 reads an LLM operation's body whole (see `check_request`).
    let RequestBody::Whole(body) = body else {
        return Err(Rejection::Internal(Stage::Limit));
    };
    let (body, grant, request) = llm::check_request(
        snapshot.llm,
        snapshot.limits,
        principal.as_ref(),
        headers,
        body,
        &mut |verdict| enforce(verdict, mode, trail),
        mode,
    )
    .await?;
    trail.pass(Stage::Limit, || describe_llm(&request, grant.as_ref()));
    Ok((RequestBody::Whole(body), grant))
}

/// gRPC after stage 6, on a unary call's message (read whole): the health check moat
/// answers itself, and an inference call's `model_name` against the key's `models`
/// allowlist (the Open Inference Protocol's `ModelInferRequest`).
fn grpc_stage<B>(
    snapshot: &Admission<'_>,
    target: &Target<'_, '_>,
    principal: Option<&Principal>,
    body: &RequestBody<B>,
) -> Result<Option<crate::grpc::health::HealthAnswer>, Rejection> {
    use crate::grpc::health;
    use crate::oip;
    let (Some(rpc), RequestBody::Whole(body)) =
        (target.operation.and_then(|o| o.rpc.as_ref()), body)
    else {
        return Ok(None);
    };
    if let (true, Some(services)) = (rpc.answered_by_moat, snapshot.grpc) {
        return Ok(Some(health::answer(body, services)));
    }
    if rpc
        .input
        .as_ref()
        .is_some_and(|i| i.full_name() == oip::INFER_REQUEST)
    {
        allowed_model(snapshot, oip::model_name(body).as_deref(), principal)?;
    }
    Ok(None)
}

/// Stage 4 for a call that names a model (the Open Inference Protocol's, over gRPC or
/// REST): the key's `models` allowlist.
fn allowed_model(
    snapshot: &Admission<'_>,
    model: Option<&str>,
    principal: Option<&Principal>,
) -> Result<(), Rejection> {
    let key_id = principal.and_then(|p| p.key_id.as_deref());
    match snapshot.llm.allows_model(key_id, model) {
        true => Ok(()),
        false => Err(Rejection::ModelNotAllowed),
    }
}

/// A key carried in the query, removed from the URI; `None` when nothing was removed.
fn without_query_credentials(uri: &Uri, snapshot: &Admission<'_>) -> Option<Uri> {
    if snapshot.config.policy.forward_credentials {
        return None;
    }
    auth::without_query_credentials(uri, snapshot.credentials)
}

/// What goes on carries no credential: the query key removed, `Authorization` and the
/// key headers and cookies stripped (unless `forward_credentials`).
fn strip_credentials(snapshot: &Admission<'_>, parts: &mut Parts, stripped: Option<Uri>) {
    if snapshot.config.policy.forward_credentials {
        return;
    }
    if let Some(uri) = stripped {
        parts.uri = uri;
    }
    auth::strip_credentials(&mut parts.headers, snapshot.credentials);
}

/// In shadow mode a limit or validation failure is kept on the trail (logged and counted)
/// and the request goes on.
pub(super) fn enforce<T: Default>(
    verdict: Result<T, Rejection>,
    mode: Mode,
    trail: &mut Trail,
) -> Result<T, Rejection> {
    match (verdict, mode) {
        (Err(rejection), Mode::Shadow) => {
            trail.shadowed.push(rejection);
            Ok(T::default())
        }
        (verdict, _) => verdict,
    }
}

#[cfg(test)]
mod tests;
