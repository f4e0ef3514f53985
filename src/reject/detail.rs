//! The public detail of each refusal: what the client is told, naming the rule or the
//! limit and never echoing a credential or anything else it sent.

use super::{FieldError, Rejection};

impl Rejection {
    pub fn detail(&self) -> String {
        use Rejection as R;
        match self {
            R::InvalidPath(problem) => problem.detail().to_owned(),
            R::InvalidHost(problem) => problem.detail().to_owned(),
            R::UriTooLong { limit } => format!("the request target is longer than {limit} bytes"),
            R::HeadersTooLarge { limit } => {
                format!("the request headers are larger than {limit} bytes")
            }
            R::InsufficientScope { scope, .. } => {
                format!("the credential lacks a required scope: {scope}")
            }
            R::RateLimited { retry_after, .. } => {
                format!("rate limit exceeded; retry in {retry_after}s")
            }
            R::QuotaExceeded(usage) => format!(
                "the API key's quota of {} requests is spent; it resets in {}s",
                usage.limit, usage.reset
            ),
            R::MaxTokensExceeded { cap } => {
                format!("this API key may ask for at most {cap} max_tokens")
            }
            R::TokenBudgetExceeded {
                tokens,
                per,
                retry_after,
            } => format!(
                "the request's tokens do not fit in the API key's token budget of {tokens} per {}; \
                 it resets in {retry_after}s",
                per.as_str()
            ),
            R::TooManyStreams { limit } => {
                format!("this API key has {limit} streams open already; retry when one ends")
            }
            R::InvalidLlmRequest(reason) | R::InvalidGrpcMessage(reason) => (*reason).to_owned(),
            R::InvalidParameters(_)
            | R::BodySchema(_)
            | R::GrpcMessageSchema { .. }
            | R::UnsupportedMediaType { .. } => self.field_detail(),
            R::InvalidJson(reason) => format!("the body is not acceptable JSON: {reason}"),
            R::BodyTooLarge { limit } => format!("the request body is larger than {limit} bytes"),
            R::GrpcMessageTooLarge { limit } => format!("a gRPC message is over {limit} bytes"),
            R::UpstreamResponseInvalid(detail) => detail.clone(),
            R::UpstreamExceededMaxTokens { admitted } => format!(
                "the model answered with more than the {admitted} completion tokens moat \
                 admitted and wrote into the request as max_tokens; the answer was withheld"
            ),
            fixed => fixed_detail(fixed).to_owned(),
        }
    }
}

impl Rejection {
    /// The detail of a refusal of fields: what failed, then the first error (or, for the
    /// content type, what is accepted).
    fn field_detail(&self) -> String {
        match self {
            Rejection::UnsupportedMediaType { accepted } => {
                format!("the Content-Type must be one of: {accepted}")
            }
            Rejection::InvalidParameters(errors) => {
                first_of("request parameters are invalid", errors)
            }
            Rejection::BodySchema(errors) => {
                first_of("the request body does not match its schema", errors)
            }
            Rejection::GrpcMessageSchema { message, errors } => first_of(
                &format!("message {message} does not match its type"),
                errors,
            ),
            _ => String::new(),
        }
    }
}

/// `summary`, then the first field error (its pointer and message, which never hold the
/// value sent), so a client library that prints one sentence prints the reason; the
/// problem's `errors` lists them all.
fn first_of(summary: &str, errors: &[FieldError]) -> String {
    let Some(first) = errors.first() else {
        return summary.to_owned();
    };
    let place = match first.pointer.as_str() {
        "" => first.location,
        pointer => pointer,
    };
    let more = match errors.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    format!("{summary}: {place}: {}{more}", first.message)
}

/// The detail of a refusal that says no more than its kind. The refusals whose detail
/// carries a value are written by [`Rejection::detail`]; listed here, not caught by `_`,
/// so a new variant must decide which it is.
fn fixed_detail(rejection: &Rejection) -> &'static str {
    use Rejection as R;
    match rejection {
        R::RouteNotFound => "no operation is declared at this path",
        R::MethodNotAllowed { .. } => "the operation at this path does not accept this method",
        R::CredentialsMissing => "this operation requires credentials",
        R::InvalidToken => "the bearer token is not valid",
        R::TokenExpired => "the bearer token has expired",
        R::InvalidApiKey | R::InvalidBearerKey => "the API key is not valid",
        R::Overloaded => "too many credential checks in progress; retry shortly",
        R::BodiesOverloaded => {
            "too many request bodies are being read at once (limits.max_buffered_body_bytes); \
             retry shortly"
        }
        R::OperationNotAllowed => "this API key may not call this operation",
        R::LimitStoreUnavailable => "rate limits cannot be checked right now; retry shortly",
        R::KeyStoreStale => "API keys cannot be checked right now; retry shortly",
        R::ModelNotAllowed => "this API key may not use the model the request names",
        R::BodyRequired => "this operation requires a request body",
        R::UnexpectedBody => "this operation takes no request body",
        R::BodyTimeout => "the request body was not received in time",
        R::BodyUnreadable => "the request body could not be read",
        R::UpstreamUnavailable => "the model server is unavailable",
        R::GrpcEncodingUnsupported => "moat reads only identity, gzip or deflate grpc-encoding",
        R::UpstreamTimeout => "the model server did not answer in time",
        R::UpstreamError { .. } => "the model failed; its answer is logged with the request id",
        R::Internal(_) => "internal error",
        R::InvalidPath(_)
        | R::InvalidHost(_)
        | R::UriTooLong { .. }
        | R::HeadersTooLarge { .. }
        | R::InsufficientScope { .. }
        | R::RateLimited { .. }
        | R::QuotaExceeded(_)
        | R::MaxTokensExceeded { .. }
        | R::TokenBudgetExceeded { .. }
        | R::TooManyStreams { .. }
        | R::InvalidLlmRequest(_)
        | R::InvalidParameters(_)
        | R::BodySchema(_)
        | R::UnsupportedMediaType { .. }
        | R::InvalidJson(_)
        | R::BodyTooLarge { .. }
        | R::InvalidGrpcMessage(_)
        | R::GrpcMessageTooLarge { .. }
        | R::GrpcMessageSchema { .. }
        | R::UpstreamExceededMaxTokens { .. }
        | R::UpstreamResponseInvalid(_) => "the request was refused",
    }
}
