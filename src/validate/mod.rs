//! Stage 6, validate: parameters, content type, body size, strict JSON and schemas. Each
//! check is a plain function over what the request carries; the pipeline decides what a
//! failure means (refuse, or in shadow mode log and forward).

pub(crate) mod body;
pub mod json;
pub(crate) mod params;

use bytes::Bytes;
use http::HeaderMap;

use crate::reject::{FieldError, Rejection};
use crate::spec::Operation;

/// Checks the parameters (before the body is read).
pub fn parameters(
    operation: &Operation,
    path_values: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    reject_unknown_query: bool,
) -> Result<(), Rejection> {
    let mut errors: Vec<FieldError> = Vec::new();
    params::check(
        operation,
        path_values,
        query,
        headers,
        reject_unknown_query,
        &mut errors,
    );
    refused_if_any(errors, Rejection::InvalidParameters)
}

/// Checks the buffered body against the operation's request body.
pub fn request_body(
    operation: &Operation,
    headers: &HeaderMap,
    body: &Bytes,
    limits: &json::JsonLimits,
) -> Result<(), Rejection> {
    let mut errors = Vec::new();
    body::check(operation, headers, body, limits, &mut errors)?;
    refused_if_any(errors, Rejection::BodySchema)
}

/// Passes when nothing failed; else the rejection that reports every failure.
fn refused_if_any(
    errors: Vec<FieldError>,
    rejection: fn(Vec<FieldError>) -> Rejection,
) -> Result<(), Rejection> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(rejection(errors))
    }
}

/// A name as a refusal shows it: cut at 64 characters, so a huge one is not echoed back.
fn shortened(name: &str) -> String {
    let mut shown: String = name.chars().take(64).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    shown
}
