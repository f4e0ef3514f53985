//! Stage 3, bearer JWTs (design §3). The library's lax defaults are overridden: algorithms
//! come only from the configured allowlist, `exp`, `sub`, `iss` and `aud` are required,
//! `nbf` is checked, an `iat` in the future is refused, a `crit` header is refused, keys are
//! never taken from the token (`jwk`, `jku`, `x5u`, `x5c` are ignored; `kid` only selects
//! among configured keys), and tokens over 8 KiB are refused unread. Verified tokens are
//! cached by SHA-256 digest until they expire, so signatures are not re-checked per request.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde_json::Value;

use super::Scopes;
use crate::ids::Name;

mod claims;
mod error;
mod keys;
mod refresh;

use self::claims::{check_times, classify, now, numeric_date, scopes, subject};
pub use self::error::JwtError;
use self::keys::{Keys, digest, load_keys};
use self::refresh::JwksSource;
use crate::config::JwtConfig;

pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A verified token's identity.
#[derive(Debug)]
pub struct Verified {
    pub subject: Name,
    pub scopes: Scopes,
    /// `exp` as seconds since the epoch; fractional, as RFC 7519 §2 allows.
    expires: f64,
}

pub struct JwtVerifier {
    /// What this verifier was built from, and a digest of the key file it read: a reload
    /// keeps the verifier (and its cache of verified tokens) while both are unchanged.
    config: JwtConfig,
    material: [u8; 32],
    validation: Validation,
    keys: Keys,
    jwks: Option<JwksSource>,
    scope_claim: String,
    leeway: f64,
    cache: moka::sync::Cache<[u8; 32], Arc<Verified>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, String> {
        let algorithms = algorithms(config)?;
        let Some(&first) = algorithms.first() else {
            return Err("`algorithms` must list at least one algorithm".to_owned());
        };
        let (keys, material) = load_keys(config, &algorithms)?;
        Ok(Self {
            config: config.clone(),
            material,
            validation: validation(config, first, algorithms),
            keys,
            jwks: JwksSource::of(config),
            scope_claim: config.scope_claim.clone(),
            leeway: config.leeway.as_secs_f64(),
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        })
    }

    /// Verifies `token` (the part after `Bearer `).
    pub fn verify(&self, token: &str) -> Result<Arc<Verified>, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let digest = digest(token.as_bytes());
        let now = now();
        if let Some(verified) = self.cache.get(&digest) {
            if now < verified.expires + self.leeway {
                return Ok(verified);
            }
            self.cache.invalidate(&digest);
            return Err(JwtError::Expired);
        }
        let verified = Arc::new(self.verify_uncached(token, now)?);
        self.cache.insert(digest, verified.clone());
        Ok(verified)
    }

    fn verify_uncached(&self, token: &str, now: f64) -> Result<Verified, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwtError::CriticalHeader);
        }
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let claims = self.decode(token, &header)?;
        // `iss` must be a string equal to the issuer (the library also accepts other shapes).
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(JwtError::BadClaims);
        }
        let subject = subject(&claims)?;
        let expires = numeric_date(&claims, "exp")?.ok_or(JwtError::BadClaims)?;
        check_times(
            expires,
            numeric_date(&claims, "nbf")?,
            numeric_date(&claims, "iat")?,
            now,
            self.leeway,
        )?;
        Ok(Verified {
            subject: Name::new(&subject),
            scopes: Scopes::new(scopes(&claims, &self.scope_claim)?),
            expires,
        })
    }

    /// The token's claims, its signature checked with the key its header selects.
    fn decode(&self, token: &str, header: &Header) -> Result<Value, JwtError> {
        let key_set;
        let key = match &self.keys {
            Keys::Single(key) => key,
            Keys::ByKid(keys) => {
                key_set = keys.load();
                header
                    .kid
                    .as_deref()
                    .and_then(|kid| key_set.get(kid))
                    .ok_or(JwtError::UnknownKey)?
            }
        };
        let data = jsonwebtoken::decode::<Value>(token, key, &self.validation).map_err(classify)?;
        Ok(data.claims)
    }

    /// What a reload keeps: `previous` itself when it was built from the same config and
    /// the same key bytes — its token cache and fetched key set stay warm — else `self`.
    /// A `jwks_url` verifier with an unchanged config is kept without fetching (see
    /// [`JwtVerifier::unchanged_remote`]); it refreshes on its own schedule.
    pub fn or_previous(self, previous: &Arc<JwtVerifier>) -> Arc<JwtVerifier> {
        if self.config == previous.config && self.material == previous.material {
            previous.clone()
        } else {
            Arc::new(self)
        }
    }

    /// True when `config` is this `jwks_url` verifier's own: rebuilding it would only fetch
    /// the key set it already holds and keeps fresh.
    pub fn unchanged_remote(&self, config: &JwtConfig) -> bool {
        config.jwks_url.is_some() && self.config == *config
    }

    /// Drops every cached verification (keys changed).
    pub fn clear_cache(&self) {
        self.cache.invalidate_all();
    }
}

/// The configured algorithms, each one moat supports.
fn algorithms(config: &JwtConfig) -> Result<Vec<Algorithm>, String> {
    config
        .algorithms
        .iter()
        .map(|name| {
            name.parse::<Algorithm>()
                .map_err(|_| format!("`{name}` is not a JWT algorithm moat supports"))
        })
        .collect()
}

/// The library's checks, made strict: only the allowed algorithms, the issuer and audience
/// required with `exp` and `sub`.
fn validation(config: &JwtConfig, first: Algorithm, algorithms: Vec<Algorithm>) -> Validation {
    let mut validation = Validation::new(first);
    validation.algorithms = algorithms;
    // `exp`, `nbf` and `iat` are compared here, as the NumericDates RFC 7519 §2 defines
    // (fractional seconds included); the library would round them to whole seconds.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = true;
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&config.audience);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation
}

#[cfg(test)]
mod tests;
