//! Stages 3 and 4, authenticate and authorize (design §1–§3), against the requirement
//! `policy` resolved for the operation. Each scheme is bound to a verifier here, and a bound
//! scheme must read the credential where the spec says clients send it. Per request,
//! alternatives are tried in order: a
//! credential that is absent moves on to the next alternative, a credential that is present
//! but fails verification ends the request with 401. Identities are never merged across
//! alternatives, and each scheme's scopes are checked against its own credential.

pub mod api_key;
pub mod jwt;
pub mod keystore;
pub mod store_edit;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

pub use self::api_key::KeyLocation;
use self::api_key::{ApiKeyVerifier, KeyError};
use self::jwt::{JwtError, JwtVerifier};
use self::keystore::KeyStore;
use crate::config::{Config, RateLimit, SchemeConfig};
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

impl Verifier {
    fn is_bearer(&self) -> bool {
        matches!(self, Verifier::Jwt(_))
    }
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
        verifiers(config, metrics, None).1
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
        let policy = &config.policy;
        let (verifiers, mut problems) = verifiers(config, metrics, previous);
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
            check_bindings(&spec.security_schemes, &verifiers, &mut problems);
        }
        if problems.is_empty() {
            Ok(Auth { verifiers })
        } else {
            Err(problems)
        }
    }

    /// Every key that has its own `rate_limit`: (key id, limit).
    pub fn key_rate_limits(&self) -> Vec<(String, RateLimit)> {
        self.verifiers
            .values()
            .flat_map(|v| match v {
                Verifier::ApiKey(verifier) => verifier.rate_limits(),
                Verifier::Jwt(_) => Vec::new(),
            })
            .collect()
    }

    /// Where API keys travel; each is stripped from forwarded requests (with
    /// `Authorization`) unless `forward_credentials`.
    pub fn credential_locations(&self) -> Vec<KeyLocation> {
        self.verifiers
            .values()
            .filter_map(|v| match v {
                Verifier::ApiKey(verifier) => Some(verifier.location.clone()),
                Verifier::Jwt(_) => None,
            })
            .collect()
    }

    /// Stages 3 and 4: the first alternative whose credentials are all present, valid and
    /// carry the required scopes. `Ok(None)` for a public operation.
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
        let request = Request {
            caller,
            bearer: bearer_token(caller.headers)?,
        };
        let mut missing_scopes: Option<(Vec<String>, bool)> = None;
        'alternatives: for (number, alternative) in requirement.alternatives().iter().enumerate() {
            trail.note(Stage::Authenticate, || {
                format!(
                    "alternative {}: {}",
                    number + 1,
                    crate::policy::describe_alternative(alternative)
                )
            });
            let mut principal = Principal::default();
            for (scheme, required) in alternative {
                let Some(granted) = self
                    .credential(scheme, &request, &mut principal, trail)
                    .await?
                else {
                    continue 'alternatives;
                };
                if required.iter().any(|s| !granted.contains(s)) {
                    trail.note(Stage::Authenticate, || {
                        let missing: Vec<&str> = required
                            .iter()
                            .filter(|s| !granted.contains(s))
                            .map(String::as_str)
                            .collect();
                        format!("  {scheme}: missing scopes [{}]", missing.join(" "))
                    });
                    let bearer = self.verifiers.get(scheme).is_some_and(Verifier::is_bearer);
                    missing_scopes.get_or_insert_with(|| (required.clone(), bearer));
                    continue 'alternatives;
                }
                for scope in granted {
                    if !principal.scopes.contains(&scope) {
                        principal.scopes.push(scope);
                    }
                }
            }
            return Ok(Some(principal));
        }
        Err(match missing_scopes {
            Some((scopes, bearer)) => Rejection::InsufficientScope {
                scope: scopes.join(" "),
                bearer,
            },
            None => Rejection::CredentialsMissing,
        })
    }

    /// One scheme's credential: `Ok(None)` when the request carries none (try the next
    /// alternative), its scopes when valid, a final rejection when present but invalid.
    async fn credential(
        &self,
        scheme: &Arc<str>,
        request: &Request<'_>,
        principal: &mut Principal,
        trail: &mut Trail,
    ) -> Result<Option<Vec<String>>, Rejection> {
        match self.verifiers.get(scheme) {
            Some(Verifier::Jwt(verifier)) => {
                let Some(token) = request.bearer else {
                    trail.note(Stage::Authenticate, || {
                        format!("  {scheme}: no bearer token; next alternative")
                    });
                    return Ok(None);
                };
                let mut verified = verifier.verify(token);
                // An unknown `kid` may be a key the provider just rotated in.
                if verified.as_ref().is_err_and(|e| *e == JwtError::UnknownKey)
                    && verifier.refresh().await
                {
                    verified = verifier.verify(token);
                }
                let verified = verified.map_err(|error| {
                    trail.note(Stage::Authenticate, || {
                        format!("  {scheme}: token refused: {}", error.reason())
                    });
                    tracing::info!(
                        request_id = request.caller.request_id,
                        scheme = &**scheme,
                        reason = error.reason(),
                        "bearer token refused"
                    );
                    Rejection::from(error)
                })?;
                principal.subject = Some(verified.subject.clone());
                trail.note(Stage::Authenticate, || {
                    format!(
                        "  {scheme}: valid token, subject `{}`, scopes [{}]",
                        verified.subject,
                        verified.scopes.join(" ")
                    )
                });
                Ok(Some(verified.scopes.clone()))
            }
            Some(Verifier::ApiKey(verifier)) => {
                let Some(key) = api_key(request, &verifier.location)? else {
                    trail.note(Stage::Authenticate, || {
                        format!("  {scheme}: no API key; next alternative")
                    });
                    return Ok(None);
                };
                let record =
                    verifier
                        .verify(&key, request.caller.client)
                        .await
                        .map_err(|error| {
                            trail.note(Stage::Authenticate, || {
                                format!("  {scheme}: key refused: {}", error.reason())
                            });
                            // The id of a well-formed key is not a secret; the rest of it is.
                            tracing::info!(
                                request_id = request.caller.request_id,
                                key_id = keystore::parse_key(&key).unwrap_or("-"),
                                scheme = &**scheme,
                                reason = error.reason(),
                                "API key refused"
                            );
                            match error {
                                KeyError::Overloaded => Rejection::Overloaded,
                                KeyError::Fault => Rejection::Internal(Stage::Authenticate),
                                _ => Rejection::InvalidApiKey,
                            }
                        })?;
                if !allows(&record, request.caller.operation) {
                    trail.note(Stage::Authenticate, || {
                        format!(
                            "  {scheme}: key `{}` may not call this operation",
                            record.id
                        )
                    });
                    tracing::info!(
                        request_id = request.caller.request_id,
                        key_id = %record.id,
                        "operation not in the key's allowlist"
                    );
                    return Err(Rejection::OperationNotAllowed);
                }
                trail.note(Stage::Authenticate, || {
                    format!(
                        "  {scheme}: valid key `{}`, scopes [{}]",
                        record.id,
                        record.scopes.join(" ")
                    )
                });
                principal.key_id = Some(record.id.clone());
                if principal.subject.is_none() {
                    principal.subject = record.owner.clone();
                }
                Ok(Some(record.scopes.clone()))
            }
            None => Err(Rejection::Internal(Stage::Authenticate)),
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

/// A caller and its bearer token, read once.
struct Request<'r> {
    caller: &'r Caller<'r>,
    bearer: Option<&'r str>,
}

/// A key's `operations` allowlist admits the operation (by operationId or `METHOD /template`).
fn allows(record: &keystore::KeyRecord, operation: Option<&Operation>) -> bool {
    let (Some(allowed), Some(operation)) = (&record.operations, operation) else {
        return true;
    };
    let long_name = operation.long_name();
    allowed
        .iter()
        .any(|o| **o == *operation.id || *o == long_name)
}

/// A verifier per configured scheme, and a problem for each that cannot be built. Each
/// takes over what `previous`'s verifier of the same name holds, where still valid.
fn verifiers(
    config: &Config,
    metrics: &Arc<Metrics>,
    previous: Option<&Auth>,
) -> (BTreeMap<Arc<str>, Verifier>, Vec<String>) {
    let mut problems = Vec::new();
    let mut verifiers = BTreeMap::new();
    let workers = config.limits.hash_workers;
    for (name, scheme) in &config.auth.schemes {
        let before = previous.and_then(|p| p.verifiers.get(name.as_str()));
        let verifier = match (scheme, before) {
            (SchemeConfig::Jwt(config), Some(Verifier::Jwt(old)))
                if old.unchanged_remote(config) =>
            {
                Ok(Verifier::Jwt(old.clone()))
            }
            (SchemeConfig::Jwt(config), before) => JwtVerifier::new(config).map(|new| {
                Verifier::Jwt(match before {
                    Some(Verifier::Jwt(old)) => new.or_previous(old),
                    _ => Arc::new(new),
                })
            }),
            (SchemeConfig::ApiKey(config), before) => KeyStore::load(&config.store)
                .map_err(|p| p.join("; "))
                .and_then(|store| ApiKeyVerifier::new(config, store, workers))
                .map(|new| {
                    let new = new.with_metrics(metrics.clone());
                    Verifier::ApiKey(Box::new(match before {
                        Some(Verifier::ApiKey(old)) => new.inherit(old),
                        _ => new,
                    }))
                }),
        };
        match verifier {
            Ok(verifier) => {
                verifiers.insert(Arc::from(name.as_str()), verifier);
            }
            Err(problem) => problems.push(format!("auth.schemes.{name}: {problem}")),
        }
    }
    (verifiers, problems)
}

/// A scheme the spec declares must be bound to a verifier that reads the credential where
/// the spec says clients send it; anything else would refuse every well-behaved client or,
/// worse, check something other than what the spec promises.
fn check_bindings(
    declared: &serde_json::Map<String, serde_json::Value>,
    verifiers: &BTreeMap<Arc<str>, Verifier>,
    problems: &mut Vec<String>,
) {
    for (name, verifier) in verifiers {
        let Some(scheme) = declared.get(name.as_ref()) else {
            continue;
        };
        let kind = scheme
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        let http_scheme = scheme
            .get("scheme")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        match verifier {
            Verifier::Jwt(_) => {
                let bearer = (kind == "http" && http_scheme.eq_ignore_ascii_case("bearer"))
                    || kind == "oauth2"
                    || kind == "openIdConnect";
                if !bearer {
                    problems.push(format!(
                        "auth.schemes.{name}: the spec declares `{name}` as `{kind}`, which a JWT \
                         verifier cannot check; bind it to `type: api_key` or fix the spec"
                    ));
                }
            }
            Verifier::ApiKey(key) => {
                let location = scheme
                    .get("in")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                let param = scheme
                    .get("name")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                let (place, configured) = key.location.spec_terms();
                let same_name = if place == "header" {
                    param.eq_ignore_ascii_case(configured)
                } else {
                    param == configured
                };
                if kind != "apiKey" {
                    problems.push(format!(
                        "auth.schemes.{name}: the spec declares `{name}` as `{kind}`, not `apiKey`"
                    ));
                } else if location != place || !same_name {
                    problems.push(format!(
                        "auth.schemes.{name}: the spec sends this key in {location} `{param}`, \
                         the config reads {place} `{configured}`; set `{location}: {param}`"
                    ));
                }
            }
        }
    }
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

/// The API key where `location` says: exactly one value, or refused.
fn api_key<'r>(
    request: &Request<'r>,
    location: &KeyLocation,
) -> Result<Option<Cow<'r, str>>, Rejection> {
    let values: Vec<Cow<'r, str>> = match location {
        KeyLocation::Header(name) => request
            .caller
            .headers
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str()
                    .map(Cow::Borrowed)
                    .map_err(|_| Rejection::InvalidApiKey)
            })
            .collect::<Result<_, _>>()?,
        KeyLocation::Query(name) => {
            form_urlencoded::parse(request.caller.query.unwrap_or("").as_bytes())
                .filter(|(key, _)| key == name)
                .map(|(_, value)| Cow::Owned(value.into_owned()))
                .collect()
        }
        KeyLocation::Cookie(name) => crate::validate::params::cookies(request.caller.headers)
            .into_iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| Cow::Borrowed(value))
            .collect(),
    };
    match values.len() {
        0 => Ok(None),
        1 => Ok(values.into_iter().next()),
        _ => Err(Rejection::InvalidApiKey),
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
