//! Binding schemes to verifiers: one verifier per `auth.schemes` entry (taking over what the
//! previous snapshot's verifier of the same name still holds), and the check that a scheme
//! the spec declares is read where the spec says clients send it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::api_key::{ApiKeyVerifier, KeyLocation};
use super::jwt::JwtVerifier;
use super::keystore::KeyStore;
use super::live::LiveKeys;
use super::{Auth, Verifier};
use crate::config::{ApiKeyConfig, Config, KeySource, SchemeConfig};
use crate::metrics::Metrics;

/// A verifier per configured scheme, and a problem for each that cannot be built. Each
/// takes over what `previous`'s verifier of the same name holds, where still valid.
pub(super) fn verifiers(
    config: &Config,
    metrics: &Arc<Metrics>,
    previous: Option<&Auth>,
) -> (BTreeMap<Arc<str>, Verifier>, Vec<String>) {
    let mut bound = Bound::default();
    let workers = config.limits.hash_workers;
    for (name, scheme) in &config.auth.schemes {
        let before = previous.and_then(|p| p.verifiers.get(name.as_str()));
        let verifier = verifier(scheme, before, workers, metrics);
        bound.add(Arc::from(name.as_str()), verifier);
    }
    (bound.verifiers, bound.problems)
}

/// A scheme's verifier, taking over `before` (the previous snapshot's of the same name):
/// kept whole when it is a `jwks_url` verifier of the same config.
fn verifier(
    scheme: &SchemeConfig,
    before: Option<&Verifier>,
    workers: Option<usize>,
    metrics: &Arc<Metrics>,
) -> Result<Verifier, String> {
    match (scheme, before) {
        (SchemeConfig::Jwt(config), Some(Verifier::Jwt(old))) if old.unchanged_remote(config) => {
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
    }
}

/// The verifiers built so far, and a problem for each scheme that failed.
#[derive(Default)]
struct Bound {
    verifiers: BTreeMap<Arc<str>, Verifier>,
    problems: Vec<String>,
}

impl Bound {
    fn add(&mut self, name: Arc<str>, verifier: Result<Verifier, String>) {
        match verifier {
            Ok(verifier) => {
                self.verifiers.insert(name, verifier);
            }
            Err(problem) => self
                .problems
                .push(format!("auth.schemes.{name}: {problem}")),
        }
    }
}

/// The same verifiers with only their key stores read again: the JWT verifiers are
/// `previous`'s own (their key files are not read). For a reload that failed elsewhere, so
/// a change to a key store — a revocation — still takes effect.
pub(super) fn rebind_key_stores(
    config: &Config,
    metrics: &Arc<Metrics>,
    previous: &Auth,
) -> (BTreeMap<Arc<str>, Verifier>, Vec<String>) {
    let mut bound = Bound::default();
    for (name, before) in &previous.verifiers {
        let verifier = match (before, config.auth.schemes.get(&**name)) {
            (Verifier::Jwt(jwt), _) => Ok(Verifier::Jwt(jwt.clone())),
            (Verifier::ApiKey(_), Some(SchemeConfig::ApiKey(scheme))) => {
                api_key_verifier(scheme, Some(before), config.limits.hash_workers, metrics)
            }
            (Verifier::ApiKey(_), _) => Err("the scheme is no longer an api_key scheme".into()),
        };
        bound.add(name.clone(), verifier);
    }
    (bound.verifiers, bound.problems)
}

/// An API-key scheme's verifier over its store as the file holds it now, taking over the
/// verified keys of `before` (the previous snapshot's verifier of the same name).
fn api_key_verifier(
    config: &ApiKeyConfig,
    before: Option<&Verifier>,
    workers: Option<usize>,
    metrics: &Arc<Metrics>,
) -> Result<Verifier, String> {
    let previous = match before {
        Some(Verifier::ApiKey(old)) => Some(&**old),
        _ => None,
    };
    let new = match &config.store {
        KeySource::File(path) => {
            let store = KeyStore::load(path).map_err(|p| p.join("; "))?;
            ApiKeyVerifier::new(config, store, workers)?
        }
        KeySource::Redis(redis) => {
            // The same store keeps its follower and what it holds; another is read anew.
            let live = match previous.and_then(ApiKeyVerifier::live) {
                Some(live) if live.config() == redis => live.clone(),
                _ => LiveKeys::open(redis)?,
            };
            ApiKeyVerifier::new(config, live.store(), workers)?.with_live(live)
        }
    }
    .with_metrics(metrics.clone());
    Ok(Verifier::ApiKey(Box::new(match previous {
        Some(old) => new.inherit(old),
        None => new,
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
        if let Some(scheme) = declared.get(name.as_ref())
            && let Some(problem) = binding_problem(name, scheme, verifier)
        {
            problems.push(problem);
        }
    }
}

/// What is wrong with binding `verifier` to the spec's declaration `scheme` of `name`.
fn binding_problem(name: &str, scheme: &Value, verifier: &Verifier) -> Option<String> {
    let kind = field(scheme, "type");
    let bearer = (kind == "http" && field(scheme, "scheme").eq_ignore_ascii_case("bearer"))
        || kind == "oauth2"
        || kind == "openIdConnect";
    match verifier {
        Verifier::ApiKey(key) if bearer => (!key.bearer).then(|| {
            format!(
                "auth.schemes.{name}: the spec sends `{name}` as `Authorization: Bearer`; \
                 set `bearer: true` on this api_key scheme to read keys there"
            )
        }),
        Verifier::Jwt(_) => (!bearer).then(|| {
            format!(
                "auth.schemes.{name}: the spec declares `{name}` as `{kind}`, which a JWT \
                 verifier cannot check; bind it to `type: api_key` or fix the spec"
            )
        }),
        Verifier::ApiKey(key) => api_key_binding_problem(name, scheme, kind, &key.location),
    }
}

/// An `apiKey` scheme must be read in the place and under the name the spec gives.
fn api_key_binding_problem(
    name: &str,
    scheme: &Value,
    kind: &str,
    location: &KeyLocation,
) -> Option<String> {
    if kind != "apiKey" {
        return Some(format!(
            "auth.schemes.{name}: the spec declares `{name}` as `{kind}`, not `apiKey`"
        ));
    }
    let (spec_place, param) = (field(scheme, "in"), field(scheme, "name"));
    let (place, configured) = location.spec_terms();
    let same_name = if place == "header" {
        param.eq_ignore_ascii_case(configured)
    } else {
        param == configured
    };
    (spec_place != place || !same_name).then(|| {
        format!(
            "auth.schemes.{name}: the spec sends this key in {spec_place} `{param}`, \
             the config reads {place} `{configured}`; set `{spec_place}: {param}`"
        )
    })
}

/// A string field of a security scheme object; empty when absent.
fn field<'a>(scheme: &'a Value, name: &str) -> &'a str {
    scheme.get(name).and_then(Value::as_str).unwrap_or_default()
}
