//! Where a verifier's keys come from: one PEM key or secret, or a JWKS file or URL, with a
//! digest of the bytes so a reload that changed nothing keeps the verifier (and its cache).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

use crate::config::{JwtConfig, Secret};

pub(super) enum Keys {
    /// One key (`public_key_file` or `secret`): every allowed algorithm of its family.
    Single(DecodingKey),
    /// A JWKS: a token's `kid` picks the key. Swapped whole when a `jwks_url` refreshes.
    ByKid(ArcSwap<HashMap<String, DecodingKey>>),
}

/// The configured keys, and a digest of the bytes they were read from (zero for `secret`,
/// which the config comparison already covers).
pub(super) fn load_keys(
    config: &JwtConfig,
    algorithms: &[Algorithm],
) -> Result<(Keys, [u8; 32]), String> {
    exactly_one_source(config)?;
    if let Some(secret) = &config.secret {
        return from_secret(secret, algorithms);
    }
    if algorithms.iter().any(is_hmac) {
        // An HMAC algorithm next to a public key is the classic confusion attack.
        return Err("HS* algorithms need `secret`; do not mix them with public keys".to_owned());
    }
    if let Some(path) = &config.public_key_file {
        return from_pem_file(path, algorithms[0]);
    }
    if let Some(url) = &config.jwks_url {
        return from_jwks_url(url);
    }
    let path = config.jwks_file.as_ref().ok_or("no key source")?;
    let text = crate::input::read_to_string(path, crate::input::Kind::KeyMaterial)?;
    parse_jwks(&text, &path.display().to_string()).map(|set| by_kid(set, &text))
}

fn exactly_one_source(config: &JwtConfig) -> Result<(), String> {
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
    Ok(())
}

fn is_hmac(algorithm: &Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

/// `secret`: HMAC only, and long enough not to be guessed.
fn from_secret(secret: &Secret, algorithms: &[Algorithm]) -> Result<(Keys, [u8; 32]), String> {
    if !algorithms.iter().all(is_hmac) {
        return Err("`secret` keys only verify HS256/HS384/HS512; list only those".to_owned());
    }
    if secret.expose().len() < 32 {
        return Err("`secret` must be at least 32 bytes".to_owned());
    }
    DecodingKey::from_secret(secret.expose().as_bytes())
        .map(|key| (Keys::Single(key), [0; 32]))
        .map_err(|e| format!("`secret`: {e}"))
}

/// `public_key_file`: one PEM key of the family of the first allowed algorithm.
fn from_pem_file(path: &Path, family: Algorithm) -> Result<(Keys, [u8; 32]), String> {
    let pem = crate::input::read(path, crate::input::Kind::KeyMaterial)?;
    let key = match family {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
        _ => DecodingKey::from_rsa_pem(&pem),
    };
    key.map(|key| (Keys::Single(key), digest(&pem)))
        .map_err(|e| {
            format!(
                "{}: not a {family:?} public key in PEM: {e}",
                path.display()
            )
        })
}

/// `jwks_url`: fetched now, from a neighbour over plain HTTP.
fn from_jwks_url(url: &str) -> Result<(Keys, [u8; 32]), String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "`jwks_url` ({url}) must be http:// (a sidecar neighbour)"
        ));
    }
    if crate::fetch::is_offline() {
        // `moat check --offline`: the rest of the scheme is checked; its keys cannot be.
        tracing::warn!(
            url,
            "offline: the key set at `jwks_url` is not fetched, so its keys are not checked"
        );
        return Ok(by_kid(HashMap::new(), ""));
    }
    let bytes = crate::fetch::fetch(
        url,
        Duration::from_secs(30),
        crate::input::Kind::KeyMaterial,
    )?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{url}: not UTF-8"))?;
    parse_jwks(&text, url).map(|set| by_kid(set, &text))
}

/// A key set, and the digest of the text it was parsed from.
fn by_kid(set: HashMap<String, DecodingKey>, text: &str) -> (Keys, [u8; 32]) {
    (
        Keys::ByKid(ArcSwap::from_pointee(set)),
        digest(text.as_bytes()),
    )
}

pub(super) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A JWKS document → keys by `kid` (every key needs one).
pub(super) fn parse_jwks(text: &str, origin: &str) -> Result<HashMap<String, DecodingKey>, String> {
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
