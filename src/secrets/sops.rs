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

use sha2::Digest as _;
use zeroize::Zeroizing;

mod cipher;
mod data_key;
mod selection;

use self::cipher::decrypt_value;
use self::selection::Selection;
use super::age_file::IdentitySource;
use super::{Variables, valid_name};

/// What SOPS writes before the values when `mac_only_encrypted` is on (`sops.go`,
/// `MACOnlyEncryptedInitialization`), so the two MAC modes never collide.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

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
            let (name, value) = split_line(line, number)?;
            if let Some(key) = name.strip_prefix("sops_") {
                metadata.insert(key, value);
            } else {
                check_variable(name, number, &mut seen)?;
                items.push((number, name, value));
            }
        }
        require_metadata(&metadata)?;
        Ok(File { items, metadata })
    }

    pub fn version(&self) -> &str {
        self.metadata.get("version").map_or("?", String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(_, name, _)| *name)
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
        let (variables, computed) = self.decrypt_values(&key, &selection)?;
        self.verify_mac(&key, &computed)?;
        Ok(variables)
    }

    /// Every value, decrypted where SOPS encrypted it, and the MAC over them as SOPS
    /// computes it (hex).
    fn decrypt_values(
        &self,
        key: &[u8],
        selection: &Selection,
    ) -> Result<(Variables, Zeroizing<String>), String> {
        let mut mac = sha2::Sha512::new();
        if selection.mac_only_encrypted {
            mac.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        let mut variables = Vec::with_capacity(self.items.len());
        for (line, name, value) in &self.items {
            let encrypted = selection.encrypts(name);
            let plaintext = if encrypted && !value.is_empty() {
                decrypt_value(key, value, &format!("{name}:"))
                    .map_err(|problem| format!("line {line}: `{name}` {problem}"))?
            } else {
                Zeroizing::new(value.clone())
            };
            if encrypted || !selection.mac_only_encrypted {
                mac.update(plaintext.as_bytes());
            }
            variables.push(((*name).to_owned(), plaintext));
        }
        Ok((variables, Zeroizing::new(hex_upper(&mac.finalize()))))
    }

    /// The stored MAC (encrypted with `sops_lastmodified` as associated data) against the
    /// one `computed` over the values.
    fn verify_mac(&self, key: &[u8], computed: &str) -> Result<(), String> {
        let lastmodified = &self.metadata["lastmodified"];
        let stored = decrypt_value(key, &self.metadata["mac"], lastmodified)
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
        Ok(())
    }
}

/// A line's name and value (its `\n` escapes undone), split at the first `=`.
fn split_line(line: &str, number: usize) -> Result<(&str, String), String> {
    let Some((name, value)) = line.split_once('=') else {
        return Err(format!(
            "line {number}: no `=`; SOPS dotenv lines are NAME=value"
        ));
    };
    Ok((name, value.replace("\\n", "\n")))
}

/// A variable's name must be one a `${VAR}` can name, and set only once.
fn check_variable<'a>(
    name: &'a str,
    number: usize,
    seen: &mut HashSet<&'a str>,
) -> Result<(), String> {
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
    Ok(())
}

/// The metadata lines SOPS always writes: without them nothing can be verified.
fn require_metadata(metadata: &BTreeMap<&str, String>) -> Result<(), String> {
    for required in ["mac", "lastmodified", "version"] {
        if !metadata.contains_key(required) {
            return Err(format!(
                "the SOPS metadata line `sops_{required}=` is missing; re-encrypt with sops"
            ));
        }
    }
    Ok(())
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02X}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
