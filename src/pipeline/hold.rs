//! A JSON answer to an LLM request with a limit, read whole before anything of it is
//! relayed (the model sends it at once when it is done, so this costs no latency): one
//! that carries more tokens than the bound moat wrote into the request — a server that
//! ignores `max_tokens` — is withheld with a 502, never relayed.

use std::sync::Arc;

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
    let bytes = match Limited::new(body, llm::MAX_JSON_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        // Too big to hold is past any bound a request can be admitted with here.
        Err(error) if error.is::<LengthLimitError>() => {
            let admitted = grant.admitted();
            grant.withhold(&meter, &metrics);
            return Err((Rejection::UpstreamExceededMaxTokens { admitted }, None));
        }
        // Nothing was relayed: the reservation goes back whole when `grant` drops.
        Err(error) if error.is::<IdleTimeout>() => return Err((Rejection::UpstreamTimeout, None)),
        Err(error) => {
            tracing::warn!(error = %error, "upstream answer broke off");
            return Err((Rejection::UpstreamUnavailable, None));
        }
    };
    let _ = meter.feed(bytes.clone());
    meter.end();
    if meter.over_limit() {
        let admitted = grant.admitted();
        let tokens = Tokens {
            prompt: meter.prompt,
            completion: meter.completion,
            cut: false,
        };
        grant.withhold(&meter, &metrics);
        return Err((
            Rejection::UpstreamExceededMaxTokens { admitted },
            Some(tokens),
        ));
    }
    // Metered again as it is relayed: the record and the settlement read the same meter.
    let meter = grant.meter(head.status, &head.headers);
    let body = MeteredBody::new(Full::new(bytes), grant, meter, metrics);
    Ok(Response::from_parts(head, Answer::held(body)))
}
