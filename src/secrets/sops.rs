//! SOPS dotenv files (`sops -e --input-type dotenv .env`), decrypted in memory.
//!
//! No Rust crate reads SOPS files (the format is defined by the Go implementation), so the
//! parsing and the MAC are written here after getsops/sops v3: `stores/dotenv/store.go`
//! (lines split at `\n`, `#` comments, key before the first `=`, `\n` escapes),
//! `stores/flatten.go` (`sops_age__list_0__map_enc`), `aes/cipher.go` (AES-256-GCM with a
//! 32-byte IV, the key path plus `:` as associated data) and `sops.go` (the MAC: SHA-512 over
//! the plaintext values in file order, hex, encrypted with `sops_lastmodified` as associated
//! data). The cryptography itself is the `aes-gcm`, `sha2` and `age` crates'.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::Digest as _;
use zeroize::Zeroizing;

use super::age_file::{self, IdentitySource};
use super::{Variables, valid_name};

/// What SOPS writes before the values when `mac_only_encrypted` is on (`sops.go`,
/// `MACOnlyEncryptedInitialization`), so the two MAC modes never collide.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// SOPS's own pattern for an encrypted value (`aes/cipher.go`).
static ENCRYPTED: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]$")
        .expect("a valid pattern")
});

type SopsGcm = aes_gcm::AesGcm<Aes256, U32>;

/// Whether `text` is a SOPS dotenv file: it carries the metadata lines SOPS always writes.
pub fn detect(text: &str) -> bool {
    let mut mac = false;
    let mut version = false;
    for line in text.split('\n') {
        mac |= line.starts_with("sops_mac=");
        version |= line.starts_with("sops_version=");
    }
    mac && version
}

/// A SOPS dotenv file, read without decrypting anything.
pub struct File<'a> {
    /// `(line, name, value as written)` of every variable, in file order.
    items: Vec<(usize, &'a str, String)>,
    /// The `sops_` lines, without the prefix.
    metadata: BTreeMap<&'a str, String>,
}

/// A wrapped copy of the data key: an age stanza moat can try, or a recipient it can't use.
pub enum Recipient {
    Age { recipient: String, enc: String },
    Other(String),
}

impl<'a> File<'a> {
    pub fn parse(text: &'a [u8]) -> Result<File<'a>, String> {
        let text = std::str::from_utf8(text).map_err(|_| "it is not UTF-8 text".to_owned())?;
        let mut items = Vec::new();
        let mut metadata = BTreeMap::new();
        let mut seen = HashSet::new();
        for (index, line) in text.split('\n').enumerate() {
            let number = index + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(format!(
                    "line {number}: no `=`; SOPS dotenv lines are NAME=value"
                ));
            };
            let value = value.replace("\\n", "\n");
            if let Some(key) = name.strip_prefix("sops_") {
                metadata.insert(key, value);
                continue;
            }
            if !valid_name(name) {
                return Err(format!(
                    "line {number}: `{name}` is not a variable name (letters, digits and `_`)"
                ));
            }
            if !seen.insert(name) {
                return Err(format!(
                    "line {number}: `{name}` is set twice; keep one (which one was meant is ambiguous)"
                ));
            }
            items.push((number, name, value));
        }
        for required in ["mac", "lastmodified", "version"] {
            if !metadata.contains_key(required) {
                return Err(format!(
                    "the SOPS metadata line `sops_{required}=` is missing; re-encrypt with sops"
                ));
            }
        }
        Ok(File { items, metadata })
    }

    pub fn version(&self) -> &str {
        self.metadata.get("version").map_or("?", String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(_, name, _)| *name)
    }

    /// Every copy of the data key, age or not, in file order.
    pub fn recipients(&self) -> Vec<Recipient> {
        let mut found = Vec::new();
        for (key, value) in &self.metadata {
            let Some((kind, rest)) = key.split_once("__list_") else {
                continue;
            };
            let Some((index, field)) = rest.split_once("__map_") else {
                continue;
            };
            match (kind, field) {
                ("age", "recipient") => found.push(Recipient::Age {
                    recipient: value.clone(),
                    enc: self
                        .metadata
                        .get(format!("age__list_{index}__map_enc").as_str())
                        .cloned()
                        .unwrap_or_default(),
                }),
                ("kms", "arn")
                | ("gcp_kms", "resource_id")
                | ("azure_kv", "vault_url")
                | ("hc_vault", "vault_address")
                | ("pgp", "fp")
                | ("hckms", "key_id") => found.push(Recipient::Other(format!("{kind} {value}"))),
                _ => {}
            }
        }
        found
    }

    /// Decrypts every value with the data key an age identity unwraps, and verifies the MAC.
    pub fn decrypt(&self, identities: &[IdentitySource]) -> Result<Variables, String> {
        if self.metadata.keys().any(|k| k.starts_with("key_groups__")) {
            return Err(
                "the data key is split across SOPS key groups (Shamir secret sharing), \
                 which moat does not read: run moat under `sops exec-env FILE 'moat serve'`, or \
                 encrypt with one group of age recipients"
                    .into(),
            );
        }
        let key = self.data_key(identities)?;
        let selection = Selection::of(&self.metadata)?;
        let mut mac = sha2::Sha512::new();
        if selection.mac_only_encrypted {
            mac.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        let mut variables = Vec::with_capacity(self.items.len());
        for (line, name, value) in &self.items {
            let encrypted = selection.encrypts(name);
            let plaintext = if encrypted && !value.is_empty() {
                decrypt_value(&key, value, &format!("{name}:"))
                    .map_err(|problem| format!("line {line}: `{name}` {problem}"))?
            } else {
                Zeroizing::new(value.clone())
            };
            if encrypted || !selection.mac_only_encrypted {
                mac.update(plaintext.as_bytes());
            }
            variables.push(((*name).to_owned(), plaintext));
        }
        let computed = Zeroizing::new(hex_upper(&mac.finalize()));
        let lastmodified = &self.metadata["lastmodified"];
        let stored = decrypt_value(&key, &self.metadata["mac"], lastmodified)
            .map_err(|problem| format!("`sops_mac` {problem}"))?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            stored.as_bytes(),
            computed.as_bytes(),
        )) {
            return Err(
                "the MAC does not verify: the file was changed after sops wrote it (a \
                 value edited, a line added, dropped or moved); edit it with `sops edit` or \
                 re-encrypt it"
                    .into(),
            );
        }
        Ok(variables)
    }

    fn data_key(&self, identities: &[IdentitySource]) -> Result<Zeroizing<Vec<u8>>, String> {
        let recipients = self.recipients();
        let mut age: Vec<(&str, &str)> = Vec::new();
        let mut others: Vec<&str> = Vec::new();
        for recipient in &recipients {
            match recipient {
                Recipient::Age { recipient, enc } => age.push((recipient, enc)),
                Recipient::Other(other) => others.push(other),
            }
        }
        if age.is_empty() {
            return Err(format!(
                "its data key is wrapped only for recipients moat can't use ({}); moat reads age \
                 recipients: add one (`sops updatekeys` with an age key in .sops.yaml), or run moat \
                 under `sops exec-env FILE 'moat serve'`, or have a secrets operator mount the \
                 variables as files and use `VAR_FILE`",
                if others.is_empty() {
                    "none listed".to_owned()
                } else {
                    others.join(", ")
                }
            ));
        }
        if identities.is_empty() {
            return Err(format!(
                "no age identity to unwrap its data key (recipients {}): set SOPS_AGE_KEY_FILE or \
                 SOPS_AGE_KEY (or MOAT_AGE_IDENTITY_FILE / MOAT_AGE_IDENTITY)",
                list(age.iter().map(|(r, _)| *r))
            ));
        }
        for (_, enc) in &age {
            if let Ok(key) = age_file::decrypt_with(identities, enc.as_bytes())
                && key.len() == 32
            {
                return Ok(key);
            }
        }
        Err(format!(
            "none of the age identities from {} is one of its recipients ({})",
            list(identities.iter().map(|i| i.origin.as_str())),
            list(age.iter().map(|(r, _)| *r))
        ))
    }
}

/// Which values SOPS encrypted (`shouldBeEncrypted` in `sops.go`), from the file's metadata.
struct Selection {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    mac_only_encrypted: bool,
}

impl Selection {
    fn of(metadata: &BTreeMap<&str, String>) -> Result<Selection, String> {
        let text = |key: &str| metadata.get(key).filter(|v| !v.is_empty()).cloned();
        let regex = |key: &str| {
            text(key)
                .map(|pattern| {
                    regex::Regex::new(&pattern)
                        .map_err(|e| format!("`sops_{key}` is not a regex moat can read: {e}"))
                })
                .transpose()
        };
        Ok(Selection {
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            mac_only_encrypted: text("mac_only_encrypted")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    fn encrypts(&self, name: &str) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix
            && name.ends_with(suffix.as_str())
        {
            encrypted = false;
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = name.ends_with(suffix.as_str());
        }
        if let Some(regex) = &self.unencrypted_regex
            && regex.is_match(name)
        {
            encrypted = false;
        }
        if let Some(regex) = &self.encrypted_regex {
            encrypted = regex.is_match(name);
        }
        encrypted
    }
}

/// One `ENC[AES256_GCM,…]` value; the error says what is wrong without quoting it.
fn decrypt_value(key: &[u8], value: &str, aad: &str) -> Result<Zeroizing<String>, String> {
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

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02X}");
        out
    })
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
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

    #[test]
    fn the_selection_follows_sops_rules() {
        let metadata: BTreeMap<&str, String> =
            [("unencrypted_suffix", "_unencrypted".to_owned())].into();
        let selection = Selection::of(&metadata).unwrap();
        assert!(selection.encrypts("TOKEN"));
        assert!(!selection.encrypts("PORT_unencrypted"));
        let metadata: BTreeMap<&str, String> =
            [("encrypted_regex", "^(SECRET|TOKEN)".to_owned())].into();
        let selection = Selection::of(&metadata).unwrap();
        assert!(selection.encrypts("TOKEN_A") && !selection.encrypts("PORT"));
    }

    #[test]
    fn lines_follow_sops_dotenv_rules_not_shell_quoting() {
        let text =
            "A=x=y\nB=\"q\"\n#c\n\nC=a\\nb\nsops_mac=m\nsops_lastmodified=t\nsops_version=3\n";
        let file = File::parse(text.as_bytes()).unwrap();
        let values: Vec<_> = file
            .items
            .iter()
            .map(|(_, n, v)| (*n, v.as_str()))
            .collect();
        assert_eq!(values, [("A", "x=y"), ("B", "\"q\""), ("C", "a\nb")]);
        assert!(
            File::parse(b"A=1\nA=2\nsops_mac=m\nsops_lastmodified=t\nsops_version=3\n").is_err()
        );
        let error = File::parse(b"A=1\n").err().unwrap();
        assert!(error.contains("sops_mac"), "{error}");
    }
}
