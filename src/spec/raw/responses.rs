//! Reading an operation's `responses`: each status key (`200`, `2XX`, `default`) and the
//! media ranges its `content` declares, `$ref`s to `components/responses` followed.

use serde_json::Value;

use super::{Loc, Node, Reader};

/// A status key as written, and the media ranges of its content (empty: no body declared).
pub(in crate::spec) type RawResponses = Vec<(String, Vec<RawMedia>)>;

/// One declared media range: where its body's schema is, and — for `text/event-stream` —
/// where the schema of each event's JSON `data` is.
pub(in crate::spec) struct RawMedia {
    pub(in crate::spec) range: String,
    pub(in crate::spec) schema: Option<Loc>,
    pub(in crate::spec) events: Option<Loc>,
}

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
                        let at = at.child("content").child(range);
                        RawMedia {
                            range: range.clone(),
                            schema: media.get("schema").map(|_| at.child("schema")),
                            events: event_schema(media, &at),
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            declared.push((key.clone(), media));
        }
        Some(declared)
    }
}

/// Where the schema of an event stream's JSON `data` is: `x-moat-event-schema`, else
/// OpenAPI 3.2's `itemSchema` when it gives its `data` a `contentSchema` (an `itemSchema`
/// describes the whole event — `event`, `id`, `data` as a string — and the JSON inside
/// `data` only through that keyword).
fn event_schema(media: &Value, at: &Loc) -> Option<Loc> {
    if media.get("x-moat-event-schema").is_some() {
        return Some(at.child("x-moat-event-schema"));
    }
    let data = media.pointer("/itemSchema/properties/data/contentSchema")?;
    data.is_object().then(|| {
        let at = at.child("itemSchema").child("properties").child("data");
        at.child("contentSchema")
    })
}
