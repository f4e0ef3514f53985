//! Stage 6, parameters: path, query, header and cookie values parsed by their `style` and
//! `explode`, coerced from text to the types their schema expects, then validated. A
//! non-array query parameter given twice is refused (Starlette takes the last value, a
//! naive validator the first).

mod query;
mod text;

use http::HeaderMap;
use serde_json::Value;

pub use self::text::coerce;
use self::text::delimited;
pub(super) use self::text::types_of;
use crate::reject::FieldError;
use crate::spec::{Operation, Param};

/// Headers OpenAPI says are never described as parameters.
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// Checks every parameter of `operation`, appending failures to `errors`.
pub fn check(
    operation: &Operation,
    path_values: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    reject_unknown_query: bool,
    errors: &mut Vec<FieldError>,
) {
    for (param, text) in operation.params.path.iter().zip(path_values) {
        let value = delimited(param, text, ',');
        validate(param, value, "path", errors);
    }
    query::check(
        &operation.params.query,
        query.unwrap_or(""),
        reject_unknown_query,
        errors,
    );
    check_headers(&operation.params.header, headers, errors);
    check_cookies(&operation.params.cookie, headers, errors);
}

fn check_headers(params: &[Param], headers: &HeaderMap, errors: &mut Vec<FieldError>) {
    for param in params.iter().filter(|p| !ignored_header(&p.name)) {
        let values: Vec<&str> = headers
            .get_all(param.name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        single(param, &values, "header", errors);
    }
}

/// A header OpenAPI says is never described as a parameter.
fn ignored_header(name: &str) -> bool {
    IGNORED_HEADERS
        .iter()
        .any(|ignored| ignored.eq_ignore_ascii_case(name))
}

fn check_cookies(params: &[Param], headers: &HeaderMap, errors: &mut Vec<FieldError>) {
    if params.is_empty() {
        return;
    }
    let cookies = cookies(headers);
    for param in params {
        let values: Vec<&str> = cookies
            .iter()
            .filter(|(name, _)| *name == param.name)
            .map(|(_, value)| *value)
            .collect();
        single(param, &values, "cookie", errors);
    }
}

/// A header or cookie parameter: present at most once, comma-delimited when an array.
fn single(param: &Param, values: &[&str], location: &'static str, errors: &mut Vec<FieldError>) {
    match values {
        [] => missing(param, location, errors),
        [one] => validate(param, delimited(param, one, ','), location, errors),
        _ => repeated(param, location, errors),
    }
}

fn validate(
    param: &Param,
    value: Option<Value>,
    location: &'static str,
    errors: &mut Vec<FieldError>,
) {
    if let (Some(value), Some(schema)) = (value, &param.schema) {
        // The pointer is built only for a failure: a valid request allocates none.
        if !schema.is_valid(&value) {
            schema.check(&value, location, &pointer(&param.name), errors);
        }
    }
}

fn missing(param: &Param, location: &'static str, errors: &mut Vec<FieldError>) {
    if param.required {
        let message = format!(
            "the required {location} parameter `{}` is missing",
            param.name
        );
        errors.push(failure(location, &param.name, message));
    }
}

fn repeated(param: &Param, location: &'static str, errors: &mut Vec<FieldError>) {
    let message = format!(
        "the {location} parameter `{}` is given more than once but is not an exploded array",
        param.name
    );
    errors.push(failure(location, &param.name, message));
}

/// A failure of the parameter called `name`.
fn failure(location: &'static str, name: &str, message: String) -> FieldError {
    FieldError {
        location,
        pointer: pointer(name),
        message,
    }
}

/// The pointer of the parameter called `name` within its location.
fn pointer(name: &str) -> String {
    format!(
        "/{}",
        crate::spec::normalize::escape(&super::shortened(name))
    )
}

/// `Cookie: a=1; b=2` → pairs.
pub fn cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(cookie_pair)
        .collect()
}

/// One `name=value` of a `Cookie` header, trimmed; `None` for a piece without `=`. The one
/// reading of a cookie: parameters, API keys and their stripping all use it.
pub fn cookie_pair(pair: &str) -> Option<(&str, &str)> {
    let (name, value) = pair.trim().split_once('=')?;
    Some((name.trim(), value.trim()))
}
