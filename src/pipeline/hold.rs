//! A JSON answer to an LLM request with a limit, read whole before anything of it is
//! relayed (the model sends it at once when it is done, so this costs no latency): one
//! that carries more tokens than the bound moat wrote into the request — a server that
//! ignores `max_tokens` — is withheld with a 502, never relayed.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use super::Answer;
use crate::access::Tokens;
use crate::forward::{IdleTimeout, UpstreamBody};
use crate::llm::{self, Grant, Meter, MeteredBody};
use crate::metrics::Metrics;
use crate::reject::Rejection;

/// The answer, read whole and metered, or the refusal of one past its bound (with what its
/// meter counted).
pub async fn hold(
    response: Response<UpstreamBody>,
    grant: Grant,
    mut meter: Meter,
    metrics: Arc<Metrics>,
) -> Result<Response<Answer>, (Rejection, Option<Tokens>)> {
    let (head, body) = response.into_parts();
    let bytes = match read_whole(body, llm::MAX_JSON_BYTES).await {
        Ok(bytes) => bytes,
        Err(Some(rejection)) => return Err((rejection, None)),
        // Too big to hold is past any bound a request can be admitted with here.
        Err(None) => return Err((withhold(grant, &meter, &metrics), None)),
    };
    let _ = meter.feed(bytes.clone());
    meter.end();
    if meter.over_limit() {
        let tokens = Tokens {
            prompt: meter.prompt,
            completion: meter.completion,
            cut: false,
            invalid_event: None,
        };
        return Err((withhold(grant, &meter, &metrics), Some(tokens)));
    }
    // Metered again as it is relayed: the record and the settlement read the same meter.
    let meter = grant.meter(head.status, &head.headers);
    let body = MeteredBody::new(Full::new(bytes), grant, meter, metrics);
    Ok(Response::from_parts(head, Answer::held(body)))
}

/// The whole body, or why there is none: `Some` the refusal of a body that failed (nothing
/// was relayed: an LLM reservation goes back whole when the grant drops), `None` one past
/// `limit` bytes.
pub(super) async fn read_whole(
    body: UpstreamBody,
    limit: usize,
) -> Result<Bytes, Option<Rejection>> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(None),
        Err(error) if error.is::<IdleTimeout>() => Err(Some(Rejection::UpstreamTimeout)),
        Err(error) => {
            tracing::warn!(error = %error, "upstream answer broke off");
            Err(Some(Rejection::UpstreamUnavailable))
        }
    }
}

/// An answer past its bound is withheld: the key pays its reservation, the client gets 502.
fn withhold(grant: Grant, meter: &Meter, metrics: &Metrics) -> Rejection {
    let admitted = grant.admitted();
    grant.withhold(meter, metrics);
    Rejection::UpstreamExceededMaxTokens { admitted }
}
