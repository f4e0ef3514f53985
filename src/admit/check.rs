//! Stage 6 of design §1: the parameters, then the body, read only now within its limits.
//! A request whose parameters and body both fail hears of both in one answer.

use bytes::Bytes;
use http::HeaderMap;
use http_body::Body;

use super::body::{declared_length, read_within, refuse_declared_excess};
use super::stream::{Bounded, RequestBody};
use super::{Admission, Room, Target, enforce, read_body};
use crate::config::Mode;
use crate::grpc::encoding::Encoding;
use crate::grpc::framing::{Framing, FramingError};
use crate::grpc::message::MessageCheck;
use crate::oip;
use crate::reject::{Rejection, Stage};
use crate::spec::Rpc;
use crate::trail::Trail;
use crate::validate::{self, json::JsonLimits};

/// Stage 6: the parameters, then the body, read only now within its limits; a request
/// whose parameters and body both fail hears of both. A body no check needs whole is not
/// read: it goes to the model as it arrives (see `stream`).
pub(super) async fn check_request<B>(
    snapshot: &Admission<'_>,
    target: &Target<'_, '_>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: B,
    trail: &mut Trail,
) -> Result<(RequestBody<B>, Room), Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(rpc) = target
        .operation
        .and_then(|operation| operation.rpc.as_ref())
    {
        return grpc_messages(snapshot, rpc, target.mode, headers, body, trail).await;
    }
    let parameters = check_parameters(snapshot, target, query, headers, trail);
    let declared = declared_length(headers);
    if let Some(required) = streamable(target, headers, declared, &body) {
        parameters?;
        let limits = &snapshot.config.limits;
        refuse_declared_excess(declared, limits)?;
        trail.pass(Stage::Validate, || {
            "body relayed as it arrives: no check reads it".to_owned()
        });
        let bounded = Bounded::new(
            body,
            limits.max_body_bytes,
            limits.body_read_timeout,
            // In shadow mode an empty required body is forwarded, as a read one would be.
            required && target.mode == Mode::Enforce,
        );
        return Ok((RequestBody::Streamed(bounded), Room::default()));
    }
    let (body, room) =
        match read_body(body, declared, &snapshot.config.limits, snapshot.bodies).await {
            Ok(read) => read,
            Err(unread) => return Err(parameters.err().unwrap_or(unread)),
        };
    trail.body_read = true;
    let checked = check_body(snapshot, target, headers, &body, trail)
        .and_then(|()| check_inference(snapshot, target, headers, &body, trail));
    validate::together(parameters, checked)?;
    Ok((RequestBody::Whole(body), room))
}

/// A gRPC call's messages, checked against the method's input type (see `grpc::framing`,
/// `grpc::message`), each within `grpc.max_message_bytes`. A unary call's one message is
/// read whole within `limits.body_read_timeout` and checked before anything reaches the
/// model, so a refusal is a clean gRPC status and the message forwarded is the one checked;
/// a streaming call's messages are checked as they pass, when the client has them (the
/// call's deadline and the model bound it, not a body timeout). Compressed messages go on
/// decompressed: the message forwarded is the one checked.
async fn grpc_messages<B>(
    snapshot: &Admission<'_>,
    rpc: &Rpc,
    mode: Mode,
    headers: &HeaderMap,
    body: B,
    trail: &mut Trail,
) -> Result<(RequestBody<B>, Room), Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = &snapshot.config.limits;
    let (mut framing, max_message) = framing(snapshot, rpc, headers)?;
    if rpc.client_streaming {
        trail.pass(Stage::Validate, || {
            format!("gRPC messages checked as they pass, each within {max_message} bytes")
        });
        let bounded = Bounded::new(body, u64::MAX, STREAMS_WAIT, false);
        return Ok((
            RequestBody::Streamed(bounded.with_framing(framing)),
            Room::default(),
        ));
    }
    let read = read_within(body, None, max_message + 5, limits, snapshot.bodies).await;
    let (message, room) = read.map_err(|rejection| match rejection {
        Rejection::BodyTooLarge { .. } => Rejection::GrpcMessageTooLarge { limit: max_message },
        other => other,
    })?;
    trail.body_read = true;
    let checked = framing.feed(&message).and_then(|relayed| {
        framing.finish()?;
        Ok(relayed)
    });
    // In shadow mode a message that does not match its type is counted and goes on.
    let relayed = enforce(checked.map_err(FramingError::rejection), mode, trail)?;
    trail.pass(Stage::Validate, || {
        "the gRPC message matches its type".to_owned()
    });
    Ok((RequestBody::Whole(relayed.unwrap_or(message)), room))
}

/// How a call's messages are read (see `grpc::framing`), and their bound.
fn framing(
    snapshot: &Admission<'_>,
    rpc: &Rpc,
    headers: &HeaderMap,
) -> Result<(Framing, u64), Rejection> {
    let grpc = snapshot.config.grpc.as_ref();
    let max_message = grpc.map_or(0, |g| g.max_message_bytes);
    let encoding = Encoding::of(headers)?;
    let mut framing = Framing::new(max_message, !rpc.client_streaming).encoded(encoding);
    if let Some(input) = &rpc.input {
        let limits = &snapshot.config.limits;
        let check = MessageCheck::new(input.clone(), rpc.allow_unknown_fields, limits)
            .with_rules(rpc.rules.clone());
        framing = framing.checking(check);
    }
    Ok((framing, max_message))
}

/// How long a streaming gRPC call's client may keep moat waiting for its next message, in
/// all: no bound of moat's own — a year stands for none — since a bidirectional stream
/// waits on the model's answers by design; its deadline (`grpc-timeout`) and the model's
/// own limits end it.
const STREAMS_WAIT: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Stage 6 on an Open Inference Protocol REST infer call (`oip::rest`): its tensors
/// consistent, within `limits.max_tensor_elements`. Under Triton's binary extension only
/// the JSON part is read as JSON.
fn check_inference(
    snapshot: &Admission<'_>,
    target: &Target<'_, '_>,
    headers: &HeaderMap,
    body: &Bytes,
    trail: &mut Trail,
) -> Result<(), Rejection> {
    if target.inference.is_none() {
        return Ok(());
    }
    let max_elements = snapshot.config.limits.max_tensor_elements;
    let verdict = oip::rest::check_body(headers, body, max_elements).map_err(Rejection::BodySchema);
    note_validity(trail, "tensors", verdict.is_ok());
    enforce(verdict, target.mode, trail)
}

/// Bodies declared smaller than this are read whole even when nothing checks them: held,
/// one goes to the model in the same write as the request head; streamed, hyper writes the
/// head first and the body after it, a second syscall on both sides (measured: a 70-byte
/// body without a spec cost 1.5× the CPU of one read whole, `bench/run.sh`).
const STREAM_FROM_BYTES: u64 = 64 * 1024;

/// `Some(required)` when the body can go to the model unread: there is one (chunked, or
/// declared at least [`STREAM_FROM_BYTES`] long), no LLM meter reads it, and the operation
/// (if any) declares a media type moat does not parse for it.
fn streamable<B: Body>(
    target: &Target<'_, '_>,
    headers: &HeaderMap,
    declared: Option<u64>,
    body: &B,
) -> Option<bool> {
    let small = declared.is_some_and(|length| length < STREAM_FROM_BYTES);
    let read = target.llm.is_some() || target.inference.is_some();
    if read || body.is_end_stream() || small {
        return None;
    }
    match target.operation {
        None => Some(false),
        Some(operation) => validate::body::unparsed(operation, headers),
    }
}

/// Stage 6, before the body is read: path, query, header and cookie parameters.
fn check_parameters(
    snapshot: &Admission<'_>,
    target: &Target<'_, '_>,
    query: Option<&str>,
    headers: &HeaderMap,
    trail: &mut Trail,
) -> Result<(), Rejection> {
    let Some(operation) = target.operation else {
        return Ok(());
    };
    let openapi = snapshot.config.openapi.as_ref();
    let reject_unknown = openapi.is_some_and(|o| o.reject_unknown_query);
    let verdict = validate::parameters(
        operation,
        &target.path_values,
        query,
        headers,
        reject_unknown,
    );
    note_validity(trail, "parameters", verdict.is_ok());
    enforce(verdict, target.mode, trail)
}

/// Stage 6 on the body: its content type, strict JSON and schema.
fn check_body(
    snapshot: &Admission<'_>,
    target: &Target<'_, '_>,
    headers: &HeaderMap,
    body: &Bytes,
    trail: &mut Trail,
) -> Result<(), Rejection> {
    let Some(operation) = target.operation else {
        trail.pass(Stage::Validate, || {
            "nothing to validate without an operation".to_owned()
        });
        return Ok(());
    };
    let limits = JsonLimits::of(&snapshot.config.limits);
    let verdict = validate::request_body(operation, headers, body, &limits);
    note_validity(trail, "body", verdict.is_ok());
    enforce(verdict, target.mode, trail)?;
    trail.pass(Stage::Validate, || format!("body {} bytes", body.len()));
    Ok(())
}

fn note_validity(trail: &mut Trail, what: &'static str, valid: bool) {
    if valid {
        trail.note(Stage::Validate, || format!("{what}: valid"));
    }
}
