//! Binding schemes to verifiers: one verifier per `auth.schemes` entry (taking over what the
//! previous snapshot's verifier of the same name still holds), and the check that a scheme
//! the spec declares is read where the spec says clients send it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::api_key::ApiKeyVerifier;
use super::jwt::JwtVerifier;
use super::keystore::KeyStore;
use super::{Auth, Verifier};
use crate::config::{ApiKeyConfig, Config, SchemeConfig};
use crate::metrics::Metrics;

/// A verifier per configured scheme, and a problem for each that cannot be built. Each
/// takes over what `previous`'s verifier of the same name holds, where still valid.
pub(super) fn verifiers(
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
            (SchemeConfig::ApiKey(config), before) => {
                api_key_verifier(config, before, workers, metrics)
            }
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

/// The same verifiers with only their key stores read again: the JWT verifiers are
/// `previous`'s own (their key files are not read). For a reload that failed elsewhere, so
/// a change to a key store — a revocation — still takes effect.
pub(super) fn rebind_key_stores(
    config: &Config,
    metrics: &Arc<Metrics>,
    previous: &Auth,
) -> (BTreeMap<Arc<str>, Verifier>, Vec<String>) {
    let mut problems = Vec::new();
    let mut verifiers = BTreeMap::new();
    for (name, before) in &previous.verifiers {
        let verifier = match (before, config.auth.schemes.get(&**name)) {
            (Verifier::Jwt(jwt), _) => Ok(Verifier::Jwt(jwt.clone())),
            (Verifier::ApiKey(_), Some(SchemeConfig::ApiKey(scheme))) => {
                api_key_verifier(scheme, Some(before), config.limits.hash_workers, metrics)
            }
            (Verifier::ApiKey(_), _) => Err("the scheme is no longer an api_key scheme".into()),
        };
        match verifier {
            Ok(verifier) => {
                verifiers.insert(name.clone(), verifier);
            }
            Err(problem) => problems.push(format!("auth.schemes.{name}: {problem}")),
        }
    }
    (verifiers, problems)
}

/// An API-key scheme's verifier over its store as the file holds it now, taking over the
/// verified keys of `before` (the previous snapshot's verifier of the same name).
fn api_key_verifier(
    config: &ApiKeyConfig,
    before: Option<&Verifier>,
    workers: Option<usize>,
    metrics: &Arc<Metrics>,
) -> Result<Verifier, String> {
    let store = KeyStore::load(&config.store).map_err(|p| p.join("; "))?;
    let new = ApiKeyVerifier::new(config, store, workers)?.with_metrics(metrics.clone());
    Ok(Verifier::ApiKey(Box::new(match before {
        Some(Verifier::ApiKey(old)) => new.inherit(old),
        _ => new,
    })))
}

/// A scheme the spec declares must be bound to a verifier that reads the credential where
/// the spec says clients send it; anything else would refuse every well-behaved client or,
/// worse, check something other than what the spec promises.
pub(super) fn check_bindings(
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
        let bearer = (kind == "http" && http_scheme.eq_ignore_ascii_case("bearer"))
            || kind == "oauth2"
            || kind == "openIdConnect";
        match verifier {
            Verifier::ApiKey(key) if bearer => {
                if !key.bearer {
                    problems.push(format!(
                        "auth.schemes.{name}: the spec sends `{name}` as `Authorization: Bearer`; \
                         set `bearer: true` on this api_key scheme to read keys there"
                    ));
                }
            }
            Verifier::Jwt(_) => {
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
