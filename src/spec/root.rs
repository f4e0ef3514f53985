//! What the root document says about itself: the OpenAPI version it is written in, its
//! `info`, its security schemes, and the server path every route sits under.

use serde_json::{Map, Value};

/// The document's OpenAPI version, if moat reads it: 3.0.x, 3.1.x, or 3.2.x read as 3.1 —
/// what 3.2 adds that moat does not know fails closed: a `querystring` parameter is a load
/// problem (see `raw::param`), a `query` method or `additionalOperations` is never routed
/// (405), and `$self`, which changes how every `$ref` resolves, is refused here.
pub(super) fn check_version(root: &Value) -> Result<String, String> {
    let version = root
        .get("openapi")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let known = ["3.0", "3.1", "3.2"];
    let read = known.iter().any(|known| {
        version == *known
            || version
                .strip_prefix(known)
                .is_some_and(|rest| rest.starts_with('.'))
    });
    if read && version.starts_with("3.2") && root.get("$self").is_some() {
        Err(
            "#/$self: moat does not read `$self` (OpenAPI 3.2); remove it, and write \
             `$ref`s relative to where the document is loaded from"
                .to_owned(),
        )
    } else if read {
        Ok(version.to_owned())
    } else if root.get("swagger").is_some() {
        Err("this is a Swagger 2.0 document; convert it to OpenAPI 3 first".to_owned())
    } else {
        Err(format!(
            "#/openapi: `{version}` is not a supported version; moat reads OpenAPI 3.0.x, 3.1.x \
             and 3.2.x"
        ))
    }
}

/// `info.<field>` (`title`, `version`), when it is a string.
pub(super) fn info(root: &Value, field: &str) -> Option<String> {
    root.pointer(&format!("/info/{field}"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `components.securitySchemes`, raw; empty when the document declares none.
pub(super) fn security_schemes(root: &Value) -> Map<String, Value> {
    match root.pointer("/components/securitySchemes") {
        Some(Value::Object(schemes)) => schemes.clone(),
        _ => Map::new(),
    }
}

/// The path part of `servers[0].url` (variables replaced by their defaults), no trailing '/'.
pub(super) fn server_prefix(root: &Value, warnings: &mut Vec<String>) -> String {
    let Some(server) = root.pointer("/servers/0") else {
        return String::new();
    };
    let url = server_url(server);
    let path = url_path(&url).trim_end_matches('/');
    match prefix_problem(path) {
        None => path.to_owned(),
        Some(problem) => {
            warnings.push(format!(
                "#/servers/0/url: `{url}` {problem}; no prefix used"
            ));
            String::new()
        }
    }
}

/// A server's `url`, each `{variable}` replaced by its default.
fn server_url(server: &Value) -> String {
    let mut url = server
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    if let Some(Value::Object(variables)) = server.get("variables") {
        for (name, variable) in variables {
            let default = variable
                .get("default")
                .and_then(Value::as_str)
                .unwrap_or_default();
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    url
}

/// The path of a URL: what follows the authority of an absolute one, else all of it.
fn url_path(url: &str) -> &str {
    match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        None => url,
    }
}

/// Why a server URL's path cannot prefix the routes, when it cannot.
fn prefix_problem(path: &str) -> Option<&'static str> {
    if path.contains('{') {
        Some("has an undefined variable")
    } else if !path.is_empty() && !path.starts_with('/') {
        Some("is not a path")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_3_0_to_3_2_are_read_and_3_2_s_self_is_refused() {
        for version in ["3.0.3", "3.1", "3.1.1", "3.2.0"] {
            assert!(
                check_version(&json!({"openapi": version})).is_ok(),
                "{version}"
            );
        }
        for version in ["3.3.0", "3.10.0", "4.0.0", ""] {
            assert!(
                check_version(&json!({"openapi": version})).is_err(),
                "{version}"
            );
        }
        let selfish = json!({"openapi": "3.2.0", "$self": "https://example.com/api"});
        assert!(check_version(&selfish).unwrap_err().contains("$self"));
    }
}
