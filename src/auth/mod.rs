//! Stages 3 and 4, authenticate and authorize (design §1–§3), against the requirement
//! `policy` resolved for the operation. Each scheme is bound to a verifier here, and a bound
//! scheme must read the credential where the spec says clients send it. Per request,
//! alternatives are tried in order: a credential that is absent moves on to the next
//! alternative, a credential that is present but fails verification ends the request with
//! 401. Identities are never merged across alternatives, and each scheme's scopes are
//! checked against its own credential.

mod alternatives;
pub mod api_key;
mod authenticate;
mod authorize;
mod bind;
mod extract;
pub(crate) mod fuzz;
pub mod live;
mod rules;
mod scopes;
mod upkeep;

pub use self::extract::{strip_credentials, without_query_credentials};
pub mod jwt;
pub mod keystore;
pub(crate) mod store_edit;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use self::api_key::ApiKeyVerifier;
pub use self::api_key::KeyLocation;
pub use self::authenticate::Identity;
use self::jwt::JwtVerifier;
pub use self::scopes::Scopes;
use crate::config::Config;
use crate::ids::Name;
use crate::metrics::Metrics;
use crate::reject::Rejection;
use crate::spec::{Operation, Spec};

/// A bound scheme.
#[derive(Debug)]
pub enum Verifier {
    /// Shared with the previous snapshot when a reload changed nothing it was built from.
    Jwt(Arc<JwtVerifier>),
    ApiKey(Box<ApiKeyVerifier>),
}

impl Verifier {
    /// The scheme `name`: its kind and where it reads its credential.
    fn describe(&self, name: &str) -> String {
        match self {
            Verifier::Jwt(_) => {
                format!("{name}: JWT, from `Authorization: Bearer` (any bearer not shaped moat_…)")
            }
            Verifier::ApiKey(key) => {
                let (place, where_) = key.location.spec_terms();
                let bearer = if key.bearer {
                    " and `Authorization: Bearer moat_…`"
                } else {
                    ""
                };
                let store = key.store();
                if let Some(live) = key.live() {
                    return format!(
                        "{name}: API key, from {place} `{where_}`{bearer} (Redis store, \
                         key_prefix {:?}: {} keys at version {}{})",
                        live.config().key_prefix,
                        store.records.len(),
                        live.version(),
                        if live.synced() {
                            ""
                        } else {
                            "; Redis not reached: every key refused"
                        },
                    );
                }
                let cap = crate::input::Kind::KeyStore.cap() >> 20;
                format!(
                    "{name}: API key, from {place} `{where_}`{bearer} ({} keys; {:.1} MiB of \
                     the {cap} MiB a store may be)",
                    store.records.len(),
                    store.bytes as f64 / f64::from(1 << 20),
                )
            }
        }
    }
}

/// Who the request is, once authenticated and authorised.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<Name>,
    pub key_id: Option<Name>,
    pub scopes: Scopes,
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
        if !config.policy.allow_api_key_in_query_or_cookie {
            problems.extend(rules::keys_outside_headers(&verifiers));
        }
        if let Some(spec) = spec {
            bind::check_bindings(&spec.security_schemes, &verifiers, &mut problems);
        }
        problems.extend(rules::ids_in_two_stores(&verifiers));
        if problems.is_empty() {
            Ok(Auth { verifiers })
        } else {
            Err(problems)
        }
    }

    /// Each scheme's verifier and where it reads its credential, for `moat check`.
    pub fn describe_schemes(&self) -> Vec<String> {
        self.verifiers
            .iter()
            .map(|(name, verifier)| verifier.describe(name))
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

    /// Whether a scheme reading `Authorization: Bearer` holds keys that are not moat-shaped.
    fn reads_legacy_bearer(&self) -> bool {
        self.api_keys()
            .any(|(_, key)| key.bearer && !key.store().legacy.is_empty())
    }

    /// The Redis stores the verifiers hold, for the reload loop to follow.
    pub fn live_stores(&self) -> Vec<Arc<live::LiveKeys>> {
        self.api_keys()
            .filter_map(|(_, verifier)| verifier.live().cloned())
            .collect()
    }

    /// Each API-key scheme's verifier (its store, where it comes from), by scheme name.
    pub fn key_stores(&self) -> impl Iterator<Item = (&str, &ApiKeyVerifier)> {
        self.api_keys()
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

impl<'r> Request<'r> {
    /// Reads the bearer slot. A bearer shaped like a moat key is a key, never a JWT; any
    /// other one never reaches a key verifier (so it is never hashed) — unless a scheme
    /// that reads the bearer slot holds legacy keys (`legacy`), which are not moat-shaped:
    /// then a bearer that cannot be a JWT (no two dots) is a key too.
    fn read(caller: &'r Caller<'r>, legacy: bool) -> Result<Request<'r>, Rejection> {
        let (bearer, bearer_key) = match extract::bearer_token(caller.headers)? {
            Some(token) if keystore::looks_like_key(token) => (None, Some(token)),
            Some(token) if legacy && token.matches('.').count() != 2 => (None, Some(token)),
            token => (token, None),
        };
        Ok(Request {
            caller,
            bearer,
            bearer_key,
        })
    }
}

#[cfg(test)]
mod tests;
