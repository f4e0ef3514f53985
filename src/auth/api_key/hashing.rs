//! argon2id with the optional pepper as its secret input: the hash `moat keys` stores, and
//! the check of a key against it; the pepper as configured, and the per-process key of the
//! verification caches.

use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};

use crate::config::{ApiKeyConfig, Secret};

/// argon2 with the optional pepper as its secret input; the comparison inside is
/// constant-time.
pub fn verify_hash(key: &str, hash: &str, pepper: Option<&Secret>) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(hash) else {
        return false;
    };
    // The hash's own parameters are used for verifying; `hasher` only supplies the pepper.
    hasher(pepper).is_ok_and(|hasher| hasher.verify_password(key.as_bytes(), &parsed).is_ok())
}

/// The PHC hash of `key`, with the optional pepper (what `moat keys` stores).
pub fn hash_key(key: &str, pepper: Option<&Secret>) -> Result<String, String> {
    use argon2::PasswordHasher;
    hasher(pepper)?
        .hash_password(key.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// argon2id with the default parameters and the pepper, if any, as its secret input.
fn hasher(pepper: Option<&Secret>) -> Result<Argon2<'_>, String> {
    match pepper {
        Some(pepper) => Argon2::new_with_secret(
            pepper.expose().as_bytes(),
            Algorithm::Argon2id,
            Version::V0x13,
            Params::default(),
        )
        .map_err(|e| e.to_string()),
        None => Ok(Argon2::default()),
    }
}

/// The pepper, if any: at most 64 bytes; an empty one is none.
pub(super) fn pepper(config: &ApiKeyConfig) -> Result<Option<Secret>, String> {
    match &config.pepper {
        Some(pepper) if pepper.expose().len() > 64 => {
            Err("`pepper` must be at most 64 bytes".to_owned())
        }
        pepper => Ok(pepper.clone().filter(|p| !p.expose().is_empty())),
    }
}

/// What the caches' HMAC is keyed with: random per verifier (and what it inherits), so
/// a digest says nothing of the key outside this process.
pub(super) fn random_digest_key() -> [u8; 64] {
    let mut key = [0u8; 64];
    rand::fill(&mut key);
    key
}
