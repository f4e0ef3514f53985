//! The names a request is known by, shared by every layer: its id (as it travels in
//! `X-Request-Id`) and the operation label it is counted under. A leaf: it imports nothing
//! of the crate, so anything may import it.

use std::sync::Arc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `operation` label: an operationId or route template, or [`unrouted`] before a route
/// matched. Shared, so labelling a request copies a pointer, not a string.
pub type OperationLabel = Arc<str>;

/// The label of a request no operation matched (or refused before routing).
pub fn unrouted() -> OperationLabel {
    thread_local! {
        static UNROUTED: OperationLabel = Arc::from("unrouted");
    }
    UNROUTED.with(Clone::clone)
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
