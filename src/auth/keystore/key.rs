//! The key format, `moat_<id>_<secret>`: valid ids, telling a key from a token, parsing a
//! key's id out of it, and minting new keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `[a-z0-9][a-z0-9-]{0,62}`.
pub fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Whether a bearer value is meant as a moat key rather than a token: the prefix alone, so
/// a malformed key is still refused as a key (before any hash), never tried as a JWT.
pub fn looks_like_key(value: &str) -> bool {
    value.starts_with("moat_")
}

/// Splits `moat_<id>_<secret>` into the id, checking the whole shape: the secret is 32
/// bytes of base64url without padding (43 characters).
pub fn parse_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("moat_")?;
    let (id, secret) = rest.split_once('_')?;
    // Decoded onto the stack: this runs on every request that carries a key.
    let mut decoded = [0u8; 33];
    let well_formed = valid_id(id)
        && secret.len() == 43
        && URL_SAFE_NO_PAD
            .decode_slice(secret, &mut decoded)
            .is_ok_and(|length| length == 32);
    well_formed.then_some(id)
}

/// A new key for `id`: 32 random bytes.
pub fn new_key(id: &str) -> String {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    format!("moat_{id}_{}", URL_SAFE_NO_PAD.encode(secret))
}
