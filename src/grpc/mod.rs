//! The model's gRPC services, read from its `.proto` files (compiled in-process by protox)
//! or a `FileDescriptorSet`: every method an operation named `package.Service/Method`,
//! routed by its path `/package.Service/Method` and held to the same policy as the spec's
//! operations. Also the pieces of the protocol a sidecar must read itself: whether a
//! request is a gRPC call, its messages' framing (`framing`), its deadline (`timeout`), and
//! the health service moat answers (`health`).

mod annotations;
pub mod encoding;
pub mod framing;
pub(crate) mod fuzz;
pub mod health;
mod load;
pub mod loose;
pub mod message;
mod relay;
pub mod timeout;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use prost::Message as _;
use prost_reflect::DynamicMessage;

pub use self::load::load;
use crate::spec::Operation;

/// The methods of the configured services, as operations.
pub struct Services {
    /// In the order the descriptors list them; moat's own health check last.
    pub operations: Vec<Operation>,
    by_path: HashMap<String, usize>,
    /// Each operation's path, shared with the requests routed to it.
    paths: Vec<Arc<str>>,
    /// The `.proto` files (or the descriptor set's files) the services come from.
    pub files: Vec<String>,
}

impl Services {
    /// A request message of the method at `path`, given as proto3 JSON, encoded and framed
    /// as a call carries it (for `moat explain`).
    pub fn message_from_json(&self, path: &str, json: &[u8]) -> Result<(Bytes, String), String> {
        let index = *self
            .by_path
            .get(path)
            .ok_or_else(|| format!("no gRPC method is declared at {path}"))?;
        let input = self.operations[index]
            .rpc
            .as_ref()
            .and_then(|rpc| rpc.input.clone())
            .ok_or("moat answers the health check itself: explain it without --data")?;
        let mut reader = serde_json::Deserializer::from_slice(json);
        let message = DynamicMessage::deserialize(input.clone(), &mut reader)
            .and_then(|message| reader.end().map(|()| message))
            .map_err(|error| {
                format!(
                    "--data is not a {} in proto3 JSON: {error}",
                    input.full_name()
                )
            })?;
        let framed = framing::frame(&message.encode_to_vec()).ok_or("the message is too large")?;
        Ok((framed, input.full_name().to_owned()))
    }

    /// The operation at `path` (`/package.Service/Method`), and the path as routed.
    pub fn route(&self, path: &str) -> Option<(usize, Arc<str>)> {
        let index = *self.by_path.get(path)?;
        Some((index, self.paths[index].clone()))
    }
}

/// A gRPC call: `content-type: application/grpc`, `application/grpc+proto` or another
/// `+codec`. gRPC-Web (`application/grpc-web…`) is not gRPC: its framing and trailers
/// differ, and moat does not translate it.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(rest) = value
        .get(..16)
        .filter(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
        .map(|_| &value[16..])
    else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+' | b';'))
}

/// A gRPC call whose messages are protobuf: `application/grpc` or `application/grpc+proto`
/// (parameters aside). Messages in another codec (`+json`, …) cannot be checked against the
/// `.proto`.
pub fn is_protobuf(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let media = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    let media = media.trim_ascii();
    media.eq_ignore_ascii_case(b"application/grpc")
        || media.eq_ignore_ascii_case(b"application/grpc+proto")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_told_by_its_content_type() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(value));
            is_grpc(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC;charset=utf-8"));
        assert!(!with("application/grpc-web"));
        assert!(!with("application/grpc-web+proto"));
        assert!(!with("application/json"));
        assert!(!with("application/grp"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn only_protobuf_messages_are_read() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(value));
            is_protobuf(&headers)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto; charset=utf-8"));
        assert!(!with("application/grpc+json"));
    }
}
