//! Fuzz target of overlays (`fuzz/`, replayed by `tests/fuzz_targets.rs`): the input is a
//! document and an overlay (JSON or YAML, split at the first NUL byte), read by the spec's
//! own parser; applying it ends, with the document changed or a reason — and JSONPath
//! targets over a bounded document are evaluated in bounded time (libFuzzer's `-timeout`
//! catches one that is not).

use serde_json::Value;

use super::apply;
use crate::spec::source;

pub fn target(bytes: &[u8]) {
    let (doc, overlay) = match bytes.iter().position(|&b| b == 0) {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => (
            &b"{\"openapi\": \"3.1.0\", \"paths\": {\"/a\": {\"get\": {}}}}"[..],
            bytes,
        ),
    };
    let (Ok(mut doc), Ok(overlay)) = (source::parse(doc), source::parse(overlay)) else {
        return;
    };
    if let Err(reason) = apply(&mut doc, &overlay) {
        assert!(!reason.is_empty());
    } else if overlay.get("actions").and_then(Value::as_array).is_none() {
        panic!("an overlay without actions was applied");
    }
}
