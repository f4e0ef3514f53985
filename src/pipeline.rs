//! The request pipeline of design §1, read top to bottom in [`handle`]: each stage is a
//! plain call that either hands its result to the next or refuses with a [`Rejection`].
//! Stages run cheapest first, and the body is read only after the request has been routed,
//! authenticated, authorised and rate-limited, so an unauthenticated caller can never make
//! moat buffer or parse a body.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::access::Completion;
use crate::auth::Requirement;
use crate::auth::{Caller, Trace};
use crate::body::ResponseBody;
use crate::config::{Limits, Mode};
use crate::forward::{self, ForwardContext, X_REQUEST_ID};
use crate::frame;
use crate::metrics::OperationLabel;
use crate::reject::Rejection;
use crate::route::Routed;
use crate::snapshot::{Snapshot, State};
use crate::spec::Operation;
use crate::validate;

/// The connection a request arrived on.
#[derive(Clone, Debug)]
pub struct Peer {
    pub ip: IpAddr,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// The verified client certificate's subject (mTLS), for `X-Moat-Client-Cert-Subject`.
    pub client_cert: Option<http::HeaderValue>,
    /// The connection's bookkeeping: open requests (idle connections are closed),
    /// requests carried, client resets (see `connection`).
    pub connection: Arc<crate::connection::Connection>,
}

/// Answers one request. Never fails: every refusal becomes a problem+json response here.
pub async fn handle(
    state: &State,
    request: Request<Incoming>,
    peer: Peer,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let snapshot = state.snapshot.load_full();
    let request_id = forward::client_request_id(request.headers())
        .map(str::to_owned)
        .unwrap_or_else(forward::new_request_id);
    let mut completion = Completion::start(
        state.metrics.clone(),
        started,
        request_id,
        peer.ip,
        request.method().clone(),
        request.uri().clone(),
        unrouted(),
    );
    completion.stream = Some(peer.connection.open());
    let mut response = match run(&snapshot, request, &peer, &mut completion).await {
        Ok(response) => response,
        Err(rejection) => {
            completion.rejected(&rejection);
            rejection.into_response(&completion.request_id)
        }
    };
    if let Ok(id) = HeaderValue::from_str(&completion.request_id) {
        response.headers_mut().insert(X_REQUEST_ID, id);
    }
    completion.status = response.status();
    response.body_mut().attach(completion);
    response
}

async fn run(
    snapshot: &Snapshot,
    request: Request<Incoming>,
    peer: &Peer,
    completion: &mut Completion,
) -> Result<Response<ResponseBody>, Rejection> {
    let config = &snapshot.config;
    let (mut parts, body) = request.into_parts();

    // 1. frame: sizes and the one canonical reading of the path.
    let path = frame::check(&parts.uri, &parts.headers, &config.limits)?;

    // 2. route: only what the spec declares goes further.
    let Target {
        operation,
        template,
        path_values,
        requirement,
        mode,
    } = match route(snapshot, &parts.method, &path)? {
        Routing::Options(allow) => return Ok(options_response(allow)),
        Routing::Target(target) => target,
    };
    if let Some(operation) = operation {
        completion.operation = operation.label();
    }
    completion.route = template;

    // 5 (first half). The per-client limit is taken before credentials are checked, so it
    // also bounds failed attempts.
    enforce(snapshot.auth.limits.check_client(peer.ip), mode, completion)?;

    // 3–4. authenticate and authorize: credentials, then scopes.
    let principal = snapshot
        .auth
        .check(
            requirement,
            &Caller {
                headers: &parts.headers,
                query: parts.uri.query(),
                client: peer.ip,
                operation,
                request_id: &completion.request_id,
            },
            &mut Trace::off(),
        )
        .await?;
    if let Some(principal) = &principal {
        completion.subject = principal.subject.clone();
        completion.key_id = principal.key_id.clone();
    }
    let stripped_uri = without_query_credentials(&parts.uri, snapshot);
    let query = stripped_uri.as_ref().map_or(parts.uri.query(), Uri::query);

    // 5. limit: the key's own rate limit.
    if let Some(key_id) = principal.as_ref().and_then(|p| p.key_id.as_deref()) {
        enforce(snapshot.auth.limits.check_key(key_id), mode, completion)?;
    }

    // 6. validate: parameters first, then the body, read only now within its limits.
    if let Some(operation) = operation {
        let reject_unknown = config
            .openapi
            .as_ref()
            .is_some_and(|o| o.reject_unknown_query);
        let verdict = validate::parameters(
            operation,
            &path_values,
            query,
            &parts.headers,
            reject_unknown,
        );
        enforce(verdict, mode, completion)?;
    }
    let body = read_body(body, &parts.headers, &config.limits).await?;
    if let Some(operation) = operation {
        let verdict = validate::request_body(
            operation,
            &parts.headers,
            &body,
            config.limits.max_json_depth,
        );
        enforce(verdict, mode, completion)?;
    }

    // 7. forward.
    if let Some(uri) = stripped_uri {
        parts.uri = uri;
    }
    let context = ForwardContext {
        client_ip: peer.ip,
        proto: peer.proto,
        client_cert: peer.client_cert.as_ref(),
        request_id: &completion.request_id,
        forward_credentials: config.policy.forward_credentials,
        principal: principal.as_ref(),
        credentials: &snapshot.auth.credential_locations,
    };
    let forwarded = snapshot.upstream.forward(parts, body, &context).await?;
    completion.upstream_time = Some(forwarded.upstream_time);
    Ok(forwarded.response)
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
}

/// Stage 2: the operation at `path` and its security requirement and mode (the
/// operation's own mode, else the policy's). `serve` and `moat explain` share it.
pub fn route<'s, 'p>(
    snapshot: &'s Snapshot,
    method: &Method,
    path: &'p str,
) -> Result<Routing<'s, 'p>, Rejection> {
    let policy_mode = snapshot.config.policy.mode;
    let Some(spec) = &snapshot.spec else {
        return Ok(Routing::Target(Target {
            operation: None,
            template: None,
            path_values: Vec::new(),
            requirement: &snapshot.auth.unrouted,
            mode: policy_mode,
        }));
    };
    Ok(match spec.router.route(method, path)? {
        Routed::Options { allow } => Routing::Options(allow),
        Routed::Operation {
            index,
            template,
            values,
        } => Routing::Target(Target {
            operation: Some(&spec.operations[index]),
            template: Some(template),
            path_values: values,
            requirement: &snapshot.auth.requirements[index],
            mode: snapshot.auth.modes[index].unwrap_or(policy_mode),
        }),
    })
}

/// A key carried in the query leaves it right after stage 3, so neither validation nor the
/// model sees it (unless `forward_credentials`); `None` when nothing was removed.
pub fn without_query_credentials(uri: &Uri, snapshot: &Snapshot) -> Option<Uri> {
    if snapshot.config.policy.forward_credentials {
        return None;
    }
    forward::without_query_credentials(uri, &snapshot.auth.credential_locations)
}

/// In shadow mode a validation failure is logged and counted, and the request goes on.
fn enforce(
    verdict: Result<(), Rejection>,
    mode: Mode,
    completion: &mut Completion,
) -> Result<(), Rejection> {
    match (verdict, mode) {
        (Err(rejection), Mode::Shadow) => {
            completion.shadowed(&rejection);
            Ok(())
        }
        (verdict, _) => verdict,
    }
}

/// `OPTIONS` on a declared path whose spec does not declare OPTIONS: answered here, with
/// the same `Allow` a 405 would carry, and never forwarded.
fn options_response(allow: HeaderValue) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(ALLOW, allow);
    response
}

fn unrouted() -> OperationLabel {
    thread_local! {
        static UNROUTED: OperationLabel = Arc::from("unrouted");
    }
    UNROUTED.with(Clone::clone)
}

/// Buffers the request body: refused from `Content-Length` before reading when it
/// declares too much, and cut off at the limit when it doesn't say.
pub async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<Bytes, Rejection> {
    let limit = limits.max_body_bytes;
    if declared_length(headers).is_some_and(|length| length > limit) {
        return Err(Rejection::BodyTooLarge { limit });
    }
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    collect_within(Limited::new(body, max), limits.body_read_timeout, limit).await
}

async fn collect_within(
    body: Limited<Incoming>,
    timeout: Duration,
    limit: u64,
) -> Result<Bytes, Rejection> {
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
