//! Stage 7, forward: a pooled HTTP/1.1 client to the model, header hygiene in both
//! directions, and the upstream's response streamed back frame by frame. Upstream faults
//! become 502 (refused, reset) or 504 (timeout) here; nothing else chooses those statuses.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thread_local::ThreadLocal;

use crate::admit::Admitted;
use crate::auth::KeyLocation;
use crate::body::ResponseBody;
use crate::config::UpstreamConfig;
use crate::reject::{Rejection, Stage};
mod headers;

use self::headers::drop_unframed_length;
pub use self::headers::{
    X_REQUEST_ID, client_request_id, new_request_id, prepare_request_headers, strip_hop_by_hop,
    without_query_credentials,
};

/// What moat knows about the request that the upstream should be told.
pub struct ForwardContext<'a> {
    pub client_ip: IpAddr,
    pub proto: &'static str,
    /// The verified client certificate's subject, when mTLS is on.
    pub client_cert: Option<&'a HeaderValue>,
    pub request_id: &'a str,
    pub forward_credentials: bool,
    /// Where API keys travel besides `Authorization`.
    pub credentials: &'a [KeyLocation],
}

/// The upstream's response, with how long its head took.
pub struct Forwarded {
    pub response: Response<ResponseBody>,
    pub upstream_time: Duration,
}

type Pool = Client<HttpConnector, Full<Bytes>>;

/// The model server: its address, timeouts and a connection pool per proxy thread.
pub struct Upstream {
    /// One pool per thread: a pooled connection's task runs on the runtime that opened it,
    /// so sharing pools across the thread-per-core runtimes would wake another core for
    /// every request, and take a lock they all contend for.
    pools: ThreadLocal<Pool>,
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Path prefix of `upstream.url` without a trailing '/', often empty.
    prefix: String,
    host: HeaderValue,
    response_timeout: Duration,
    idle_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, String> {
        let url = &config.url;
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream `{url}` has no host"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("upstream `{url}` has an invalid host"))?;
        Ok(Self {
            pools: ThreadLocal::new(),
            connect_timeout: config.connect_timeout,
            pool_idle_timeout: config.pool_idle_timeout,
            scheme: url.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
            host,
            response_timeout: config.response_timeout,
            idle_timeout: config.idle_timeout,
        })
    }

    fn pool(&self) -> &Pool {
        self.pools.get_or(|| {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(self.connect_timeout));
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(self.pool_idle_timeout)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                // hyper would silently resend a request whose pooled connection closed
                // under it; moat decides itself, and only for idempotent methods.
                .retry_canceled_requests(false)
                .build(connector)
        })
    }

    /// Stage 7: sends what [`admit`](crate::admit::admit) let through — only an
    /// [`Admitted`] request can be forwarded — and returns the streaming response.
    pub async fn forward(
        &self,
        admitted: Admitted,
        context: &ForwardContext<'_>,
    ) -> Result<Forwarded, Rejection> {
        let (mut parts, body, principal) = admitted.into_parts();
        prepare_request_headers(&mut parts.headers, context, principal.as_ref(), &self.host);
        let uri = self.upstream_uri(&parts.uri)?;
        // Only an idempotent request keeps a copy of itself for the one retry it may get;
        // a POST moves its headers and body straight into the upstream request.
        let mut retry = is_idempotent(&parts.method).then(|| (parts.clone(), body.clone()));
        let head_request = parts.method == Method::HEAD;
        let started = Instant::now();
        let mut attempt = build(parts, uri.clone(), body);
        let pool = self.pool();
        let response = loop {
            let sent = tokio::time::timeout(self.response_timeout, pool.request(attempt));
            match sent.await {
                Ok(Ok(response)) => break response,
                Ok(Err(error)) if retry.is_some() && connection_went_stale(&error) => {
                    // A pooled connection the model had already closed: safe to resend only
                    // because the method is idempotent (RFC 9110 §9.2.2).
                    tracing::debug!(error = %error, "retrying an idempotent request once");
                    let Some((parts, body)) = retry.take() else {
                        return Err(classify(&error));
                    };
                    attempt = build(parts, uri.clone(), body);
                }
                Ok(Err(error)) => return Err(classify(&error)),
                Err(_elapsed) => return Err(Rejection::UpstreamTimeout),
            }
        };
        let upstream_time = started.elapsed();
        let (mut head, incoming) = response.into_parts();
        if !head_request {
            drop_unframed_length(
                &mut head.headers,
                head.status,
                http_body::Body::size_hint(&incoming).exact(),
            );
        }
        strip_hop_by_hop(&mut head.headers);
        Ok(Forwarded {
            response: Response::from_parts(
                head,
                ResponseBody::upstream(incoming, self.idle_timeout),
            ),
            upstream_time,
        })
    }

    /// The upstream URL for the client's path and query, forwarded byte for byte.
    fn upstream_uri(&self, client_uri: &Uri) -> Result<Uri, Rejection> {
        let original = client_uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let path_and_query = if self.prefix.is_empty() {
            original
        } else {
            PathAndQuery::try_from(format!("{}{}", self.prefix, original.as_str()))
                .map_err(|_| Rejection::Internal(Stage::Forward))?
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| Rejection::Internal(Stage::Forward))
    }
}

fn build(mut parts: Parts, uri: Uri, body: Bytes) -> Request<Full<Bytes>> {
    parts.uri = uri;
    // The upstream connection is HTTP/1.1 whatever the client spoke.
    parts.version = Version::HTTP_11;
    // Extensions carry hyper's per-connection state of the client side; none of it applies.
    parts.extensions.clear();
    Request::from_parts(parts, Full::new(body))
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request failed because the pooled connection closed before a response began.
fn connection_went_stale(error: &hyper_util::client::legacy::Error) -> bool {
    !error.is_connect()
        && error
            .source()
            .and_then(|source| source.downcast_ref::<hyper::Error>())
            .is_some_and(|e| e.is_canceled() || e.is_incomplete_message())
}

fn classify(error: &hyper_util::client::legacy::Error) -> Rejection {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return Rejection::UpstreamTimeout;
        }
        source = cause.source();
    }
    tracing::warn!(error = %error, connect = error.is_connect(), "upstream request failed");
    Rejection::UpstreamUnavailable
}

#[cfg(test)]
mod tests;
