//! What the root document says about itself: the OpenAPI version it is written in, its
//! `info`, its security schemes, and the server path every route sits under.

use serde_json::{Map, Value};

pub(super) fn check_version(root: &Value) -> Result<String, String> {
    let version = root
        .get("openapi")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if version.starts_with("3.0.")
        || version.starts_with("3.1.")
        || version == "3.0"
        || version == "3.1"
    {
        Ok(version.to_owned())
    } else if root.get("swagger").is_some() {
        Err("this is a Swagger 2.0 document; convert it to OpenAPI 3 first".to_owned())
    } else {
        Err(format!(
            "#/openapi: `{version}` is not a supported version; moat reads OpenAPI 3.0.x and 3.1.x"
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
