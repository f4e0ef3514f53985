//! Stage 7, forward: a pooled HTTP/1.1 client to the model, header hygiene in both
//! directions, and the upstream's response streamed back frame by frame. Upstream faults
//! become 502 (refused, reset) or 504 (timeout) here; nothing else chooses those statuses.

use std::error::Error as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::admit::{Admitted, Bounded, RequestBody, refusal_in};
use crate::config::{GrpcConfig, UpstreamConfig};
use crate::grpc::is_grpc;
use crate::ids::RequestId;
use crate::reject::{Rejection, Stage};
mod body;
mod grpc;
mod headers;
mod pool;

pub use self::body::{IdleTimeout, UpstreamBody};
use self::grpc::GrpcUpstream;
use self::headers::drop_unframed_length;
pub use self::headers::{forwarded_for, prepare_request_headers, strip_hop_by_hop};
pub use self::pool::Lease;
use self::pool::Pool;

/// The body the model gets: read whole by moat, or the client's relayed as it arrives.
pub type OutboundBody = Either<Full<Bytes>, Bounded<Incoming>>;

/// What moat knows about the request that the upstream should be told.
pub struct ForwardContext<'a> {
    /// The client's address, as `X-Forwarded-For` carries it (see [`forwarded_for`]).
    pub forwarded_for: &'a HeaderValue,
    pub proto: &'static str,
    /// The verified client certificate's subject, when mTLS is on.
    pub client_cert: Option<&'a HeaderValue>,
    pub request_id: &'a RequestId,
    /// When the request head arrived: a gRPC call's deadline counts from here.
    pub received: Instant,
}

/// The upstream's response, with how long its head took.
pub struct Forwarded {
    pub response: Response<UpstreamBody>,
    pub upstream_time: Duration,
}

/// The model server: its address, timeouts and idle connections per proxy thread.
pub struct Upstream {
    pool: Pool,
    /// Path prefix of `upstream.url` without a trailing '/', often empty.
    prefix: String,
    host: HeaderValue,
    response_timeout: Duration,
    idle_timeout: Duration,
    /// The model's gRPC port, when `grpc` is configured.
    grpc: Option<GrpcUpstream>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig, grpc: Option<&GrpcConfig>) -> Result<Self, String> {
        let url = &config.url;
        let authority = url
            .authority()
            .ok_or_else(|| format!("upstream `{url}` has no host"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("upstream `{url}` has an invalid host"))?;
        Ok(Self {
            pool: Pool::new(
                authority.host(),
                authority.port_u16().unwrap_or(80),
                config.connect_timeout,
                config.pool_idle_timeout,
            ),
            prefix: url.path().trim_end_matches('/').to_owned(),
            host,
            response_timeout: config.response_timeout,
            idle_timeout: config.idle_timeout,
            grpc: grpc
                .map(|grpc| GrpcUpstream::new(grpc, config))
                .transpose()?,
        })
    }

    /// Stage 7: sends what [`admit`](crate::admit::admit) let through — only an
    /// [`Admitted`] request can be forwarded — and returns the streaming response.
    pub async fn forward(
        &self,
        admitted: Admitted<Incoming>,
        context: &ForwardContext<'_>,
    ) -> Result<Forwarded, Rejection> {
        // Routing sends a gRPC call on only when gRPC services are configured.
        if let Some(grpc) = self.grpc.as_ref().filter(|_| is_grpc(admitted.headers())) {
            return grpc.forward(admitted, context).await;
        }
        let (parts, body, principal) = admitted.into_parts();
        // A streamed body may still be going up when the model has answered (a model that
        // answers without reading it all); its connection then is not ready for another
        // request until the upload ends, so it goes back to no one: it closes when done.
        let reusable = matches!(body, RequestBody::Whole(_));
        let parts = self.upstream_parts(parts, principal.as_ref(), context)?;
        let head_request = parts.method == Method::HEAD;
        let started = Instant::now();
        // One deadline for the whole exchange up to the response head: connecting,
        // sending, the model's work, and the one retry.
        let exchange = tokio::time::timeout(self.response_timeout, self.exchange(parts, body));
        let (response, lease) = match exchange.await {
            Ok(Ok(exchanged)) => exchanged,
            Ok(Err(error)) => return Err(error.into_rejection()),
            Err(_elapsed) => return Err(Rejection::UpstreamTimeout),
        };
        let upstream_time = started.elapsed();
        let (mut head, incoming) = response.into_parts();
        relayed_head(&mut head, &incoming, head_request);
        // A response with nothing more to read frees its connection now; a switch of
        // protocols never gives it back.
        let lease = if head.status == StatusCode::SWITCHING_PROTOCOLS || !reusable {
            None
        } else if head_request || http_body::Body::is_end_stream(&incoming) {
            lease.release();
            None
        } else {
            Some(lease)
        };
        let body = UpstreamBody::new(incoming, self.idle_timeout, lease);
        let response = Response::from_parts(head, body);
        Ok(Forwarded {
            response,
            upstream_time,
        })
    }

    /// The request as the model gets it: moat's headers (see `headers`), the upstream's
    /// path prefix, HTTP/1.1 whatever the client spoke.
    fn upstream_parts(
        &self,
        mut parts: Parts,
        principal: Option<&crate::auth::Principal>,
        context: &ForwardContext<'_>,
    ) -> Result<Parts, Rejection> {
        prepare_request_headers(&mut parts.headers, context, principal, &self.host);
        parts.uri = self.upstream_uri(&parts.uri)?;
        parts.version = Version::HTTP_11;
        // Extensions carry hyper's per-connection state of the client side; none of it applies.
        parts.extensions.clear();
        Ok(parts)
    }

    /// Sends the request on a pooled connection. Only an idempotent request read whole
    /// keeps a copy of itself, for the one resend it gets when the pooled connection turns
    /// out to have been closed by the model (RFC 9110 §9.2.2); a POST moves its headers and
    /// body straight into the upstream request, and a streamed body cannot be sent twice.
    async fn exchange(
        &self,
        parts: Parts,
        body: RequestBody<Incoming>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        let (mut retry, body) = match body {
            RequestBody::Whole(bytes) => {
                let retry = is_idempotent(&parts.method).then(|| (parts.clone(), bytes.clone()));
                (retry, Either::Left(Full::new(bytes)))
            }
            RequestBody::Streamed(bounded) => (None, Either::Right(bounded)),
        };
        let mut request = Request::from_parts(parts, body);
        loop {
            let mut lease = self.pool.lease().await.map_err(UpstreamError::Connect)?;
            match lease.sender.send_request(request).await {
                Ok(response) => return Ok((response, lease)),
                Err(error) if lease.reused && went_stale(&error) => {
                    let Some((parts, body)) = retry.take() else {
                        return Err(UpstreamError::Send(error));
                    };
                    tracing::debug!(error = %error, "retrying an idempotent request once");
                    request = Request::from_parts(parts, Either::Left(Full::new(body)));
                }
                Err(error) => return Err(UpstreamError::Send(error)),
            }
        }
    }

    /// The origin-form target for the client's path and query, forwarded byte for byte
    /// (the upstream's name travels in `Host`).
    fn upstream_uri(&self, client_uri: &Uri) -> Result<Uri, Rejection> {
        let original = client_uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if self.prefix.is_empty() {
            return Ok(Uri::from(original));
        }
        Uri::try_from(format!("{}{}", self.prefix, original.as_str()))
            .map_err(|_| Rejection::Internal(Stage::Forward))
    }
}

/// The model's response head as moat relays it: framing it can trust, no hop-by-hop
/// header, and HTTP/1.1 whatever the model's server spoke (an HTTP/1.0 status line is not
/// relayed; HTTP/2 clients get HTTP/2).
fn relayed_head(head: &mut http::response::Parts, incoming: &Incoming, head_request: bool) {
    if !head_request {
        let exact = http_body::Body::size_hint(incoming).exact();
        drop_unframed_length(&mut head.headers, head.status, exact);
    }
    strip_hop_by_hop(&mut head.headers);
    head.version = Version::HTTP_11;
}

/// Why the model gave no response head.
pub(super) enum UpstreamError {
    Connect(std::io::Error),
    Send(hyper::Error),
}

impl UpstreamError {
    pub(super) fn into_rejection(self) -> Rejection {
        // A streamed request body that broke a limit on the way: the client's fault, told
        // as the limit's own refusal.
        if let UpstreamError::Send(error) = &self {
            if let Some(rejection) = refusal_in(error) {
                tracing::debug!(error = %error, "streamed request body refused in flight");
                return rejection;
            }
        }
        let timed_out = match &self {
            UpstreamError::Connect(io) => io.kind() == std::io::ErrorKind::TimedOut,
            UpstreamError::Send(error) => error.is_timeout(),
        };
        if timed_out {
            return Rejection::UpstreamTimeout;
        }
        match &self {
            UpstreamError::Connect(error) => {
                tracing::warn!(error = %error, connect = true, "upstream request failed");
            }
            UpstreamError::Send(error) => {
                let cause = error.source().map(ToString::to_string);
                tracing::warn!(error = %error, cause, connect = false, "upstream request failed");
            }
        }
        Rejection::UpstreamUnavailable
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request failed because the pooled connection closed before a response began.
fn went_stale(error: &hyper::Error) -> bool {
    error.is_canceled() || error.is_incomplete_message()
}

#[cfg(test)]
mod tests;
