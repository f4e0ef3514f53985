//! The stages of design §1, as refusals and the trail name them, and the stage of each
//! refusal (a row of the one table, beside its status and code in `mod.rs`).

use super::Rejection;

/// The pipeline stage that refused a request; the `stage` label of
/// `moat_rejections_total` and the `stage` field of the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Frame,
    Route,
    Authenticate,
    Authorize,
    Limit,
    Validate,
    Forward,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Frame => "frame",
            Stage::Route => "route",
            Stage::Authenticate => "authenticate",
            Stage::Authorize => "authorize",
            Stage::Limit => "limit",
            Stage::Validate => "validate",
            Stage::Forward => "forward",
        }
    }
}

impl Rejection {
    /// The pipeline stage each refusal belongs to.
    pub fn stage(&self) -> Stage {
        use Rejection as R;
        match self {
            R::InvalidPath(_) | R::UriTooLong { .. } | R::HeadersTooLarge { .. } => Stage::Frame,
            R::InvalidHost(_) => Stage::Frame,
            R::RouteNotFound | R::MethodNotAllowed { .. } => Stage::Route,
            R::CredentialsMissing
            | R::InvalidToken
            | R::TokenExpired
            | R::InvalidApiKey
            | R::InvalidBearerKey
            | R::Overloaded
            | R::KeyStoreStale => Stage::Authenticate,
            R::OperationNotAllowed | R::InsufficientScope { .. } | R::ModelNotAllowed => {
                Stage::Authorize
            }
            R::RateLimited { .. }
            | R::QuotaExceeded(_)
            | R::LimitStoreUnavailable
            | R::TokenBudgetExceeded { .. }
            | R::TooManyStreams { .. } => Stage::Limit,
            R::MaxTokensExceeded { .. }
            | R::InvalidLlmRequest(_)
            | R::InvalidParameters(_)
            | R::UnsupportedMediaType { .. }
            | R::BodyRequired
            | R::UnexpectedBody
            | R::InvalidJson(_)
            | R::BodySchema(_)
            | R::BodyTooLarge { .. }
            | R::BodyTimeout
            | R::BodyUnreadable
            | R::InvalidGrpcMessage(_)
            | R::GrpcMessageSchema { .. }
            | R::GrpcMessageTooLarge { .. }
            | R::GrpcEncodingUnsupported
            | R::BodiesOverloaded => Stage::Validate,
            R::UpstreamUnavailable
            | R::UpstreamTimeout
            | R::UpstreamExceededMaxTokens { .. }
            | R::UpstreamResponseInvalid(_)
            | R::UpstreamError { .. } => Stage::Forward,
            R::Internal(stage) => *stage,
        }
    }
}
