//! Secret material that lives outside the config text: the permission rule for files that
//! hold secrets, and age-encrypted dotenv files (design §4), decrypted in memory only.

use std::collections::HashMap;
use std::path::Path;

/// The variable holding an age identity (the `AGE-SECRET-KEY-1…` line, or a whole identity
/// file's text); `MOAT_AGE_IDENTITY_FILE` names a file instead.
pub const IDENTITY_VAR: &str = "MOAT_AGE_IDENTITY";
pub const IDENTITY_FILE_VAR: &str = "MOAT_AGE_IDENTITY_FILE";

/// Anyone able to write a secret file can replace it (mint keys, swap the identity, trust
/// another CA): world-writable is refused. Readable by others is only a warning, since
/// Kubernetes mounts secrets 0644 by default.
pub fn check_permissions(path: &Path, what: &str) -> Result<(), String> {
    let Some(mode) = refuse_world_writable(path, what)? else {
        return Ok(());
    };
    if mode & 0o044 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the {what} is readable by other users; 0600 is safer"
        );
    }
    Ok(())
}

/// The check for files that are public but must not be replaceable (certificates, CAs);
/// returns the mode when the file exists.
pub fn refuse_world_writable(path: &Path, what: &str) -> Result<Option<u32>, String> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(None); // reading it will report the real problem
    };
    let mode = metadata.permissions().mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "{}: the {what} is world-writable (mode {:o}); remove write access for others (`chmod o-w`, or 600 for secrets)",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(Some(mode))
}

/// The variables of a dotenv text, each failure naming `origin`.
pub fn parse_dotenv(text: &[u8], origin: &str) -> Result<HashMap<String, String>, String> {
    refuse_substitution(text, origin)?;
    dotenvy::from_read_iter(text)
        .map(|entry| entry.map_err(|e| format!("{origin}: {}", dotenv_error(&e, text))))
        .collect()
}

/// dotenvy expands `$NAME` inside unquoted and double-quoted values, so a generated secret
/// containing `$` would silently lose part of itself or take another variable's value.
/// Such values are refused; single quotes keep a value literal.
fn refuse_substitution(text: &[u8], origin: &str) -> Result<(), String> {
    for (index, line) in String::from_utf8_lossy(text).lines().enumerate() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim_start();
        if !value.starts_with('\'') && value.contains('$') {
            return Err(format!(
                "{origin}: line {}: the value of `{}` contains `$`, which dotenv files \
                 substitute; put the value in single quotes to keep it literal",
                index + 1,
                name.trim()
            ));
        }
    }
    Ok(())
}

/// dotenvy's parse errors quote the offending line, which in a secrets file is a secret:
/// keep only where it is (the line number, found by matching the quoted text back).
fn dotenv_error(error: &dotenvy::Error, text: &[u8]) -> String {
    match error {
        dotenvy::Error::LineParse(quoted, index) => {
            let text = String::from_utf8_lossy(text);
            let quoted = quoted.trim();
            match text.lines().position(|line| line.trim() == quoted) {
                Some(line) => format!(
                    "line {}: cannot parse it (at character {index}); expected NAME=value",
                    line + 1
                ),
                None => format!("cannot parse a line (at character {index}); expected NAME=value"),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(feature = "age")]
pub use self::age_files::{decrypt_file, encrypt, keygen, read_encrypted_dotenv};

#[cfg(not(feature = "age"))]
pub fn read_encrypted_dotenv(path: &Path) -> Result<HashMap<String, String>, String> {
    Err(format!(
        "env.encrypted_dotenv ({}): this moat was built without the `age` feature; \
         rebuild with default features or use env.dotenv",
        path.display()
    ))
}

#[cfg(feature = "age")]
mod age_files {
    use std::collections::HashMap;
    use std::io::Read as _;
    use std::path::Path;

    use age::secrecy::ExposeSecret as _;
    use zeroize::Zeroizing;

    use super::{IDENTITY_FILE_VAR, IDENTITY_VAR, check_permissions, parse_dotenv};

    type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

    /// The variables of an age-encrypted dotenv file. The plaintext exists only in memory
    /// and is wiped when parsed; a file that does not decrypt is an error, never text.
    pub fn read_encrypted_dotenv(path: &Path) -> Result<HashMap<String, String>, String> {
        let origin = format!("env.encrypted_dotenv ({})", path.display());
        let plaintext = decrypt_file(path).map_err(|e| format!("{origin}: {e}"))?;
        parse_dotenv(&plaintext, &origin)
    }

    /// Decrypts `path` (binary or ASCII-armored) with the identity from the environment.
    pub fn decrypt_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
        let identities = identities()?;
        let ciphertext = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
        let decryptor =
            age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext.as_slice()))
                .map_err(|e| format!("not an age file: {e}"))?;
        let mut reader = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| {
                format!("cannot decrypt it with the identity from {IDENTITY_VAR}/{IDENTITY_FILE_VAR}: {e}")
            })?;
        let mut plaintext = Zeroizing::new(Vec::new());
        reader
            .read_to_end(&mut plaintext)
            .map_err(|e| format!("the ciphertext is damaged: {e}"))?;
        Ok(plaintext)
    }

    fn identities() -> Result<Identities, String> {
        let (text, origin) = if let Some(text) = std::env::var_os(IDENTITY_VAR) {
            let text = text
                .into_string()
                .map_err(|_| format!("{IDENTITY_VAR} is not UTF-8"))?;
            (Zeroizing::new(text), IDENTITY_VAR.to_owned())
        } else if let Some(file) = std::env::var_os(IDENTITY_FILE_VAR) {
            let file = Path::new(&file);
            check_permissions(file, "age identity file")?;
            let text = std::fs::read_to_string(file).map_err(|e| {
                format!(
                    "cannot read {} named by {IDENTITY_FILE_VAR}: {e}",
                    file.display()
                )
            })?;
            (
                Zeroizing::new(text),
                format!("{IDENTITY_FILE_VAR} ({})", file.display()),
            )
        } else {
            return Err(format!(
                "no age identity: set {IDENTITY_VAR} or {IDENTITY_FILE_VAR} (`moat env keygen` makes one)"
            ));
        };
        let identities = age::IdentityFile::from_buffer(text.as_bytes())
            .and_then(|file| file.into_identities().map_err(std::io::Error::other))
            // The parser's messages may quote the line: say only where it came from.
            .map_err(|_| format!("{origin} does not hold an age identity (AGE-SECRET-KEY-1…)"))?;
        if identities.is_empty() {
            return Err(format!("{origin} holds no age identity"));
        }
        Ok(identities)
    }

    /// Encrypts `plaintext` to every recipient (`age1…` public keys), ASCII-armored so the
    /// result can be committed and diffed.
    pub fn encrypt(recipients: &[String], plaintext: &[u8]) -> Result<String, String> {
        let parsed = recipients
            .iter()
            .map(|r| {
                r.trim()
                    .parse::<age::x25519::Recipient>()
                    .map_err(|e| format!("recipient `{r}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
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
        fn encrypts_to_a_recipient_and_refuses_a_tampered_or_foreign_file() {
            let (_identity, public) = keygen();
            let armored = encrypt(&[public], b"A=1\n").unwrap();
            assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
            assert!(!armored.contains("A=1"));
            let error = encrypt(&["age1notakey".to_owned()], b"x").unwrap_err();
            assert!(error.contains("recipient"), "{error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dollar_outside_single_quotes_is_refused_not_substituted() {
        let error = parse_dotenv(b"A=1\nSECRET=ab$cd\n", "x.env").unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("`SECRET`"),
            "{error}"
        );
        assert!(!error.contains("ab$cd"), "{error}");
        assert!(parse_dotenv(b"SECRET=\"x$y\"\n", "x.env").is_err());
        let literal = parse_dotenv(b"SECRET='ab$cd'\n# c $ d\n", "x.env").unwrap();
        assert_eq!(literal["SECRET"], "ab$cd");
    }

    #[test]
    fn dotenv_errors_do_not_quote_the_line() {
        let error = parse_dotenv(b"GOOD=1\nthis is s3cr3t-value\n", "x.env").unwrap_err();
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(error.starts_with("x.env"), "{error}");
    }

    #[test]
    fn world_writable_secret_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.txt");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = check_permissions(&path, "age identity file").unwrap_err();
        assert!(error.contains("world-writable"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_permissions(&path, "age identity file").is_ok());
    }
}
