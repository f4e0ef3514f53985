//! One `ENC[AES256_GCM,data:…,iv:…,tag:…,type:str]` value as SOPS writes it
//! (`aes/cipher.go`): AES-256-GCM with a 32-byte IV, decrypted in memory.

use std::sync::LazyLock;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// SOPS's own pattern for an encrypted value (`aes/cipher.go`). A literal: it compiles, and
/// the tests that decrypt SOPS files would fail at once if it did not.
#[allow(clippy::expect_used)]
static ENCRYPTED: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]$")
        .expect("a valid pattern")
});

type SopsGcm = aes_gcm::AesGcm<Aes256, U32>;

/// The parts of a sealed value: ciphertext, IV and tag.
struct Sealed {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
}

/// One `ENC[AES256_GCM,…]` value; the error says what is wrong without quoting it.
pub(super) fn decrypt_value(
    key: &[u8],
    value: &str,
    aad: &str,
) -> Result<Zeroizing<String>, String> {
    let Sealed { data, iv, tag } = sealed(value)?;
    let cipher = SopsGcm::new_from_slice(key).map_err(|_| "bad data key length".to_owned())?;
    let mut message = data;
    message.extend_from_slice(&tag);
    let plaintext = cipher
        .decrypt(
            aes_gcm::Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: &message,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| {
            "does not decrypt: the value was changed, or moved from another name (its name is \
             part of what is authenticated)"
                .to_owned()
        })?;
    String::from_utf8(plaintext)
        .map(Zeroizing::new)
        .map_err(|_| "decrypts to bytes that are not UTF-8".into())
}

/// The value's parts, each checked for its shape before any decryption.
fn sealed(value: &str) -> Result<Sealed, String> {
    let Some(parts) = ENCRYPTED.captures(value) else {
        return Err(
            "is not encrypted (expected ENC[AES256_GCM,…]); SOPS encrypts every value \
                    this file's metadata does not exempt: re-encrypt it with sops"
                .into(),
        );
    };
    let field = |index: usize, what: &str| {
        STANDARD
            .decode(&parts[index])
            .map_err(|_| format!("has a damaged {what} (not base64)"))
    };
    let (data, iv, tag) = (field(1, "data")?, field(2, "iv")?, field(3, "tag")?);
    if iv.len() != 32 || tag.len() != 16 {
        return Err("has an IV or tag of the wrong length; re-encrypt it with sops".into());
    }
    if &parts[4] != "str" {
        return Err(format!(
            "has type `{}`; a dotenv value is always `str`",
            &parts[4]
        ));
    }
    Ok(Sealed { data, iv, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt_value(key: &[u8], plaintext: &str, aad: &str) -> String {
        let cipher = SopsGcm::new_from_slice(key).unwrap();
        let iv = [7u8; 32];
        let sealed = cipher
            .encrypt(
                aes_gcm::Nonce::<U32>::from_slice(&iv),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap();
        let (data, tag) = sealed.split_at(sealed.len() - 16);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:str]",
            STANDARD.encode(data),
            STANDARD.encode(iv),
            STANDARD.encode(tag)
        )
    }

    #[test]
    fn a_value_is_bound_to_its_name() {
        let key = [3u8; 32];
        let sealed = encrypt_value(&key, "s3cr3t", "A:");
        assert_eq!(*decrypt_value(&key, &sealed, "A:").unwrap(), "s3cr3t");
        let error = decrypt_value(&key, &sealed, "B:").unwrap_err();
        assert!(error.contains("moved from another name"), "{error}");
        let error = decrypt_value(&key, "s3cr3t", "A:").unwrap_err();
        assert!(
            error.contains("not encrypted") && !error.contains("s3cr3t"),
            "{error}"
        );
    }
}
