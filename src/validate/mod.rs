//! Stage 6, validate: parameters, content type, body size, strict JSON and schemas. Each
//! check is a plain function over what the request carries; the pipeline decides what a
//! failure means (refuse, or in shadow mode log and forward).

pub(crate) mod body;
pub(crate) mod fuzz;
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

/// Stage 6's one verdict from its two checks: a request whose parameters and body both
/// fail their schemas is told of both, under the parameters' code (the first to fail), so
/// a client fixes everything in one round; any other body refusal waits its turn.
pub fn together(
    parameters: Result<(), Rejection>,
    body: Result<(), Rejection>,
) -> Result<(), Rejection> {
    match (parameters, body) {
        (Err(Rejection::InvalidParameters(mut errors)), Err(Rejection::BodySchema(more))) => {
            let room = crate::spec::compile::MAX_ERRORS.saturating_sub(errors.len());
            errors.extend(more.into_iter().take(room));
            Err(Rejection::InvalidParameters(errors))
        }
        (Err(rejection), _) | (Ok(()), Err(rejection)) => Err(rejection),
        (Ok(()), Ok(())) => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(location: &'static str, pointer: &str) -> FieldError {
        let message = "is wrong".to_owned();
        let pointer = pointer.to_owned();
        FieldError {
            location,
            pointer,
            message,
        }
    }

    #[test]
    fn parameter_and_body_failures_are_reported_together() {
        let parameters = Err(Rejection::InvalidParameters(vec![error("query", "/limit")]));
        let body = Err(Rejection::BodySchema(vec![error("body", "/instances")]));
        let Err(Rejection::InvalidParameters(errors)) = together(parameters, body) else {
            panic!("one invalid_parameters refusal");
        };
        let places: Vec<_> = errors
            .iter()
            .map(|e| (e.location, e.pointer.as_str()))
            .collect();
        assert_eq!(places, [("query", "/limit"), ("body", "/instances")]);
        let unreadable = together(Ok(()), Err(Rejection::InvalidJson("x".into())));
        assert!(matches!(unreadable, Err(Rejection::InvalidJson(_))));
        let first = together(
            Err(Rejection::InvalidParameters(vec![])),
            Err(Rejection::BodyRequired),
        );
        assert!(matches!(first, Err(Rejection::InvalidParameters(_))));
        assert!(together(Ok(()), Ok(())).is_ok());
    }
}
