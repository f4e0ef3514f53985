//! The status page, `GET /` on the admin listener: one HTML document with its style and
//! script inline — no external asset, so it works offline and behind `kubectl
//! port-forward` — refreshing itself from `status.json`. It is served under a strict
//! Content-Security-Policy that allows exactly that style and that script, by hash, and
//! fetches from its own origin only: the page proves it needs nothing more.

use std::sync::LazyLock;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

pub struct Page {
    pub html: Bytes,
    pub content_security_policy: HeaderValue,
}

/// Built once: the page never changes while the process runs.
pub fn page() -> &'static Page {
    static PAGE: LazyLock<Page> = LazyLock::new(|| {
        let html = TEMPLATE
            .replace("/*STYLE*/", STYLE)
            .replace("/*SCRIPT*/", SCRIPT);
        let policy = format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash_source(SCRIPT),
            hash_source(STYLE)
        );
        Page {
            html: Bytes::from(html),
            // Built from base64 and fixed text: always a valid header value.
            content_security_policy: HeaderValue::from_str(&policy)
                .unwrap_or(HeaderValue::from_static("default-src 'none'")),
        }
    });
    &PAGE
}

/// A CSP hash source (`sha256-…`) for an inline element's exact text.
fn hash_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_its_style_and_script_and_the_policy_allows_exactly_them() {
        let page = page();
        let html = std::str::from_utf8(&page.html).unwrap();
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(!html.contains("/*STYLE*/") && !html.contains("/*SCRIPT*/"));
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!html.contains(external), "an external asset: {external}");
        }
        let policy = page.content_security_policy.to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(policy.contains(&hash_source(SCRIPT)) && policy.contains(&hash_source(STYLE)));
        assert!(policy.contains("connect-src 'self'"));
    }

    #[test]
    fn the_script_never_writes_markup_from_data() {
        // Everything status.json holds is rendered as text: a request id or an operation
        // name can never become markup.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "page.js uses {sink}");
        }
    }
}
