//! Reading the request body, only after stages 1–5 passed: refused from `Content-Length`
//! before reading when it declares too much, cut off at the limit when it doesn't say,
//! and bounded in time.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body;
use http_body_util::BodyExt;

use super::room::{BodyBudget, Room};
use crate::config::Limits;
use crate::reject::Rejection;

/// Buffers the request body within `limits.max_body_bytes`: refused from `Content-Length`
/// before reading when it declares too much, cut off at the limit when it doesn't say.
/// The body holds room in `budget` from its first bytes: all its `Content-Length` at once
/// (a body that got only part of its room would wait for the rest while holding it, and at
/// 256 such bodies none completes), or, without a length, as the bytes arrive. Nothing is
/// held before the first byte, so a client that sends headers and stalls keeps no one out.
/// The room is returned with the body, to be held until it has been forwarded.
/// `declared`: the body's `Content-Length` ([`declared_length`]).
pub async fn read_body<B>(
    body: B,
    declared: Option<u64>,
    limits: &Limits,
    budget: &BodyBudget,
) -> Result<(Bytes, Room), Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    refuse_declared_excess(declared, limits)?;
    read_within(body, declared, limits.max_body_bytes, limits, budget).await
}

/// [`read_body`] with `limit` in place of `limits.max_body_bytes` (a gRPC message's bound).
pub(super) async fn read_within<B>(
    body: B,
    declared: Option<u64>,
    limit: u64,
    limits: &Limits,
    budget: &BodyBudget,
) -> Result<(Bytes, Room), Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // A body that is already over (most GETs) needs neither a read nor its timer.
    if body.is_end_stream() {
        return Ok((Bytes::new(), Room::default()));
    }
    let mut room = Room::default();
    let collect = collect(body, limit, budget, &mut room, declared.unwrap_or(0));
    match tokio::time::timeout(limits.body_read_timeout, collect).await {
        Ok(Ok(bytes)) => Ok((bytes, room)),
        Ok(Err(rejection)) => Err(rejection),
        Err(_elapsed) => Err(Rejection::BodyTimeout),
    }
}

/// The body's data frames, in one buffer: a body that came in one frame is kept as it is
/// (no copy); others are appended into one buffer that grows with what arrived (never
/// sized from a `Content-Length` the room does not yet cover).
async fn collect<B>(
    body: B,
    limit: u64,
    budget: &BodyBudget,
    room: &mut Room,
    declared: u64,
) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    let mut read = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            tracing::debug!(error = %error.into(), "client body unreadable");
            Rejection::BodyUnreadable
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: nothing to forward or check
        };
        read += data.len() as u64;
        if read > limit {
            return Err(Rejection::BodyTooLarge { limit });
        }
        budget.reserve(read.max(declared), room).await?;
        match first.take() {
            None if buffer.is_empty() => first = Some(data),
            held => {
                buffer.extend_from_slice(&held.unwrap_or_default());
                buffer.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buffer.freeze()))
}

/// A body whose `Content-Length` is past `limits.max_body_bytes`, refused before anything
/// of it is read (or sent on).
pub(super) fn refuse_declared_excess(
    declared: Option<u64>,
    limits: &Limits,
) -> Result<(), Rejection> {
    let limit = limits.max_body_bytes;
    match declared.is_some_and(|length| length > limit) {
        true => Err(Rejection::BodyTooLarge { limit }),
        false => Ok(()),
    }
}

/// The body's `Content-Length`, read once for stage 6.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
