//! Reading an operation's `responses`: each status key (`200`, `2XX`, `default`) and the
//! media ranges its `content` declares, `$ref`s to `components/responses` followed.

use serde_json::Value;

use super::{Loc, Node, Reader};

/// A status key as written, and the media ranges of its content with where each one's
/// schema is (empty: no body declared).
pub(in crate::spec) type RawResponses = Vec<(String, Vec<(String, Option<Loc>)>)>;

impl Reader<'_> {
    /// The operation's declared responses; `None` when it declares none.
    pub(super) fn responses(&mut self, operation: &Node<'_>) -> Option<RawResponses> {
        let Some(Value::Object(responses)) = operation.value.get("responses") else {
            return None;
        };
        let at = operation.at.child("responses");
        let mut declared = Vec::with_capacity(responses.len());
        for key in responses.keys() {
            let Some(Node { value, at }) = self.deref(&at.child(key)) else {
                continue;
            };
            let media = match value.get("content") {
                Some(Value::Object(content)) => (content.iter())
                    .map(|(range, media)| {
                        let schema = media.get("schema");
                        let at = at.child("content").child(range).child("schema");
                        (range.clone(), schema.map(|_| at))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            declared.push((key.clone(), media));
        }
        Some(declared)
    }
}
