//! Stage 7, forward: a pooled HTTP/1.1 client to the model, header hygiene in both
//! directions, and the upstream's response streamed back frame by frame. Upstream faults
//! become 502 (refused, reset) or 504 (timeout) here; nothing else chooses those statuses.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::admit::Admitted;
use crate::auth::{KeyLocation, Principal};
use crate::body::ResponseBody;
use crate::config::UpstreamConfig;
use crate::reject::{Rejection, Stage};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_MOAT_SUBJECT: HeaderName = HeaderName::from_static("x-moat-subject");
const X_MOAT_KEY_ID: HeaderName = HeaderName::from_static("x-moat-key-id");
const X_MOAT_SCOPES: HeaderName = HeaderName::from_static("x-moat-scopes");
const X_MOAT_CLIENT_CERT_SUBJECT: HeaderName =
    HeaderName::from_static("x-moat-client-cert-subject");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the de-facto `keep-alive` and
/// `proxy-connection`): they describe one connection and never cross a proxy. `Upgrade`
/// among them: moat relays no protocol switch (no 101), so it is dropped both ways.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

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

/// The model server: its address, timeouts and a connection pool.
pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
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
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // hyper would silently resend a request whose pooled connection closed under
            // it; moat decides itself, and only for idempotent methods.
            .retry_canceled_requests(false)
            .build(connector);
        let url = &config.url;
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream `{url}` has no host"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("upstream `{url}` has an invalid host"))?;
        Ok(Self {
            client,
            scheme: url.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
            host,
            response_timeout: config.response_timeout,
            idle_timeout: config.idle_timeout,
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
        let response = loop {
            let sent = tokio::time::timeout(self.response_timeout, self.client.request(attempt));
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

/// Header hygiene for the request moat sends upstream (design §6). Order matters: every
/// header the client may not pass on is removed *before* moat adds its own, so a client
/// naming `X-Moat-Key-Id` in `Connection` can neither smuggle nor strip an identity header.
pub fn prepare_request_headers(
    headers: &mut HeaderMap,
    context: &ForwardContext<'_>,
    principal: Option<&Principal>,
    upstream_host: &HeaderValue,
) {
    let original_host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_client_controlled_identity(name))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    // moat sends its own framing and has already answered any `Expect`.
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    headers.remove(header::UPGRADE);
    if !context.forward_credentials {
        headers.remove(header::AUTHORIZATION);
        for location in context.credentials {
            match location {
                KeyLocation::Header(name) => {
                    headers.remove(name);
                }
                KeyLocation::Cookie(name) => strip_cookie(headers, name),
                KeyLocation::Query(_) => {}
            }
        }
    }
    headers.insert(header::HOST, upstream_host.clone());
    if let Ok(ip) = HeaderValue::from_str(&context.client_ip.to_string()) {
        headers.insert(X_FORWARDED_FOR, ip);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(context.proto));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Ok(id) = HeaderValue::from_str(context.request_id) {
        headers.insert(X_REQUEST_ID, id);
    }
    if let Some(subject) = context.client_cert {
        headers.insert(X_MOAT_CLIENT_CERT_SUBJECT, subject.clone());
    }
    if let Some(principal) = principal {
        let identity = [
            (X_MOAT_SUBJECT, principal.subject.as_deref()),
            (X_MOAT_KEY_ID, principal.key_id.as_deref()),
        ];
        for (name, value) in identity {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, value);
            }
        }
        if let Ok(scopes) = HeaderValue::from_str(&principal.scopes.join(" ")) {
            headers.insert(X_MOAT_SCOPES, scopes);
        }
    }
}

/// Headers only moat may set: identity (`X-Moat-*`), client address and protocol
/// (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`), and the host moat replaces.
fn is_client_controlled_identity(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == "host"
        || name == "forwarded"
        || name == "x-real-ip"
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-moat-")
}

/// Removes the cookie `name` from every `Cookie` header, keeping the others as sent.
fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .filter(|pair| pair.trim().split('=').next().map(str::trim) != Some(name))
                .collect::<Vec<_>>()
                .join(";")
        })
        .filter(|value| !value.trim().is_empty())
        .collect();
    headers.remove(header::COOKIE);
    for value in kept {
        if let Ok(value) = HeaderValue::from_str(value.trim_start()) {
            headers.append(header::COOKIE, value);
        }
    }
}

/// The URI without query parameters that carry API keys (every other byte of the query
/// stays), or `None` when there is nothing to remove.
pub fn without_query_credentials(uri: &Uri, credentials: &[KeyLocation]) -> Option<Uri> {
    let names: Vec<&str> = credentials
        .iter()
        .filter_map(|location| match location {
            KeyLocation::Query(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let query = uri.query().filter(|_| !names.is_empty())?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let raw_name = pair.split('=').next().unwrap_or_default();
            let decoded: String = form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .map(|(name, _)| name.into_owned())
                .unwrap_or_default();
            !names.contains(&decoded.as_str())
        })
        .collect();
    if kept.len() == query.split('&').count() {
        return None;
    }
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// The upstream's `Content-Length` is passed on only when it is the framing its body
/// actually arrived in. With `Transfer-Encoding` as well (RFC 9112 §6.3: chunked wins) or
/// any other disagreement, it is removed and the body is re-framed to the client as it
/// streams; passing it on would send a complete-looking, silently truncated response.
/// `exact`: the body's length as hyper decoded its framing, if known. Not for responses to
/// HEAD, whose `Content-Length` describes a body that is not sent.
fn drop_unframed_length(headers: &mut HeaderMap, status: http::StatusCode, exact: Option<u64>) {
    let Some(declared) = headers.get(header::CONTENT_LENGTH) else {
        return;
    };
    // 204 and 304 carry no body whatever their headers say; hyper sends none.
    if status == http::StatusCode::NO_CONTENT || status == http::StatusCode::NOT_MODIFIED {
        return;
    }
    let declared = declared.to_str().ok().and_then(|v| v.parse::<u64>().ok());
    let conflicting = headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get_all(header::CONTENT_LENGTH).iter().count() > 1
        || declared.is_none()
        || declared != exact;
    if conflicting {
        tracing::debug!("upstream Content-Length disagrees with its framing; dropped");
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// A valid client `X-Request-Id` (1–128 of `[A-Za-z0-9._-]`), kept so traces join up.
pub fn client_request_id(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    let valid = (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    valid.then(|| value.to_str().ok()).flatten()
}

/// A fresh request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests;
