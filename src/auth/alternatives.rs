//! Stages 3 and 4 for one request: the requirement's alternatives in order, each scheme's
//! credential authenticated and then authorized, identities joined only within one
//! alternative.

use std::sync::Arc;

use super::authenticate::{Identity, Outcome, bearer, key};
use super::authorize::{Denied, authorize};
use super::{Auth, Caller, Principal, Request, Verifier};
use crate::policy::Requirement;
use crate::reject::{Rejection, Stage};
use crate::trail::Trail;

/// One alternative: its schemes (ANDed), each with the scopes it requires.
type Alternative = [(Arc<str>, Vec<String>)];

/// How an alternative ended when it did not end the request.
enum Tried<'a> {
    /// Every credential present, valid and allowed.
    Passed(Principal),
    /// A credential it needs is absent.
    Absent,
    /// A credential lacks scopes its scheme requires: those required, and whose it was.
    ShortOfScopes(&'a [String], Identity),
}

impl Auth {
    /// Stages 3 and 4: the first alternative whose credentials are all present, valid and
    /// allowed. An absent credential moves on to the next alternative; a present one that
    /// fails verification is final (401), as is a key whose allowlist lacks the operation
    /// (403); missing scopes try the next alternative and end in 403 if none passes.
    /// `Ok(None)` for a public operation.
    pub async fn check(
        &self,
        requirement: &Requirement,
        caller: &Caller<'_>,
        trail: &mut Trail,
    ) -> Result<Option<Principal>, Rejection> {
        if requirement.is_public() {
            trail.note(Stage::Authenticate, || {
                "public: no credentials required".to_owned()
            });
            return Ok(None);
        }
        let request = Request::read(caller, self.reads_legacy_bearer())?;
        // The first credential found short of scopes: the 403's scopes and whose it was.
        let mut missing_scopes = None;
        for (number, alternative) in requirement.alternatives().iter().enumerate() {
            match self
                .try_alternative(number, alternative, &request, trail)
                .await?
            {
                Tried::Passed(principal) => return Ok(Some(principal)),
                Tried::Absent => {}
                Tried::ShortOfScopes(scopes, identity) => {
                    missing_scopes.get_or_insert((scopes, identity));
                }
            }
        }
        Err(no_alternative_passed(missing_scopes, trail))
    }

    /// The schemes of alternative `number` (from 0) in turn, their identities joined; a
    /// credential that is refused, or a key that may not call the operation, ends the request.
    async fn try_alternative<'a>(
        &self,
        number: usize,
        alternative: &'a Alternative,
        request: &Request<'_>,
        trail: &mut Trail,
    ) -> Result<Tried<'a>, Rejection> {
        trail.note(Stage::Authenticate, || {
            format!(
                "alternative {}: {}",
                number + 1,
                crate::policy::describe_alternative(alternative)
            )
        });
        let mut principal = Principal::default();
        for (scheme, required) in alternative {
            let identity = match self.authenticate(scheme, request, trail).await {
                Outcome::Absent => return Ok(Tried::Absent),
                Outcome::Refused { rejection, .. } => return Err(rejection),
                Outcome::Valid(identity) => identity,
            };
            if !authorized(&identity, scheme, required, request, trail)? {
                return Ok(Tried::ShortOfScopes(required, identity));
            }
            principal.absorb(identity);
        }
        Ok(Tried::Passed(principal))
    }

    /// One scheme's verdict on the request, in Oathkeeper's terms.
    async fn authenticate(
        &self,
        scheme: &Arc<str>,
        request: &Request<'_>,
        trail: &mut Trail,
    ) -> Outcome {
        let verifier = self.verifiers.get(scheme);
        let outcome = match verifier {
            Some(Verifier::Jwt(verifier)) => bearer(verifier, request).await,
            Some(Verifier::ApiKey(verifier)) => key(verifier, request).await,
            None => Outcome::Refused {
                rejection: Rejection::Internal(Stage::Authenticate),
                credential: "scheme",
                reason: "not bound",
            },
        };
        trail.note(Stage::Authenticate, || {
            describe_outcome(scheme, verifier, &outcome)
        });
        outcome
    }
}

/// What `moat explain` says of one scheme's outcome.
fn describe_outcome(scheme: &str, verifier: Option<&Verifier>, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Absent => format!(
            "  {scheme}: no {}; next alternative",
            match verifier {
                Some(Verifier::Jwt(_)) => "bearer token",
                _ => "API key",
            }
        ),
        Outcome::Refused {
            credential, reason, ..
        } => format!("  {scheme}: {credential} refused: {reason}"),
        Outcome::Valid(identity) => describe_identity(scheme, identity),
    }
}

fn describe_identity(scheme: &str, identity: &Identity) -> String {
    match &identity.key_id {
        Some(id) => format!(
            "  {scheme}: valid key `{id}`, scopes [{}]",
            identity.scopes.join(" ")
        ),
        None => format!(
            "  {scheme}: valid token, subject `{}`, scopes [{}]",
            identity.subject.as_deref().unwrap_or("-"),
            identity.scopes.join(" ")
        ),
    }
}

/// Stage 4 for one valid credential: whether it has the scopes its scheme requires. A key
/// whose `operations` allowlist lacks the operation is final, whatever the other
/// alternatives hold.
fn authorized(
    identity: &Identity,
    scheme: &str,
    required: &[String],
    request: &Request<'_>,
    trail: &mut Trail,
) -> Result<bool, Rejection> {
    match authorize(identity, required, request.caller.operation) {
        Ok(()) => Ok(true),
        Err(Denied::OperationNotAllowed) => {
            Err(operation_not_allowed(scheme, identity, request, trail))
        }
        Err(Denied::MissingScopes(missing)) => {
            trail.note(Stage::Authorize, || {
                format!("  {scheme}: missing scopes [{}]", missing.join(" "))
            });
            Ok(false)
        }
    }
}

/// The 403 of a key that may not call the operation, its caller named.
fn operation_not_allowed(
    scheme: &str,
    identity: &Identity,
    request: &Request<'_>,
    trail: &mut Trail,
) -> Rejection {
    name_refused_caller(trail, identity);
    let key = identity.key_id.as_deref().unwrap_or("-");
    trail.note(Stage::Authorize, || {
        format!("  {scheme}: key `{key}` may not call this operation")
    });
    tracing::info!(
        request_id = request.caller.request_id,
        key_id = key,
        "operation not in the key's allowlist"
    );
    Rejection::OperationNotAllowed
}

/// The refusal when every alternative fell short: the first shortfall of scopes (403),
/// else missing credentials (401).
fn no_alternative_passed(
    missing_scopes: Option<(&[String], Identity)>,
    trail: &mut Trail,
) -> Rejection {
    match missing_scopes {
        Some((scopes, identity)) => {
            name_refused_caller(trail, &identity);
            Rejection::InsufficientScope {
                scope: scopes.join(" "),
                bearer: identity.bearer,
            }
        }
        None => Rejection::CredentialsMissing,
    }
}

/// A 403 names its caller in the access log and on the status page: the credential was
/// verified, only its permissions fell short.
fn name_refused_caller(trail: &mut Trail, identity: &Identity) {
    trail.subject.clone_from(&identity.subject);
    trail.key_id.clone_from(&identity.key_id);
}

impl Principal {
    /// Joins a credential of the same alternative: the token's subject wins over a key's
    /// owner, scopes are the union.
    fn absorb(&mut self, identity: Identity) {
        if identity.bearer || self.subject.is_none() {
            self.subject = identity.subject.or(self.subject.take());
        }
        if identity.key_id.is_some() {
            self.key_id = identity.key_id;
        }
        self.scopes = self.scopes.union(&identity.scopes);
    }
}
