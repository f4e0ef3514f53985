//! Reading the request body, only after stages 1–5 passed: refused from `Content-Length`
//! before reading when it declares too much, cut off at the limit when it doesn't say,
//! and bounded in time.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use crate::config::Limits;
use crate::reject::Rejection;

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
