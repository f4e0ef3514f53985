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
        // Cloned into the upstream request and the response: shared from the start.
        RequestId(shared_header(text).unwrap_or(HeaderValue::from_static("0")))
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

/// A name a verified credential carries — a token's subject, a key's id — made once when
/// the credential is first verified and shared by every request it admits: the access log
/// and the status page read its text, the model gets its header value, and neither is
/// copied per request (a request clones two pointers).
#[derive(Clone, PartialEq, Eq)]
pub struct Name {
    text: Arc<str>,
    /// `None` when the text cannot travel in a header (not visible ASCII): then it is not
    /// sent to the model at all.
    header: Option<HeaderValue>,
}

impl Name {
    pub fn new(text: &str) -> Name {
        Name {
            text: Arc::from(text),
            header: shared_header(text.as_bytes().to_vec()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name as a header value, if it can be one.
    pub fn header(&self) -> Option<&HeaderValue> {
        self.header.as_ref()
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.text, f)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Name::new(&text))
    }
}

/// `bytes` as a header value shared from the start (`Bytes::from_owner`): a value built
/// once and cloned into many requests and responses, where a copied value would allocate
/// again on its first clone. `None` unless it is visible ASCII (`to_str` reads it).
pub fn shared_header<T: AsRef<[u8]> + Send + 'static>(bytes: T) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(bytes))
        .ok()
        .filter(|value| value.to_str().is_ok())
}
