//! The request pipeline of design §1, read top to bottom in [`handle`]: admit (stages 1–6,
//! see `admit`), then forward (stage 7). What came of it is one [`Outcome`] value; every
//! refusal becomes a problem+json response here, and the access record, begun with the
//! request and answered once, rides on the response body until it ends.

mod answer;
mod held;
mod hold;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{ALLOW, CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

pub use self::answer::Answer;
use self::held::Held;
use crate::access::{AccessRecord, Recorded, RequestHead, Tokens};
use crate::admit::{Verdict, admit};
use crate::forward::{ForwardContext, Forwarded};
use crate::grpc::health::HealthAnswer;
use crate::ids::{RequestId, X_REQUEST_ID};
use crate::llm::{EventCheck, Grant, MeteredBody};
use crate::metrics::Metrics;
use crate::reject::{Audience, Rejection};
use crate::snapshot::{Snapshot, State};

/// The body of every response the public listener sends.
pub type ResponseBody = Recorded<Answer>;

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

/// What came of a request.
#[allow(clippy::large_enum_variant)] // `Forwarded` is the common case: boxing it allocates per request
enum Outcome {
    /// The model answered: its response, and how long its head took.
    Forwarded(Response<Answer>, Duration),
    /// `OPTIONS` on a declared path that does not declare it: moat answers with `Allow`.
    Options(HeaderValue),
    /// A stage refused it (with the tokens of an LLM answer withheld, if any).
    Refused(Rejection, Option<Tokens>),
    /// The gRPC health check, answered by moat.
    Health(HealthAnswer),
}

/// What the response is written for, known from the request head.
#[derive(Clone, Copy)]
struct Asked {
    /// An HTTP/1 request whose body a refusal leaves unread (see `closing`).
    unread_body: bool,
    /// A gRPC call: a refusal is a Trailers-Only response (see `reject/grpc.rs`).
    grpc: bool,
}

/// Answers one request. Never fails: every refusal becomes a problem+json response here.
pub async fn handle(
    state: &State,
    request: Request<Incoming>,
    peer: Peer,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let snapshot = state.snapshot.load_full();
    let asked = Asked {
        unread_body: request.version() <= Version::HTTP_11
            && !http_body::Body::is_end_stream(request.body()),
        grpc: crate::grpc::is_grpc(request.headers()),
    };
    let head = RequestHead {
        request_id: RequestId::of(request.headers()),
        client: peer.ip,
        method: request.method().clone(),
        uri: request.uri().clone(),
    };
    let mut record =
        AccessRecord::begin(state.metrics.clone(), started, head, peer.connection.open());
    let outcome = run(&snapshot, request, &peer, &mut record).await;
    let response = respond(outcome, &mut record, asked);
    response.map(|body| Recorded::new(body, record))
}

/// Admit, then forward what was admitted.
async fn run(
    snapshot: &Snapshot,
    request: Request<Incoming>,
    peer: &Peer,
    record: &mut AccessRecord,
) -> Outcome {
    let (parts, body) = request.into_parts();
    let received = record.started();
    let (request_id, trail) = record.request_and_trail();
    let admission = snapshot.admission();
    let verdict = admit(&admission, parts, body, peer.ip, request_id.as_str(), trail);
    let mut admitted = match verdict.await {
        Ok(Verdict::Forward(admitted)) => admitted,
        Ok(Verdict::Options(allow)) => return Outcome::Options(allow),
        Ok(Verdict::Health(answer)) => return Outcome::Health(answer),
        Err(rejection) => return Outcome::Refused(rejection, None),
    };
    let context = ForwardContext {
        forwarded_for: &peer.forwarded_for,
        proto: peer.proto,
        client_cert: peer.client_cert.as_ref(),
        request_id,
        received,
    };
    let answering = held::Answering::of(&mut admitted);
    // Dropped unused if the model gives no response: the reservation goes back whole.
    let llm = admitted.take_llm();
    // The body's room is given back once the model has answered: until then the body may
    // be resent (a retry), so its bytes are still held.
    let room = admitted.take_room();
    let forwarded = snapshot.upstream.forward(admitted, &context).await;
    drop(room);
    let forwarded = match forwarded {
        Ok(forwarded) => forwarded,
        Err(rejection) => return Outcome::Refused(rejection, None),
    };
    match held::held(snapshot, &answering, forwarded, record).await {
        Held::Relay(forwarded, events) => {
            answer(forwarded, llm, events, record.metrics().clone()).await
        }
        Held::Done(outcome) => outcome,
    }
}

/// The model's answer as relayed: as it is, or metered for an LLM request's grant (a JSON
/// answer held whole first, see `hold`; a stream's events held to `events`).
async fn answer(
    forwarded: Forwarded,
    llm: Option<Grant>,
    events: Option<EventCheck>,
    metrics: Arc<Metrics>,
) -> Outcome {
    let (response, upstream_time) = (forwarded.response, forwarded.upstream_time);
    let Some(grant) = llm else {
        return Outcome::Forwarded(response.map(Answer::upstream), upstream_time);
    };
    let meter = grant.meter(response.status(), response.headers());
    if events.is_some() && !meter.reads_events() {
        // Declared as an event stream, but not a successful one the meter reads.
        let labels = crate::metrics::ReasonLabels { reason: "stream" };
        metrics.responses.not_checked.get_or_create(&labels).inc();
    }
    let meter = meter.checking(events);
    if grant.holds(&meter) {
        return match hold::hold(response, grant, meter, metrics).await {
            Ok(response) => Outcome::Forwarded(response, upstream_time),
            Err((rejection, tokens)) => Outcome::Refused(rejection, tokens),
        };
    }
    let metered = |body| Answer::metered(MeteredBody::new(body, grant, meter, metrics));
    Outcome::Forwarded(response.map(metered), upstream_time)
}

/// The response of `outcome`, and the record answered with it: its status, its refusal,
/// the request id, and the quota fields of a key that has one.
fn respond(outcome: Outcome, record: &mut AccessRecord, asked: Asked) -> Response<Answer> {
    let mut response = match outcome {
        Outcome::Forwarded(response, upstream_time) => {
            record.answered(response.status(), None, Some(upstream_time), None);
            response
        }
        Outcome::Options(allow) => {
            record.answered(StatusCode::NO_CONTENT, None, None, None);
            options_response(allow)
        }
        Outcome::Refused(rejection, tokens) => refusal(rejection, tokens, record, asked),
        Outcome::Health(answer) => {
            record.answered(StatusCode::OK, None, None, None);
            health_response(answer)
        }
    };
    if asked.grpc {
        record.grpc_status_in(response.headers());
    }
    response
        .headers_mut()
        .insert(X_REQUEST_ID, record.request_id().header());
    // Every response of a key with a quota says where it stands, a refusal after stage 5
    // (a validation failure, say) too.
    if let Some(quota) = &record.trail().quota {
        quota.write(response.headers_mut());
    }
    response
}

/// A refusal's response, written for the clients of its operation: an LLM operation's
/// also carries OpenAI's error object, which the OpenAI SDKs print.
fn refusal(
    rejection: Rejection,
    tokens: Option<Tokens>,
    record: &mut AccessRecord,
    asked: Asked,
) -> Response<Answer> {
    record.answered(rejection.status(), Some(&rejection), None, tokens);
    let audience = match (asked.grpc, record.trail().openai) {
        (true, _) => Audience::Grpc,
        (false, true) => Audience::OpenAi,
        (false, false) => Audience::Any,
    };
    let mut response = rejection
        .into_response(record.request_id().as_str(), audience)
        .map(Answer::moat);
    if asked.unread_body && !record.trail().body_read {
        closing(&mut response);
    }
    response
}

/// A refusal that leaves the request body unread — moat never reads the body of a caller it
/// has not authenticated — ends the HTTP/1 connection: the rest of the body is still on
/// it. Saying so in `Connection: close` lets the client open a new connection for its next
/// request instead of writing it into one that is closing (Python's `http.client` sends
/// the body in a second write, after moat may already have answered).
fn closing(response: &mut Response<Answer>) {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// The health check's answer: its message, then `grpc-status` in the trailers.
fn health_response(answer: HealthAnswer) -> Response<Answer> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert(crate::reject::GRPC_STATUS, answer.status.header());
    let mut response = Response::new(Answer::moat_with_trailers(answer.message, trailers));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// `OPTIONS` on a declared path whose spec does not declare OPTIONS: answered here, with
/// the same `Allow` a 405 would carry, and never forwarded.
fn options_response(allow: HeaderValue) -> Response<Answer> {
    let mut response = Response::new(Answer::moat(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(ALLOW, allow);
    response
}
