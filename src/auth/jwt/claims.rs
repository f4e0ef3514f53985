//! The claims checks the library leaves lax: times with leeway, an `iat` in the future,
//! the scope claim's two shapes, and the library's errors folded into moat's reasons.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::JwtError;

/// `sub`: a non-empty string that fits the `X-Moat-Subject` header it is forwarded in.
pub(super) fn subject(claims: &Value) -> Result<String, JwtError> {
    claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control))
        .map(str::to_owned)
        .ok_or(JwtError::BadClaims)
}

/// Scopes from the configured claim, space-separated (`scope`) or an array (`scp`).
pub(super) fn scopes(claims: &Value, claim: &str) -> Result<Vec<String>, JwtError> {
    let value = claims.get(claim).or_else(|| claims.get("scp"));
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(JwtError::BadClaims))
            .collect(),
        Some(_) => Err(JwtError::BadClaims),
    }
}

pub(super) fn classify(error: jsonwebtoken::errors::Error) -> JwtError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidAlgorithm => JwtError::AlgorithmNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => JwtError::Malformed,
        // The library's kind is `#[non_exhaustive]`; anything else is a claim it refused.
        _ => JwtError::BadClaims,
    }
}

pub(super) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A NumericDate claim (RFC 7519 §2: seconds since the epoch, any JSON number): `None` when
/// absent; refused when it is not a finite number in `0..2^64`.
pub(super) fn numeric_date(claims: &Value, name: &str) -> Result<Option<f64>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    // serde_json has no infinities or NaN, but a huge literal can still overflow to one.
    let seconds = value.as_f64().ok_or(JwtError::BadClaims)?;
    if !seconds.is_finite() || seconds < 0.0 || seconds >= u64::MAX as f64 {
        return Err(JwtError::BadClaims);
    }
    Ok(Some(seconds))
}

/// The time rules: valid while `now < exp + leeway`, from `nbf - leeway` on, and not
/// issued more than `leeway` in the future.
pub(super) fn check_times(
    expires: f64,
    not_before: Option<f64>,
    issued_at: Option<f64>,
    now: f64,
    leeway: f64,
) -> Result<(), JwtError> {
    if now >= expires + leeway {
        return Err(JwtError::Expired);
    }
    if not_before.is_some_and(|nbf| now < nbf - leeway) {
        return Err(JwtError::NotYetValid);
    }
    if issued_at.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}
