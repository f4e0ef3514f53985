//! Stages 3 and 4, authenticate and authorize (design §1–§3). Each operation's security
//! requirement is resolved once at load — `policy.operations`, else the spec's own
//! `security`, else `policy.default`, else public — and every scheme it names must be bound
//! to a verifier, or the load fails. Per request, alternatives are tried in order: a
//! credential that is absent moves on to the next alternative, a credential that is present
//! but fails verification ends the request with 401. Identities are never merged across
//! alternatives, and each scheme's scopes are checked against its own credential.

pub mod jwt;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use self::jwt::{JwtError, JwtVerifier};
use crate::config::{Alternative, AuthConfig, Mode, PolicyConfig, SchemeConfig};
use crate::reject::Rejection;
use crate::spec::Spec;

/// Alternatives (OR), each a list of (scheme, required scopes) that must all pass (AND).
pub type Requirement = Vec<Vec<(Arc<str>, Vec<String>)>>;

/// Who the request is, once authenticated and authorised.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<String>,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
}

/// The verifiers and every operation's resolved requirement.
#[derive(Debug, Default)]
pub struct Auth {
    verifiers: BTreeMap<Arc<str>, JwtVerifier>,
    /// By operation index.
    pub requirements: Vec<Requirement>,
    /// By operation index: the long-form policy's `mode`, overriding `policy.mode`.
    pub modes: Vec<Option<Mode>>,
    /// For requests when no spec is configured.
    pub unrouted: Requirement,
}

impl Auth {
    /// Builds the verifiers and resolves every requirement; reports all problems at once.
    pub fn load(
        auth: &AuthConfig,
        policy: &PolicyConfig,
        spec: Option<&Spec>,
    ) -> Result<Auth, Vec<String>> {
        let mut problems = Vec::new();
        let mut verifiers = BTreeMap::new();
        for (name, scheme) in &auth.schemes {
            match scheme {
                SchemeConfig::Jwt(config) => match JwtVerifier::new(config) {
                    Ok(verifier) => {
                        verifiers.insert(Arc::from(name.as_str()), verifier);
                    }
                    Err(problem) => problems.push(format!("auth.schemes.{name}: {problem}")),
                },
            }
        }
        let mut compile = |security: &[Alternative], context: &str| -> Requirement {
            security
                .iter()
                .map(|alternative| {
                    alternative
                        .iter()
                        .filter_map(|(scheme, scopes)| {
                            match verifiers.get_key_value(scheme.as_str()) {
                                Some((name, _)) => Some((name.clone(), scopes.clone())),
                                None => {
                                    problems.push(format!(
                                        "{context}: security scheme `{scheme}` is not bound in \
                                     `auth.schemes`; add a verifier for it"
                                    ));
                                    None
                                }
                            }
                        })
                        .collect()
                })
                .collect()
        };
        let default = policy.default.clone().unwrap_or_default();
        let unrouted = compile(&default, "policy.default");
        let mut requirements = Vec::new();
        let mut modes = Vec::new();
        let mut used = std::collections::HashSet::new();
        if let Some(spec) = spec {
            for operation in &spec.operations {
                let long_name = format!("{} {}", operation.method, operation.template);
                let overlay = policy
                    .operations
                    .get(operation.id.as_ref())
                    .map(|p| (operation.id.to_string(), p))
                    .or_else(|| {
                        policy
                            .operations
                            .get(&long_name)
                            .map(|p| (long_name.clone(), p))
                    });
                let (security, context) = match (&overlay, &operation.security) {
                    (Some((key, policy)), _) => {
                        used.insert(key.clone());
                        (
                            policy.security().to_vec(),
                            format!("policy.operations.{key}"),
                        )
                    }
                    (None, Some(security)) => (
                        security.clone(),
                        format!("spec security of `{}`", operation.id),
                    ),
                    (None, None) => (default.clone(), "policy.default".to_owned()),
                };
                requirements.push(compile(&security, &context));
                modes.push(overlay.and_then(|(_, policy)| policy.mode()));
            }
            for key in policy.operations.keys() {
                if !used.contains(key) {
                    problems.push(format!(
                        "policy.operations.{key}: no operation has this operationId or \
                         `METHOD /template`"
                    ));
                }
            }
        } else if !policy.operations.is_empty() {
            problems.push(
                "policy.operations needs an `openapi` document to name operations".to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(Auth {
                verifiers,
                requirements,
                modes,
                unrouted,
            })
        } else {
            Err(problems)
        }
    }

    /// Stages 3 and 4: the first alternative whose credentials are all present, valid and
    /// carry the required scopes. `Ok(None)` for a public operation.
    pub fn check(
        &self,
        requirement: &Requirement,
        headers: &HeaderMap,
    ) -> Result<Option<Principal>, Rejection> {
        if requirement.is_empty() || requirement.iter().any(Vec::is_empty) {
            return Ok(None);
        }
        let bearer = bearer_token(headers)?;
        let mut missing_scopes: Option<Vec<String>> = None;
        'alternatives: for alternative in requirement {
            let mut principal = Principal::default();
            for (scheme, required) in alternative {
                let Some(verifier) = self.verifiers.get(scheme) else {
                    return Err(Rejection::Internal);
                };
                let Some(token) = bearer else {
                    continue 'alternatives;
                };
                let verified = verifier.verify(token).map_err(|error| {
                    tracing::info!(
                        scheme = &**scheme,
                        reason = error.reason(),
                        "bearer token refused"
                    );
                    match error {
                        JwtError::Expired => Rejection::TokenExpired,
                        _ => Rejection::InvalidToken,
                    }
                })?;
                if let Some(missing) = required.iter().find(|s| !verified.scopes.contains(s)) {
                    tracing::debug!(scheme = &**scheme, missing = %missing, "insufficient scope");
                    missing_scopes.get_or_insert_with(|| required.clone());
                    continue 'alternatives;
                }
                principal.subject = Some(verified.subject.clone());
                principal.scopes = verified.scopes.clone();
            }
            return Ok(Some(principal));
        }
        Err(match missing_scopes {
            Some(scopes) => Rejection::InsufficientScope {
                scope: scopes.join(" "),
            },
            None => Rejection::CredentialsMissing,
        })
    }
}

/// The bearer token, if the request carries one: exactly one `Authorization` header, scheme
/// `Bearer` in any case. Another scheme (Basic) counts as no bearer token; two headers are
/// refused outright, since proxies and servers disagree on which one counts.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidToken);
    }
    let value = value.to_str().map_err(|_| Rejection::InvalidToken)?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection::InvalidToken);
    }
    Ok(Some(token))
}
