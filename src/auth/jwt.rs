//! Stage 3, bearer JWTs (design §3). The library's lax defaults are overridden: algorithms
//! come only from the configured allowlist, `exp`, `sub`, `iss` and `aud` are required,
//! `nbf` is checked, an `iat` in the future is refused, a `crit` header is refused, keys are
//! never taken from the token (`jwk`, `jku`, `x5u`, `x5c` are ignored; `kid` only selects
//! among configured keys), and tokens over 8 KiB are refused unread. Verified tokens are
//! cached by SHA-256 digest until they expire, so signatures are not re-checked per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

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

enum Keys {
    /// One key (`public_key_file` or `secret`): every allowed algorithm of its family.
    Single(DecodingKey),
    /// A JWKS: a token's `kid` picks the key. Swapped whole when a `jwks_url` refreshes.
    ByKid(ArcSwap<HashMap<String, DecodingKey>>),
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
        let attempt = crate::fetch::fetch_async(&source.url, Duration::ZERO);
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

/// Scopes from the configured claim, space-separated (`scope`) or an array (`scp`).
fn scopes(claims: &Value, claim: &str) -> Result<Vec<String>, JwtError> {
    let value = claims.get(claim).or_else(|| claims.get("scp"));
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(JwtError::BadClaims))
            .collect(),
        Some(_) => Err(JwtError::BadClaims),
    }
}

fn classify(error: jsonwebtoken::errors::Error) -> JwtError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidAlgorithm => JwtError::AlgorithmNotAllowed,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => JwtError::Malformed,
        // The library's kind is `#[non_exhaustive]`; anything else is a claim it refused.
        _ => JwtError::BadClaims,
    }
}

/// The configured keys, and a digest of the bytes they were read from (zero for `secret`,
/// which the config comparison already covers).
fn load_keys(config: &JwtConfig, algorithms: &[Algorithm]) -> Result<(Keys, [u8; 32]), String> {
    let hmac = algorithms
        .iter()
        .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let sources = [
        config.secret.is_some(),
        config.public_key_file.is_some(),
        config.jwks_file.is_some(),
        config.jwks_url.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(
            "give exactly one of `secret`, `public_key_file`, `jwks_file` and `jwks_url`"
                .to_owned(),
        );
    }
    if let Some(secret) = &config.secret {
        if algorithms
            .iter()
            .any(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err("`secret` keys only verify HS256/HS384/HS512; list only those".to_owned());
        }
        if secret.expose().len() < 32 {
            return Err("`secret` must be at least 32 bytes".to_owned());
        }
        return DecodingKey::from_secret(secret.expose().as_bytes())
            .map(|key| (Keys::Single(key), [0; 32]))
            .map_err(|e| format!("`secret`: {e}"));
    }
    if hmac {
        // An HMAC algorithm next to a public key is the classic confusion attack.
        return Err("HS* algorithms need `secret`; do not mix them with public keys".to_owned());
    }
    if let Some(path) = &config.public_key_file {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let family = algorithms[0];
        let key = match family {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            _ => DecodingKey::from_rsa_pem(&pem),
        };
        return key
            .map(|key| (Keys::Single(key), digest(&pem)))
            .map_err(|e| {
                format!(
                    "{}: not a {family:?} public key in PEM: {e}",
                    path.display()
                )
            });
    }
    if let Some(url) = &config.jwks_url {
        if !url.starts_with("http://") {
            return Err(format!(
                "`jwks_url` ({url}) must be http:// (a sidecar neighbour)"
            ));
        }
        let bytes = crate::fetch::fetch(url, Duration::from_secs(30))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{url}: not UTF-8"))?;
        return parse_jwks(&text, url).map(|set| {
            (
                Keys::ByKid(ArcSwap::from_pointee(set)),
                digest(text.as_bytes()),
            )
        });
    }
    let path = config.jwks_file.as_ref().ok_or("no key source")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_jwks(&text, &path.display().to_string()).map(|set| {
        (
            Keys::ByKid(ArcSwap::from_pointee(set)),
            digest(text.as_bytes()),
        )
    })
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A JWKS document → keys by `kid` (every key needs one).
fn parse_jwks(text: &str, origin: &str) -> Result<HashMap<String, DecodingKey>, String> {
    let set: JwkSet =
        serde_json::from_str(text).map_err(|e| format!("{origin}: not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            return Err(format!("{origin}: every key needs a `kid`"));
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{origin}: key `{kid}`: {e}"))?;
        keys.insert(kid, key);
    }
    if keys.is_empty() {
        return Err(format!("{origin}: the key set is empty"));
    }
    Ok(keys)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A NumericDate claim (RFC 7519 §2: seconds since the epoch, any JSON number): `None` when
/// absent; refused when it is not a finite number in `0..2^64`.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<f64>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    // serde_json has no infinities or NaN, but a huge literal can still overflow to one.
    let seconds = value.as_f64().ok_or(JwtError::BadClaims)?;
    if !seconds.is_finite() || seconds < 0.0 || seconds >= u64::MAX as f64 {
        return Err(JwtError::BadClaims);
    }
    Ok(Some(seconds))
}

/// The time rules: valid while `now < exp + leeway`, from `nbf - leeway` on, and not
/// issued more than `leeway` in the future.
fn check_times(
    expires: f64,
    not_before: Option<f64>,
    issued_at: Option<f64>,
    now: f64,
    leeway: f64,
) -> Result<(), JwtError> {
    if now >= expires + leeway {
        return Err(JwtError::Expired);
    }
    if not_before.is_some_and(|nbf| now < nbf - leeway) {
        return Err(JwtError::NotYetValid);
    }
    if issued_at.is_some_and(|iat| iat > now + leeway) {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
