//! Header hygiene in both directions (design §6): what a client may not pass on, the
//! identity and forwarding headers moat adds, credentials it strips, and response framing.

use std::net::IpAddr;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Uri};

use super::ForwardContext;
use crate::auth::{KeyLocation, Principal};

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
    headers.insert(X_FORWARDED_FOR, context.forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(context.proto));
    if let Some(host) = original_host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(X_REQUEST_ID, context.request_id.header());
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
pub(super) fn drop_unframed_length(
    headers: &mut HeaderMap,
    status: http::StatusCode,
    exact: Option<u64>,
) {
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
    // One `Connection` value at a time (a clone shares its bytes), removing by `&str`
    // (looked up without building a name): no list of names allocated per request.
    let mut index = 0;
    while let Some(value) = headers
        .get_all(header::CONNECTION)
        .iter()
        .nth(index)
        .cloned()
    {
        index += 1;
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',').map(str::trim) {
            // `Connection` itself goes last, after every value has been read.
            if !token.is_empty() && !token.eq_ignore_ascii_case("connection") {
                headers.remove(token);
            }
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `X-Forwarded-For` value of a client, built once per connection.
pub fn forwarded_for(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// A request's id: the client's valid `X-Request-Id` (kept so traces join up), else a
/// fresh one. Held as the header value it travels as — to the model and back to the
/// client — so it is built once, not once per header.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn of(headers: &HeaderMap) -> RequestId {
        client_request_id(headers).map_or_else(RequestId::fresh, |id| RequestId(id.clone()))
    }

    /// 128 random bits in hex.
    pub fn fresh() -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits = rand::random::<u128>();
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
        }
        RequestId(HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("0")))
    }

    /// Only visible ASCII ever gets in (see [`client_request_id`]).
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    pub fn header(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// A valid client `X-Request-Id` (1–128 of `[A-Za-z0-9._-]`).
pub fn client_request_id(headers: &HeaderMap) -> Option<&HeaderValue> {
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
    valid.then_some(value)
}
