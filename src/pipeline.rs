//! The request pipeline of design §1, read top to bottom in [`handle`]: admit (stages 1–6,
//! see `admit`), then forward (stage 7). Every refusal becomes a problem+json response here,
//! and the access record, which rides on the response body, is written when it ends.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{ALLOW, CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::access::Completion;
use crate::admit::{Verdict, admit};
use crate::body::{IdleTimeout, ResponseBody};
use crate::forward::{ForwardContext, RequestId, X_REQUEST_ID};
use crate::llm;
use crate::metrics::OperationLabel;
use crate::reject::Rejection;
use crate::snapshot::{Snapshot, State};

/// The connection a request arrived on.
#[derive(Clone, Debug)]
pub struct Peer {
    pub ip: IpAddr,
    /// `ip` as the upstream's `X-Forwarded-For`, built once for all the connection's requests.
    pub forwarded_for: HeaderValue,
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
    // An HTTP/1 request whose body a refusal leaves unread (see `closing`).
    let unread_body =
        request.version() <= Version::HTTP_11 && !http_body::Body::is_end_stream(request.body());
    let request_id = RequestId::of(request.headers());
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
            let mut response = rejection
                .into_response(completion.request_id.as_str())
                .map(ResponseBody::full);
            if unread_body && !completion.trail.body_read {
                closing(&mut response);
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID, completion.request_id.header());
    // Every response of a key with a quota says where it stands, a refusal after stage 5
    // (a validation failure, say) too.
    if let Some(quota) = &completion.trail.quota {
        quota.write(response.headers_mut());
    }
    completion.status = response.status();
    response.body_mut().attach(completion);
    response
}

/// Admit, then forward what was admitted.
async fn run(
    snapshot: &Snapshot,
    request: Request<Incoming>,
    peer: &Peer,
    completion: &mut Completion,
) -> Result<Response<ResponseBody>, Rejection> {
    let (parts, body) = request.into_parts();
    let request_id = &completion.request_id;
    let verdict = admit(
        snapshot,
        parts,
        body,
        peer.ip,
        request_id.as_str(),
        &mut completion.trail,
    )
    .await?;
    let mut admitted = match verdict {
        Verdict::Forward(admitted) => admitted,
        Verdict::Options(allow) => return Ok(options_response(allow)),
    };
    let context = ForwardContext {
        forwarded_for: &peer.forwarded_for,
        proto: peer.proto,
        client_cert: peer.client_cert.as_ref(),
        request_id,
        forward_credentials: snapshot.config.policy.forward_credentials,
        credentials: &snapshot.credentials,
    };
    // Dropped unused if the model gives no response: the reservation goes back whole.
    let llm = admitted.take_llm();
    let forwarded = snapshot.upstream.forward(admitted, &context).await?;
    completion.upstream_time = Some(forwarded.upstream_time);
    let Some(grant) = llm else {
        return Ok(forwarded.response);
    };
    let mut response = forwarded.response;
    let meter = grant.meter(response.status(), response.headers());
    completion.tokens = Some((0, 0));
    let metrics = completion.metrics().clone();
    if grant.holds(&meter) {
        response = hold_answer(response, grant, meter, &metrics, completion).await?;
    } else {
        response.body_mut().meter(grant, meter, metrics);
    }
    Ok(response)
}

/// A JSON answer to an LLM request with a limit, read whole before anything of it is
/// relayed (the model sends it at once when it is done, so this costs no latency): one
/// that carries more tokens than the bound moat wrote into the request — a server that
/// ignores `max_tokens` — is withheld with a 502, never relayed.
async fn hold_answer(
    response: Response<ResponseBody>,
    grant: llm::Grant,
    mut meter: llm::Meter,
    metrics: &Arc<crate::metrics::Metrics>,
    completion: &mut Completion,
) -> Result<Response<ResponseBody>, Rejection> {
    let (head, body) = response.into_parts();
    let bytes = match Limited::new(body, llm::MAX_JSON_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        // Too big to hold is past any bound a request can be admitted with here.
        Err(error) if error.is::<LengthLimitError>() => {
            let admitted = grant.admitted();
            grant.withhold(&meter, metrics);
            return Err(Rejection::UpstreamExceededMaxTokens { admitted });
        }
        // Nothing was relayed: the reservation goes back whole when `grant` drops.
        Err(error) if error.is::<IdleTimeout>() => return Err(Rejection::UpstreamTimeout),
        Err(error) => {
            tracing::warn!(error = %error, "upstream answer broke off");
            return Err(Rejection::UpstreamUnavailable);
        }
    };
    let _ = meter.feed(bytes.clone());
    meter.end();
    if meter.over_limit() {
        let admitted = grant.admitted();
        completion.tokens = Some((meter.prompt, meter.completion));
        grant.withhold(&meter, metrics);
        return Err(Rejection::UpstreamExceededMaxTokens { admitted });
    }
    let mut response = Response::from_parts(head, ResponseBody::full(bytes));
    let meter = grant.meter(response.status(), response.headers());
    response.body_mut().meter(grant, meter, metrics.clone());
    Ok(response)
}

/// A refusal that leaves the request body unread — moat never reads the body of a caller it
/// has not authenticated — ends the HTTP/1 connection: the rest of the body is still on
/// it. Saying so in `Connection: close` lets the client open a new connection for its next
/// request instead of writing it into one that is closing (Python's `http.client` sends
/// the body in a second write, after moat may already have answered).
fn closing(response: &mut Response<ResponseBody>) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
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
