//! The authenticators, in Oathkeeper's terms: each reads its credential and answers
//! `Absent`, `Valid(identity)` or `Refused` — never a guess, never a fall-through on a
//! credential that is present and wrong.

use std::borrow::Cow;

use super::api_key::{ApiKeyVerifier, KeyError};
use super::jwt::{JwtError, JwtVerifier};
use super::{Request, Scopes, extract, keystore};
use crate::ids::Name;
use crate::reject::Rejection;

/// What one scheme made of a request.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The request carries no credential for this scheme: try the next alternative.
    Absent,
    Valid(Identity),
    /// The credential is present and failed: final, never a fall-through. `reason` is for
    /// the log and `moat explain`; the client sees only the rejection.
    Refused {
        rejection: Rejection,
        credential: &'static str,
        reason: &'static str,
    },
}

/// A verified credential: who, and what it may do.
#[derive(Debug, Default)]
pub struct Identity {
    pub subject: Option<Name>,
    pub key_id: Option<Name>,
    pub scopes: Scopes,
    /// A key's `operations` allowlist.
    pub allowed_operations: Option<Vec<String>>,
    /// A bearer token (whose 403 carries an RFC 6750 challenge), not an API key.
    pub bearer: bool,
}

pub(super) async fn bearer(verifier: &JwtVerifier, request: &Request<'_>) -> Outcome {
    let Some(token) = request.bearer else {
        return Outcome::Absent;
    };
    let mut verified = verifier.verify(token);
    // An unknown `kid` may be a key the provider just rotated in.
    if verified.as_ref().is_err_and(|e| *e == JwtError::UnknownKey) && verifier.refresh().await {
        verified = verifier.verify(token);
    }
    match verified {
        Ok(verified) => Outcome::Valid(Identity {
            subject: Some(verified.subject.clone()),
            scopes: verified.scopes.clone(),
            bearer: true,
            ..Identity::default()
        }),
        Err(error) => token_refused(error, request),
    }
}

fn token_refused(error: JwtError, request: &Request<'_>) -> Outcome {
    tracing::info!(
        request_id = request.caller.request_id,
        reason = error.reason(),
        "bearer token refused"
    );
    Outcome::Refused {
        rejection: Rejection::from(error),
        credential: "token",
        reason: error.reason(),
    }
}

pub(super) async fn key(verifier: &ApiKeyVerifier, request: &Request<'_>) -> Outcome {
    let (key, in_bearer) = match presented_key(verifier, request) {
        Ok(Some(presented)) => presented,
        Ok(None) => return Outcome::Absent,
        Err(rejection) => {
            return Outcome::Refused {
                rejection,
                credential: "key",
                reason: "unreadable, or sent more than once",
            };
        }
    };
    match verifier.verify(&key, request.caller.client).await {
        Ok(record) => Outcome::Valid(Identity {
            subject: record.owner.clone(),
            key_id: Some(record.id.clone()),
            scopes: record.scopes.clone(),
            allowed_operations: record.operations.clone(),
            // Its 403 carries the RFC 6750 challenge a bearer client reads.
            bearer: in_bearer,
        }),
        Err(error) => key_refused(error, &key, in_bearer, request),
    }
}

/// The key the request presents to `verifier`, and whether it came in the bearer slot:
/// where the scheme reads it, or a key-shaped bearer if the scheme reads that too — never
/// both, and never one sent twice.
fn presented_key<'r>(
    verifier: &ApiKeyVerifier,
    request: &Request<'r>,
) -> Result<Option<(Cow<'r, str>, bool)>, Rejection> {
    let located = extract::api_key(request.caller, &verifier.location)?;
    let from_bearer = request.bearer_key.filter(|_| verifier.bearer);
    match (located, from_bearer) {
        (Some(_), Some(_)) => Err(Rejection::InvalidApiKey),
        (Some(key), None) => Ok(Some((key, false))),
        (None, Some(key)) => Ok(Some((Cow::Borrowed(key), true))),
        (None, None) => Ok(None),
    }
}

fn key_refused(error: KeyError, key: &str, in_bearer: bool, request: &Request<'_>) -> Outcome {
    // The id of a well-formed key is not a secret; the rest of it is. It is what the
    // client claimed, not a verified key: never logged as `key_id`.
    tracing::info!(
        request_id = request.caller.request_id,
        claimed_key_id = keystore::parse_key(key).unwrap_or("-"),
        reason = error.reason(),
        "API key refused"
    );
    let rejection = match Rejection::from(error) {
        Rejection::InvalidApiKey if in_bearer => Rejection::InvalidBearerKey,
        rejection => rejection,
    };
    Outcome::Refused {
        rejection,
        credential: "key",
        reason: error.reason(),
    }
}
