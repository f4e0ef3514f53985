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

/// The header a key travels in. Never a gRPC binary header (`-bin`): its value is
/// base64 of arbitrary bytes, which gRPC libraries decode and re-encode at will, so the
/// same key could arrive spelled two ways.
fn header(name: &str) -> Result<HeaderName, String> {
    let header = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`header: {name}` is not a header name"))?;
    match header.as_str().ends_with("-bin") {
        true => Err(format!(
            "`header: {name}`: a `-bin` header is gRPC binary metadata and never carries a key; \
             name a text header such as x-api-key"
        )),
        false => Ok(header),
    }
}

impl KeyLocation {
    /// The scheme's `query` or `cookie`, else its `header`.
    pub(super) fn configured(config: &ApiKeyConfig) -> Result<KeyLocation, String> {
        Ok(match (&config.query, &config.cookie) {
            (Some(_), Some(_)) => return Err("give `query` or `cookie`, not both".to_owned()),
            (Some(name), None) => KeyLocation::Query(name.clone()),
            (None, Some(name)) => KeyLocation::Cookie(name.clone()),
            (None, None) => KeyLocation::Header(header(&config.header)?),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_header_is_a_text_header() {
        assert_eq!(header("X-API-Key").unwrap(), "x-api-key");
        assert!(
            header("x-api-key-bin")
                .unwrap_err()
                .contains("binary metadata")
        );
        assert!(header("bad header").is_err());
    }
}
