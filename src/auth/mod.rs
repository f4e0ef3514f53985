//! Stages 3 and 4, authenticate and authorize (design §1–§3), against the requirement
//! `policy` resolved for the operation. Each scheme is bound to a verifier here, and a bound
//! scheme must read the credential where the spec says clients send it. Per request,
//! alternatives are tried in order: a credential that is absent moves on to the next
//! alternative, a credential that is present but fails verification ends the request with
//! 401. Identities are never merged across alternatives, and each scheme's scopes are
//! checked against its own credential.

pub mod api_key;
mod authenticate;
mod authorize;
mod bind;
mod extract;

pub use self::extract::{strip_credentials, without_query_credentials};
pub mod jwt;
pub mod keystore;
pub mod store_edit;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use self::api_key::ApiKeyVerifier;
pub use self::api_key::KeyLocation;
pub use self::authenticate::Identity;
use self::authenticate::{Outcome, bearer, key};
use self::authorize::{Denied, authorize};
use self::jwt::JwtVerifier;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::Requirement;
use crate::reject::{Rejection, Stage};
use crate::spec::{Operation, Spec};
use crate::trail::Trail;

/// A bound scheme.
#[derive(Debug)]
pub enum Verifier {
    /// Shared with the previous snapshot when a reload changed nothing it was built from.
    Jwt(Arc<JwtVerifier>),
    ApiKey(Box<ApiKeyVerifier>),
}

/// A key is named by its id alone wherever it is counted or reported — rate limits, quotas,
/// token budgets (in memory and in Redis), the access log, metrics — so one id in two
/// different stores would make one key spend the other's limits. Two schemes reading the
/// same store file share its keys, and that is fine.
fn ids_in_two_stores(verifiers: &BTreeMap<Arc<str>, Verifier>) -> Vec<String> {
    let mut owners: BTreeMap<&str, (&str, std::path::PathBuf)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (scheme, verifier) in verifiers {
        let Verifier::ApiKey(key) = verifier else {
            continue;
        };
        let path = key.store_path();
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut ids: Vec<&String> = key.store().records.keys().collect();
        ids.sort_unstable();
        for id in ids {
            match owners.get(id.as_str()) {
                Some((other, other_file)) if *other_file != file => problems.push(format!(
                    "key id `{id}` is in two key stores, auth.schemes.{other} ({}) and \
                     auth.schemes.{scheme} ({}): limits, quotas, token budgets, the access log \
                     and metrics name a key by its id, so one key would spend the other's; give \
                     one of them another id (`moat keys rotate {id} --new-id NEW --store …`)",
                    other_file.display(),
                    path.display()
                )),
                Some(_) => {}
                None => {
                    owners.insert(id, (scheme, file.clone()));
                }
            }
        }
    }
    problems
}

/// Who the request is, once authenticated and authorised.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<String>,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
}

/// The verifier bound to each scheme name.
#[derive(Debug)]
pub struct Auth {
    verifiers: BTreeMap<Arc<str>, Verifier>,
}

impl Auth {
    /// The problems of the schemes alone (key stores, key files, JWKS): what can still be
    /// checked when the spec they would be bound to failed to load.
    pub fn check_schemes(config: &Config, metrics: &Arc<Metrics>) -> Vec<String> {
        bind::verifiers(config, metrics, None).1
    }

    /// Builds the verifiers and checks how they bind to the spec's schemes; reports all
    /// problems at once. What `previous` (the serving snapshot's) built from unchanged
    /// definitions is carried over: verified keys and tokens.
    pub fn load(
        config: &Config,
        spec: Option<&Spec>,
        metrics: &Arc<Metrics>,
        previous: Option<&Auth>,
    ) -> Result<Auth, Vec<String>> {
        let (verifiers, problems) = bind::verifiers(config, metrics, previous);
        Self::checked(verifiers, problems, config, spec)
    }

    /// `self` with its key stores read again and nothing else (see
    /// [`Snapshot::with_key_stores`](crate::snapshot::Snapshot::with_key_stores)).
    pub fn with_key_stores(
        &self,
        config: &Config,
        spec: Option<&Spec>,
        metrics: &Arc<Metrics>,
    ) -> Result<Auth, Vec<String>> {
        let (verifiers, problems) = bind::rebind_key_stores(config, metrics, self);
        Self::checked(verifiers, problems, config, spec)
    }

    /// The rules verifiers must meet together and with the spec they are bound to.
    fn checked(
        verifiers: BTreeMap<Arc<str>, Verifier>,
        mut problems: Vec<String>,
        config: &Config,
        spec: Option<&Spec>,
    ) -> Result<Auth, Vec<String>> {
        let policy = &config.policy;
        for (name, verifier) in &verifiers {
            if let Verifier::ApiKey(key) = verifier
                && !matches!(key.location, KeyLocation::Header(_))
                && !policy.allow_api_key_in_query_or_cookie
            {
                let (place, _) = key.location.spec_terms();
                problems.push(format!(
                    "auth.schemes.{name}: API keys in the {place} leak into access logs, proxies \
                     and browser history; read them from a header, or set \
                     `policy.allow_api_key_in_query_or_cookie: true` to accept that"
                ));
            }
        }
        if let Some(spec) = spec {
            bind::check_bindings(&spec.security_schemes, &verifiers, &mut problems);
        }
        problems.extend(ids_in_two_stores(&verifiers));
        if problems.is_empty() {
            Ok(Auth { verifiers })
        } else {
            Err(problems)
        }
    }

    /// An alternative that needs a bearer JWT and a key read from the bearer slot can never
    /// pass: one `Authorization` header carries one of them. A problem per such alternative.
    pub fn check_routes(&self, routes: &crate::policy::Routes) -> Vec<String> {
        let mut problems = Vec::new();
        for route in routes.all() {
            for alternative in route.requirement.alternatives() {
                let kind = |wanted_jwt: bool| {
                    alternative
                        .iter()
                        .find(|(scheme, _)| match self.verifiers.get(scheme) {
                            Some(Verifier::Jwt(_)) => wanted_jwt,
                            Some(Verifier::ApiKey(key)) => !wanted_jwt && key.bearer,
                            None => false,
                        })
                };
                if let (Some((jwt, _)), Some((key, _))) = (kind(true), kind(false)) {
                    let problem = format!(
                        "the requirement `{}` needs the JWT `{jwt}` and the key `{key}` together, \
                         but both are read from the one `Authorization: Bearer` header; put them \
                         in two alternatives, or set `bearer: false` on `{key}` (clients then \
                         send the key in its header)",
                        crate::policy::describe_alternative(alternative)
                    );
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                }
            }
        }
        problems
    }

    /// Each scheme's verifier and where it reads its credential, for `moat check`.
    pub fn describe_schemes(&self) -> Vec<String> {
        self.verifiers
            .iter()
            .map(|(name, verifier)| match verifier {
                Verifier::Jwt(_) => {
                    format!(
                        "{name}: JWT, from `Authorization: Bearer` (any bearer not shaped moat_…)"
                    )
                }
                Verifier::ApiKey(key) => {
                    let (place, where_) = key.location.spec_terms();
                    let bearer = if key.bearer {
                        " and `Authorization: Bearer moat_…`"
                    } else {
                        ""
                    };
                    format!(
                        "{name}: API key, from {place} `{where_}`{bearer} ({} keys)",
                        key.store().records.len()
                    )
                }
            })
            .collect()
    }

    /// Each API-key scheme's verifier, by scheme name.
    fn api_keys(&self) -> impl Iterator<Item = (&str, &ApiKeyVerifier)> {
        self.verifiers
            .iter()
            .filter_map(|(name, verifier)| match verifier {
                Verifier::ApiKey(verifier) => Some((&**name, &**verifier)),
                Verifier::Jwt(_) => None,
            })
    }

    /// Each API-key scheme's loaded store, by scheme name.
    pub fn key_stores(&self) -> impl Iterator<Item = (&str, &keystore::KeyStore)> {
        self.api_keys()
            .map(|(name, verifier)| (name, verifier.store()))
    }

    /// Re-reads every key store (blocking: call it off the runtime), so an unchanged store
    /// stays fresh and one that can't be read ages toward its `max_store_age`. True when a
    /// store's file changed, which a reload then picks up.
    pub fn reread_key_stores(&self) -> bool {
        let mut changed = false;
        for (scheme, verifier) in self.api_keys() {
            match verifier.reread_store() {
                Ok(same) => changed |= !same,
                Err(problems) => {
                    let age = verifier.store().age();
                    let stale = verifier.staleness().is_some();
                    tracing::warn!(
                        scheme,
                        problems = problems.join("; "),
                        age_seconds = age.as_secs(),
                        stale,
                        "cannot re-read the key store; the last good one serves{}",
                        if stale {
                            ", but past max_store_age: every key is refused with 503"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        changed
    }

    /// The first API-key scheme whose store is past its `max_store_age`: (scheme, age, max).
    pub fn stale_key_store(&self) -> Option<(&str, std::time::Duration, std::time::Duration)> {
        self.api_keys().find_map(|(scheme, verifier)| {
            let (age, max) = verifier.staleness()?;
            Some((scheme, age, max))
        })
    }

    /// How often to re-read the key stores: four times per the smallest `max_store_age`
    /// (at least every second), else every 30 s.
    pub fn reread_interval(&self) -> std::time::Duration {
        self.api_keys()
            .filter_map(|(_, verifier)| verifier.max_store_age())
            .map(|max| (max / 4).max(std::time::Duration::from_secs(1)))
            .min()
            .unwrap_or(std::time::Duration::from_secs(30))
    }

    /// Every key record of every store (a store two schemes read is listed twice).
    pub fn records(&self) -> impl Iterator<Item = &keystore::KeyRecord> {
        self.api_keys()
            .flat_map(|(_, verifier)| verifier.store().records.values().map(|r| &**r))
    }

    /// Where API keys travel; each is stripped from forwarded requests (with
    /// `Authorization`) unless `forward_credentials`.
    pub fn credential_locations(&self) -> Vec<KeyLocation> {
        self.api_keys()
            .map(|(_, verifier)| verifier.location.clone())
            .collect()
    }

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
        // A bearer shaped like a moat key is a key, never a JWT; any other one never
        // reaches a key verifier (so it is never hashed).
        let (bearer, bearer_key) = match extract::bearer_token(caller.headers)? {
            Some(token) if keystore::looks_like_key(token) => (None, Some(token)),
            token => (token, None),
        };
        let request = Request {
            caller,
            bearer,
            bearer_key,
        };
        // The first credential found short of scopes: the 403's scopes and whose it was.
        let mut missing_scopes: Option<(Vec<String>, Identity)> = None;
        'alternatives: for (number, alternative) in requirement.alternatives().iter().enumerate() {
            trail.note(Stage::Authenticate, || {
                format!(
                    "alternative {}: {}",
                    number + 1,
                    crate::policy::describe_alternative(alternative)
                )
            });
            // Identities are joined only within one alternative (its schemes are ANDed).
            let mut principal = Principal::default();
            for (scheme, required) in alternative {
                let identity = match self.authenticate(scheme, &request, trail).await {
                    Outcome::Absent => continue 'alternatives,
                    Outcome::Refused { rejection, .. } => return Err(rejection),
                    Outcome::Valid(identity) => identity,
                };
                match authorize(&identity, required, caller.operation) {
                    Ok(()) => principal.absorb(identity),
                    Err(Denied::OperationNotAllowed) => {
                        name_refused_caller(trail, &identity);
                        let key = identity.key_id.as_deref().unwrap_or("-");
                        trail.note(Stage::Authorize, || {
                            format!("  {scheme}: key `{key}` may not call this operation")
                        });
                        tracing::info!(
                            request_id = caller.request_id,
                            key_id = key,
                            "operation not in the key's allowlist"
                        );
                        return Err(Rejection::OperationNotAllowed);
                    }
                    Err(Denied::MissingScopes(missing)) => {
                        trail.note(Stage::Authorize, || {
                            format!("  {scheme}: missing scopes [{}]", missing.join(" "))
                        });
                        missing_scopes.get_or_insert_with(|| (required.clone(), identity));
                        continue 'alternatives;
                    }
                }
            }
            return Ok(Some(principal));
        }
        Err(match missing_scopes {
            Some((scopes, identity)) => {
                name_refused_caller(trail, &identity);
                Rejection::InsufficientScope {
                    scope: scopes.join(" "),
                    bearer: identity.bearer,
                }
            }
            None => Rejection::CredentialsMissing,
        })
    }

    /// One scheme's verdict on the request, in Oathkeeper's terms.
    async fn authenticate(
        &self,
        scheme: &Arc<str>,
        request: &Request<'_>,
        trail: &mut Trail,
    ) -> Outcome {
        let outcome = match self.verifiers.get(scheme) {
            Some(Verifier::Jwt(verifier)) => bearer(verifier, request).await,
            Some(Verifier::ApiKey(verifier)) => key(verifier, request).await,
            None => Outcome::Refused {
                rejection: Rejection::Internal(Stage::Authenticate),
                credential: "scheme",
                reason: "not bound",
            },
        };
        trail.note(Stage::Authenticate, || match &outcome {
            Outcome::Absent => format!(
                "  {scheme}: no {}; next alternative",
                match self.verifiers.get(scheme) {
                    Some(Verifier::Jwt(_)) => "bearer token",
                    _ => "API key",
                }
            ),
            Outcome::Refused {
                credential, reason, ..
            } => format!("  {scheme}: {credential} refused: {reason}"),
            Outcome::Valid(identity) => match &identity.key_id {
                Some(id) => format!(
                    "  {scheme}: valid key `{id}`, scopes [{}]",
                    identity.scopes.join(" ")
                ),
                None => format!(
                    "  {scheme}: valid token, subject `{}`, scopes [{}]",
                    identity.subject.as_deref().unwrap_or("-"),
                    identity.scopes.join(" ")
                ),
            },
        });
        outcome
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
        for scope in identity.scopes {
            if !self.scopes.contains(&scope) {
                self.scopes.push(scope);
            }
        }
    }
}

/// What stages 3–4 read from a request, and the request id their log lines carry.
pub struct Caller<'r> {
    pub headers: &'r HeaderMap,
    pub query: Option<&'r str>,
    pub client: IpAddr,
    pub operation: Option<&'r Operation>,
    pub request_id: &'r str,
}

/// A caller and its `Authorization: Bearer` value, read once: a token for the JWT
/// verifiers, or a key for the api_key verifiers that read the bearer slot.
struct Request<'r> {
    caller: &'r Caller<'r>,
    bearer: Option<&'r str>,
    bearer_key: Option<&'r str>,
}

impl Auth {
    /// Refreshes every `jwks_url` key set that is due (called periodically).
    pub async fn refresh_key_sets(&self) {
        for verifier in self.verifiers.values() {
            if let Verifier::Jwt(jwt) = verifier
                && jwt.refresh_due()
            {
                jwt.refresh().await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
