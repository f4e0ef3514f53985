//! Stage 7 for gRPC calls: the model's gRPC port over h2c, one multiplexed HTTP/2
//! connection per proxy thread (every call a stream on it, never a connection per call),
//! both bodies streamed frame by frame with HTTP/2 flow control, and trailers relayed as
//! the model wrote them. The client's `grpc-timeout` bounds the wait for the model's
//! response head (with `upstream.response_timeout`) and goes on as the budget left.

use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use thread_local::ThreadLocal;

use super::pool::{drive, open};
use super::{
    ForwardContext, Forwarded, UpstreamBody, UpstreamError, prepare_request_headers,
    strip_hop_by_hop,
};
use crate::admit::{Admitted, Bounded, RequestBody};
use crate::auth::Principal;
use crate::config::{GrpcConfig, UpstreamConfig};
use crate::grpc::timeout::{self, GRPC_TIMEOUT};
use crate::reject::Rejection;

/// hyper's HTTP/2 client wants a body it can move: the streamed one (which holds a timer)
/// goes in a box, one allocation per call.
type GrpcBody = Either<Full<Bytes>, Pin<Box<Bounded<Incoming>>>>;

type Sender = SendRequest<GrpcBody>;

/// The model's gRPC port.
pub struct GrpcUpstream {
    /// This thread's connection: its task runs on the runtime that opened it.
    connections: ThreadLocal<Mutex<Option<Sender>>>,
    authority: Authority,
    /// `authority` as a header value, for the identity hygiene `prepare_request_headers`
    /// shares with REST (HTTP/2 then sends it as `:authority`).
    host_header: HeaderValue,
    host: String,
    port: u16,
    connect_timeout: Duration,
    response_timeout: Duration,
    idle_timeout: Duration,
}

impl GrpcUpstream {
    pub fn new(grpc: &GrpcConfig, upstream: &UpstreamConfig) -> Result<Self, String> {
        let uri = grpc.upstream_uri(upstream)?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("grpc upstream `{uri}` has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("grpc upstream `{uri}` has an invalid host"))?;
        Ok(GrpcUpstream {
            host_header,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority,
            connections: ThreadLocal::new(),
            connect_timeout: upstream.connect_timeout,
            response_timeout: upstream.response_timeout,
            idle_timeout: upstream.idle_timeout,
        })
    }

    /// Sends an admitted gRPC call and returns the model's streaming response.
    pub async fn forward(
        &self,
        admitted: Admitted<Incoming>,
        context: &ForwardContext<'_>,
    ) -> Result<Forwarded, Rejection> {
        let (parts, body, principal) = admitted.into_parts();
        let (parts, wait) = self.upstream_parts(parts, principal.as_ref(), context)?;
        let (body, cut) = match body {
            RequestBody::Whole(bytes) => (Either::Left(Full::new(bytes)), None),
            RequestBody::Streamed(bounded) => {
                let cut = bounded.cut_slot();
                (Either::Right(Box::pin(bounded)), cut)
            }
        };
        let started = Instant::now();
        let exchange = self.exchange(Request::from_parts(parts, body));
        let response = match tokio::time::timeout(wait, exchange).await {
            Ok(Ok(response)) => response,
            // A request stream cut before the model answered: the cut's own refusal.
            Ok(Err(error)) => match cut.as_ref().and_then(|cut| cut.get()) {
                Some(cut) => return Err(cut.rejection()),
                None => return Err(error.into_rejection()),
            },
            Err(_elapsed) => return Err(Rejection::UpstreamTimeout),
        };
        let upstream_time = started.elapsed();
        let (mut head, incoming) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        let body = UpstreamBody::new(incoming, self.idle_timeout, None).ending_with(cut);
        Ok(Forwarded {
            response: Response::from_parts(head, body),
            upstream_time,
        })
    }

    /// The call as the model gets it — moat's header hygiene, `te: trailers`, HTTP/2 to
    /// the model's address, what is left of its deadline — and how long to wait for the
    /// model's response head.
    fn upstream_parts(
        &self,
        mut parts: Parts,
        principal: Option<&Principal>,
        context: &ForwardContext<'_>,
    ) -> Result<(Parts, Duration), Rejection> {
        let deadline = parts.headers.get(GRPC_TIMEOUT).and_then(timeout::parse);
        prepare_request_headers(&mut parts.headers, context, principal, &self.host_header);
        // HTTP/2 names the host in `:authority`; gRPC requires `te: trailers`, which the
        // hop-by-hop hygiene removed.
        parts.headers.remove(header::HOST);
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
        let wait = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_sub(context.received.elapsed());
                parts.headers.insert(GRPC_TIMEOUT, timeout::format(left));
                left.min(self.response_timeout)
            }
            None => self.response_timeout,
        };
        parts.uri = self.uri(parts.uri.path_and_query())?;
        parts.version = Version::HTTP_2;
        parts.extensions.clear();
        Ok((parts, wait))
    }

    fn uri(&self, path: Option<&PathAndQuery>) -> Result<Uri, Rejection> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = path.cloned();
        Uri::from_parts(parts).map_err(|_| Rejection::Internal(crate::reject::Stage::Forward))
    }

    async fn exchange(
        &self,
        request: Request<GrpcBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = self.sender().await.map_err(UpstreamError::Connect)?;
        sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Send)
    }

    /// This thread's connection while it is open, else a new one. Two calls that find none
    /// at once may each open one; the last kept serves the calls after, the other closes
    /// when its call ends.
    async fn sender(&self) -> io::Result<Sender> {
        let slot = self.connections.get_or(Mutex::default);
        let open_sender = slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|sender| !sender.is_closed())
            .cloned();
        if let Some(sender) = open_sender {
            return Ok(sender);
        }
        let sender = self.connect().await?;
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> io::Result<Sender> {
        let stream = open(&self.host, self.port, self.connect_timeout).await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        // Pings find a connection the model dropped without a GOAWAY before a call waits on it.
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let (sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        drive(connection);
        Ok(sender)
    }
}
