//! `moat token`: a test JWT signed with the configured HMAC `secret`, so the first request
//! with a bearer token does not need an identity provider. Only for HS* schemes: tokens for
//! public-key schemes come from the identity provider that holds the private key.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::config::{Config, JwtConfig, SchemeConfig, Secret, choose_scheme, mentions_placeholder};

/// What goes into the token.
#[derive(Debug)]
pub struct Claims<'a> {
    pub subject: &'a str,
    pub scopes: &'a [String],
    pub ttl: Duration,
}

/// Signs a token the config's JWT scheme (`scheme`, or its only one) accepts.
pub fn mint(
    config_path: &Path,
    scheme: Option<&str>,
    claims: &Claims<'_>,
) -> Result<String, String> {
    let (config, problems) = Config::load_leniently(config_path);
    let config =
        config.ok_or_else(|| format!("{}: {}", config_path.display(), problems.join("; ")))?;
    let schemes = config.auth.schemes_of(|s| match s {
        SchemeConfig::Jwt(jwt) => Some(jwt),
        SchemeConfig::ApiKey(_) => None,
    });
    let (name, jwt) = choose_scheme(&schemes, scheme, "jwt")?;
    let secret = hmac_secret(name, jwt, &problems)?;
    sign(jwt, secret, claims).map_err(|e| format!("auth.schemes.{name}: {e}"))
}

/// The scheme's HMAC `secret`, if it has one and it is set.
fn hmac_secret<'a>(
    name: &str,
    jwt: &'a JwtConfig,
    problems: &[String],
) -> Result<&'a Secret, String> {
    let Some(secret) = &jwt.secret else {
        return Err(format!(
            "auth.schemes.{name} verifies with public keys: `moat token` signs only with an \
             HMAC `secret` (HS256/384/512); get tokens for it from the identity provider"
        ));
    };
    if mentions_placeholder(secret.expose()) {
        return Err(format!(
            "auth.schemes.{name}: its secret is not set: {}",
            problems.join("; ")
        ));
    }
    Ok(secret)
}

/// A token `jwt` accepts, signed with its HMAC `secret`: `iss` and the first `aud` from the
/// scheme, the scopes in its `scope_claim`, with the first HS* algorithm it allows.
pub fn sign(jwt: &JwtConfig, secret: &Secret, claims: &Claims<'_>) -> Result<String, String> {
    let algorithm = hmac_algorithm(jwt)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut body = serde_json::json!({
        "iss": jwt.issuer,
        "aud": jwt.audience.first(),
        "sub": claims.subject,
        "iat": now,
        "exp": now + claims.ttl.as_secs().max(1),
    });
    if !claims.scopes.is_empty() {
        body[&jwt.scope_claim] = serde_json::Value::from(claims.scopes.join(" "));
    }
    let key = EncodingKey::from_secret(secret.expose().as_bytes()).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&Header::new(algorithm), &body, &key).map_err(|e| e.to_string())
}

/// The first HS* algorithm the scheme allows.
fn hmac_algorithm(jwt: &JwtConfig) -> Result<Algorithm, String> {
    jwt.algorithms
        .iter()
        .filter_map(|a| a.parse::<Algorithm>().ok())
        .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .ok_or_else(|| "the scheme allows no HS* algorithm".to_owned())
}
