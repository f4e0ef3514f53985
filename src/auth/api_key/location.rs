//! Where a request carries its API key: a header (the default), a query parameter or a
//! cookie, as the scheme's config says.

use http::HeaderName;

use crate::config::ApiKeyConfig;

/// Where a request carries its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Header(HeaderName),
    Query(String),
    Cookie(String),
}

impl KeyLocation {
    /// The scheme's `query` or `cookie`, else its `header`.
    pub(super) fn configured(config: &ApiKeyConfig) -> Result<KeyLocation, String> {
        Ok(match (&config.query, &config.cookie) {
            (Some(_), Some(_)) => return Err("give `query` or `cookie`, not both".to_owned()),
            (Some(name), None) => KeyLocation::Query(name.clone()),
            (None, Some(name)) => KeyLocation::Cookie(name.clone()),
            (None, None) => KeyLocation::Header(
                HeaderName::from_bytes(config.header.as_bytes())
                    .map_err(|_| format!("`header: {}` is not a header name", config.header))?,
            ),
        })
    }

    /// As OpenAPI's `in` and `name` say it.
    pub fn spec_terms(&self) -> (&'static str, &str) {
        match self {
            KeyLocation::Header(name) => ("header", name.as_str()),
            KeyLocation::Query(name) => ("query", name),
            KeyLocation::Cookie(name) => ("cookie", name),
        }
    }
}
