//! age: moat's own whole-file format (`moat env encrypt`), and the wrapping of a SOPS data
//! key; where identities come from.

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

use super::{IDENTITY_FILE_VAR, IDENTITY_VAR, check_permissions};

/// SOPS's own variables for age identities (`sops/age/keysource.go`).
pub const SOPS_KEY_VAR: &str = "SOPS_AGE_KEY";
pub const SOPS_KEY_FILE_VAR: &str = "SOPS_AGE_KEY_FILE";

/// The identities one source holds, and where they came from (for messages).
pub struct IdentitySource {
    pub origin: String,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
}

/// Where moat looks for identities: its own variables always; for SOPS files also SOPS's
/// (`SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, then `$XDG_CONFIG_HOME/sops/age/keys.txt`, as the
/// sops command does). A source that is set but holds no identity is an error.
pub fn identities(sops: bool) -> Result<Vec<IdentitySource>, String> {
    let mut sources = Vec::new();
    let mut texts = vec![(IDENTITY_VAR, false), (IDENTITY_FILE_VAR, true)];
    if sops {
        texts.extend([(SOPS_KEY_VAR, false), (SOPS_KEY_FILE_VAR, true)]);
    }
    for (var, is_file) in texts {
        if let Some(value) = std::env::var_os(var) {
            sources.push(from_variable(var, is_file, value)?);
        }
    }
    if sops
        && std::env::var_os(SOPS_KEY_VAR).is_none()
        && std::env::var_os(SOPS_KEY_FILE_VAR).is_none()
        && let Some(default) = sops_default_keys_file().filter(|p| p.is_file())
    {
        sources.push(read_identity_file(&default, "the sops default (")?);
    }
    Ok(sources)
}

/// The file `MOAT_AGE_IDENTITY_FILE` or `SOPS_AGE_KEY_FILE` names, if set: watched for reloads.
pub fn identity_files() -> impl Iterator<Item = PathBuf> {
    [IDENTITY_FILE_VAR, SOPS_KEY_FILE_VAR]
        .into_iter()
        .filter_map(|var| std::env::var_os(var).map(PathBuf::from))
}

/// The identities the variable `var` holds, or (`is_file`) the file it names holds.
fn from_variable(var: &str, is_file: bool, value: OsString) -> Result<IdentitySource, String> {
    if is_file {
        return read_identity_file(Path::new(&value), &format!("{var} ("));
    }
    let text = value
        .into_string()
        .map_err(|_| format!("{var} is not UTF-8"))?;
    parse_identities(&Zeroizing::new(text), var.to_owned())
}

fn sops_default_keys_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config.join("sops/age/keys.txt"))
}

fn read_identity_file(file: &Path, origin: &str) -> Result<IdentitySource, String> {
    check_permissions(file, "age identity file")?;
    let origin = format!("{origin}{})", file.display());
    let text = crate::input::read_to_string(file, crate::input::Kind::Secret)
        .map_err(|e| format!("the identity file {origin}: {e}"))?;
    parse_identities(&Zeroizing::new(text), origin)
}

pub(super) fn parse_identities(text: &str, origin: String) -> Result<IdentitySource, String> {
    let identities = age::IdentityFile::from_buffer(text.as_bytes())
        .and_then(|file| file.into_identities().map_err(std::io::Error::other))
        // The parser's messages may quote the line: say only where it came from.
        .map_err(|_| format!("{origin} does not hold an age identity (AGE-SECRET-KEY-1…)"))?;
    if identities.is_empty() {
        return Err(format!("{origin} holds no age identity"));
    }
    Ok(IdentitySource { origin, identities })
}

/// Decrypts an age file (binary or ASCII-armored) with any of `sources`.
pub fn decrypt_with(
    sources: &[IdentitySource],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext))
        .map_err(|e| format!("not an age file: {e}"))?;
    let identities = sources
        .iter()
        .flat_map(|s| s.identities.iter())
        .map(|i| i.as_ref() as &dyn age::Identity);
    let mut reader = decryptor.decrypt(identities).map_err(|e| {
        let origins: Vec<&str> = sources.iter().map(|s| s.origin.as_str()).collect();
        format!(
            "cannot decrypt it with the identity from {}: {e}",
            origins.join(", ")
        )
    })?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| format!("the ciphertext is damaged: {e}"))?;
    Ok(plaintext)
}

/// moat's own format: the whole dotenv file age-encrypted, with the identity in
/// `MOAT_AGE_IDENTITY` / `MOAT_AGE_IDENTITY_FILE`.
pub fn decrypt_file(ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    let sources = identities(false)?;
    if sources.is_empty() {
        return Err(format!(
            "no age identity: set {IDENTITY_VAR} or {IDENTITY_FILE_VAR} (`moat env keygen` makes one)"
        ));
    }
    decrypt_with(&sources, ciphertext)
}

/// Encrypts `plaintext` to every recipient (`age1…` public keys), ASCII-armored so the
/// result can be committed and diffed.
pub fn encrypt(recipients: &[String], plaintext: &[u8]) -> Result<String, String> {
    let parsed = parse_recipients(recipients)?;
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| format!("cannot encrypt: {e}"))?;
    let mut output = Vec::new();
    let armored =
        age::armor::ArmoredWriter::wrap_output(&mut output, age::armor::Format::AsciiArmor)
            .map_err(|e| e.to_string())?;
    let mut writer = encryptor.wrap_output(armored).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut writer, plaintext).map_err(|e| e.to_string())?;
    writer
        .finish()
        .and_then(|armored| armored.finish())
        .map_err(|e| e.to_string())?;
    String::from_utf8(output).map_err(|e| e.to_string())
}

fn parse_recipients(recipients: &[String]) -> Result<Vec<age::x25519::Recipient>, String> {
    recipients
        .iter()
        .map(|r| {
            r.trim()
                .parse::<age::x25519::Recipient>()
                .map_err(|e| format!("recipient `{r}`: {e}"))
        })
        .collect()
}

/// A new identity as an identity file's text, and its public key.
pub fn keygen() -> (Zeroizing<String>, String) {
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let text = Zeroizing::new(format!(
        "# created: {created}\n# public key: {public}\n{}\n",
        identity.to_string().expose_secret()
    ));
    (text, public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypts_to_a_recipient_and_decrypts_with_its_identity_only() {
        let (identity, public) = keygen();
        let armored = encrypt(&[public], b"A=1\n").unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains("A=1"));
        let mine = parse_identities(&identity, "mine".into()).unwrap();
        assert_eq!(
            &*decrypt_with(&[mine], armored.as_bytes()).unwrap(),
            b"A=1\n"
        );
        let (other, _) = keygen();
        let other = parse_identities(&other, "other".into()).unwrap();
        let error = decrypt_with(&[other], armored.as_bytes()).unwrap_err();
        assert!(error.contains("other"), "{error}");
        let error = encrypt(&["age1notakey".to_owned()], b"x").unwrap_err();
        assert!(error.contains("recipient"), "{error}");
    }
}
