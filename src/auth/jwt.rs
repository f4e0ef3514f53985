//! Stage 3, bearer JWTs (design §3). The library's lax defaults are overridden: algorithms
//! come only from the configured allowlist, `exp`, `sub`, `iss` and `aud` are required,
//! `nbf` is checked, an `iat` in the future is refused, a `crit` header is refused, keys are
//! never taken from the token (`jwk`, `jku`, `x5u`, `x5c` are ignored; `kid` only selects
//! among configured keys), and tokens over 8 KiB are refused unread. Verified tokens are
//! cached by SHA-256 digest until they expire, so signatures are not re-checked per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

mod claims;
mod keys;

use self::claims::{check_times, classify, now, numeric_date, scopes};
use self::keys::{Keys, digest, load_keys, parse_jwks};
use crate::config::JwtConfig;
use crate::reject::Rejection;

pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused: for the log only; the client learns `invalid_token` or
/// `token_expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed,
    AlgorithmNotAllowed,
    CriticalHeader,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadClaims,
}

impl JwtError {
    pub fn reason(self) -> &'static str {
        match self {
            JwtError::TooLarge => "token larger than 8 KiB",
            JwtError::Malformed => "malformed token",
            JwtError::AlgorithmNotAllowed => "algorithm not allowed",
            JwtError::CriticalHeader => "crit header",
            JwtError::UnknownKey => "unknown key",
            JwtError::BadSignature => "bad signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not yet valid",
            JwtError::IssuedInFuture => "issued in the future",
            JwtError::BadClaims => "missing or invalid claims",
        }
    }
}

/// The client learns only "invalid" or "expired"; the reason goes to the log.
impl From<JwtError> for Rejection {
    fn from(error: JwtError) -> Rejection {
        match error {
            JwtError::Expired => Rejection::TokenExpired,
            JwtError::TooLarge
            | JwtError::Malformed
            | JwtError::AlgorithmNotAllowed
            | JwtError::CriticalHeader
            | JwtError::UnknownKey
            | JwtError::BadSignature
            | JwtError::NotYetValid
            | JwtError::IssuedInFuture
            | JwtError::BadClaims => Rejection::InvalidToken,
        }
    }
}

/// A verified token's identity.
#[derive(Debug)]
pub struct Verified {
    pub subject: String,
    pub scopes: Vec<String>,
    /// `exp` as seconds since the epoch; fractional, as RFC 7519 §2 allows.
    expires: f64,
}

/// Where a fetched key set comes from, and when it was last tried and loaded.
struct JwksSource {
    url: String,
    refresh_every: Duration,
    /// An unknown `kid` triggers at most one fetch per this interval, so a stream of forged
    /// `kid`s cannot turn moat into a load generator against the identity provider.
    min_interval: Duration,
    last_attempt: Mutex<Instant>,
    last_loaded: Mutex<Instant>,
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
        let algorithms = config
            .algorithms
            .iter()
            .map(|name| {
                name.parse::<Algorithm>()
                    .map_err(|_| format!("`{name}` is not a JWT algorithm moat supports"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(&first) = algorithms.first() else {
            return Err("`algorithms` must list at least one algorithm".to_owned());
        };
        let (keys, material) = load_keys(config, &algorithms)?;
        let jwks = config.jwks_url.as_ref().map(|url| JwksSource {
            url: url.clone(),
            refresh_every: config.jwks_refresh,
            min_interval: config.jwks_min_refresh,
            last_attempt: Mutex::new(Instant::now()),
            last_loaded: Mutex::new(Instant::now()),
        });
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
        Ok(Self {
            config: config.clone(),
            material,
            validation,
            keys,
            jwks,
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
        let claims = data.claims;
        // `iss` must be a string equal to the issuer (the library also accepts other shapes).
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(JwtError::BadClaims);
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            // It is forwarded as `X-Moat-Subject`: it must fit a header.
            .filter(|s| !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control))
            .ok_or(JwtError::BadClaims)?
            .to_owned();
        let expires = numeric_date(&claims, "exp")?.ok_or(JwtError::BadClaims)?;
        check_times(
            expires,
            numeric_date(&claims, "nbf")?,
            numeric_date(&claims, "iat")?,
            now,
            self.leeway,
        )?;
        Ok(Verified {
            subject,
            scopes: scopes(&claims, &self.scope_claim)?,
            expires,
        })
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

    /// True when a `jwks_url` set is older than `jwks_refresh`.
    pub fn refresh_due(&self) -> bool {
        self.jwks
            .as_ref()
            .is_some_and(|source| lock(&source.last_loaded).elapsed() >= source.refresh_every)
    }

    /// Fetches the `jwks_url` set again, at most once per `jwks_min_refresh`; keeps the last
    /// good set when the fetch or the set is bad. True when new keys were loaded.
    pub async fn refresh(&self) -> bool {
        let (Some(source), Keys::ByKid(keys)) = (&self.jwks, &self.keys) else {
            return false;
        };
        {
            let mut last = lock(&source.last_attempt);
            if last.elapsed() < source.min_interval {
                return false;
            }
            *last = Instant::now();
        }
        // One attempt, briefly: this may run on a request's path (an unknown `kid`).
        let attempt =
            crate::fetch::fetch_async(&source.url, Duration::ZERO, crate::input::Kind::KeyMaterial);
        let fetched = tokio::time::timeout(Duration::from_secs(3), attempt)
            .await
            .unwrap_or_else(|_| Err("no answer within 3s".to_owned()));
        let parsed = fetched.and_then(|bytes| {
            let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
            parse_jwks(&text, &source.url)
        });
        match parsed {
            Ok(set) => {
                keys.store(Arc::new(set));
                *lock(&source.last_loaded) = Instant::now();
                self.clear_cache();
                tracing::info!(url = %source.url, "JWKS refreshed");
                true
            }
            Err(error) => {
                tracing::warn!(url = %source.url, error = %error, "JWKS refresh failed; keeping the last good set");
                false
            }
        }
    }
}

fn lock(mutex: &Mutex<Instant>) -> std::sync::MutexGuard<'_, Instant> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
