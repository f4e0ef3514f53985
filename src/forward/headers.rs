//! Header hygiene in both directions (design §6): what a client may not pass on, the
//! identity and forwarding headers moat adds, credentials it strips, and response framing.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

use super::ForwardContext;
use crate::auth::Principal;
use crate::ids::X_REQUEST_ID;

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
    // `Host` is replaced below; the rest are rare, so they are found one at a time rather
    // than collected into a list on every request.
    while let Some(name) = headers
        .keys()
        .find(|name| is_client_controlled_identity(name))
        .cloned()
    {
        headers.remove(name);
    }
    // moat sends its own framing and has already answered any `Expect`.
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    headers.remove(header::UPGRADE);
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
        add_identity(headers, principal);
    }
}

/// Who moat verified the caller to be: `X-Moat-Subject`, `X-Moat-Key-Id`, `X-Moat-Scopes`.
/// The values were built when the credential was first verified; inserting them shares
/// their bytes. A name that cannot be a header value is not sent; no scopes, an empty
/// `X-Moat-Scopes`.
fn add_identity(headers: &mut HeaderMap, principal: &Principal) {
    let identity = [
        (
            X_MOAT_SUBJECT,
            principal.subject.as_ref().and_then(|n| n.header()),
        ),
        (
            X_MOAT_KEY_ID,
            principal.key_id.as_ref().and_then(|n| n.header()),
        ),
    ];
    for (name, value) in identity {
        if let Some(value) = value {
            headers.insert(name, value.clone());
        }
    }
    if principal.scopes.is_empty() {
        headers.insert(X_MOAT_SCOPES, HeaderValue::from_static(""));
    } else if let Some(scopes) = principal.scopes.header() {
        headers.insert(X_MOAT_SCOPES, scopes.clone());
    }
}

/// Headers only moat may set: identity (`X-Moat-*`), client address and protocol
/// (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`). (`Host` moat replaces.)
fn is_client_controlled_identity(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == "forwarded"
        || name == "x-real-ip"
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-moat-")
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
