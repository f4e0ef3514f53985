//! Fuzz target of stage 1 (`fuzz/`, replayed by `tests/fuzz_targets.rs`): any bytes as a
//! request target. A path that passes is decoded, never normalised: it starts with `/`,
//! holds no empty, `.` or `..` segment and no `%`, equals its input when it had no escape,
//! and reads back the same when its bytes are escaped again (canonicalising twice changes
//! nothing).

use http::{HeaderMap, Uri, Version};

use super::canonical_path;
use crate::config::Limits;

pub fn target(bytes: &[u8]) {
    if let Ok(uri) = Uri::try_from(bytes) {
        let _ = super::check(
            &uri,
            Version::HTTP_11,
            &HeaderMap::new(),
            &Limits::default(),
        );
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(path) = canonical_path(text) else {
        return;
    };
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains('%'), "an escape left in {path:?}");
    let segments: Vec<&str> = path[1..].split('/').collect();
    if let Some((_last, inner)) = segments.split_last() {
        assert!(
            inner
                .iter()
                .all(|s| !s.is_empty() && *s != "." && *s != ".."),
            "{path:?}"
        );
    }
    assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{path:?}");
    if !text.contains('%') {
        assert_eq!(path, text);
    }
    let again = escaped(&path);
    assert_eq!(canonical_path(&again).as_deref(), Ok(&*path), "{again:?}");
}

/// `path` with every byte but unreserved ones and `/` percent-escaped.
fn escaped(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
