//! Secret material that lives outside the config text: the permission rule for files that
//! hold secrets, dotenv parsing, and encrypted dotenv files (design §4) in three formats —
//! moat's own age file, SOPS dotenv and dotenvx — decrypted in memory only.

use std::collections::HashMap;
use std::path::Path;

use zeroize::Zeroizing;

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
    if !metadata.is_file() {
        // A device's or a FIFO's mode says nothing of the file moat should have read, and
        // reading it will refuse it for what it is (see `input`).
        return Ok(None);
    }
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
    let variables = parse_dotenv_ordered(text).map_err(|e| format!("{origin}: {e}"))?;
    Ok(variables
        .into_iter()
        .map(|(name, value)| (name, value.as_str().to_owned()))
        .collect())
}

/// The variables of a dotenv text (dotenvy's syntax), in order; a name set twice is an
/// error (which one was meant is ambiguous).
pub fn parse_dotenv_ordered(text: &[u8]) -> Result<Variables, String> {
    refuse_substitution(text)?;
    let mut variables: Variables = Vec::new();
    let mut names = std::collections::HashSet::new();
    for entry in dotenvy::from_read_iter(text) {
        let (name, value) = entry.map_err(|e| dotenv_error(&e, text))?;
        if !names.insert(name.clone()) {
            return Err(format!("`{name}` is set twice; keep one"));
        }
        variables.push((name, Zeroizing::new(value)));
    }
    Ok(variables)
}

/// dotenvy expands `$NAME` inside unquoted and double-quoted values, so a generated secret
/// containing `$` would silently lose part of itself or take another variable's value.
/// Such values are refused; single quotes keep a value literal.
fn refuse_substitution(text: &[u8]) -> Result<(), String> {
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
                "line {}: the value of `{}` contains `$`, which dotenv files \
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

/// A dotenv file's variables in file order, values wiped on drop.
pub type Variables = Vec<(String, Zeroizing<String>)>;

/// The encrypted dotenv formats `env.encrypted_dotenv` reads, told apart by their content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// moat's own: the whole file age-encrypted (`moat env encrypt`, `age`, `rage`).
    Age,
    /// `sops -e --input-type dotenv`: each value AES-GCM encrypted, a MAC over all of them.
    Sops,
    /// `dotenvx encrypt`: each value ECIES-encrypted to the file's public key.
    Dotenvx,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Age => "age",
            Format::Sops => "SOPS dotenv",
            Format::Dotenvx => "dotenvx",
        }
    }

    /// Which format `text` is in; anything else is refused with what it looks like.
    pub fn detect(text: &[u8]) -> Result<Format, String> {
        if text.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
            || text.starts_with(b"age-encryption.org/v1")
        {
            return Ok(Format::Age);
        }
        let text = std::str::from_utf8(text)
            .map_err(|_| "it is neither an age file nor UTF-8 text".to_owned())?;
        #[cfg(feature = "age")]
        {
            if sops::detect(text) {
                return Ok(Format::Sops);
            }
            if dotenvx::detect(text) {
                return Ok(Format::Dotenvx);
            }
        }
        if text.contains("\"sops\":") || text.lines().any(|l| l.starts_with("sops:")) {
            return Err(
                "it is a SOPS YAML or JSON file; moat reads SOPS dotenv files: \
                        `sops -e --input-type dotenv --output-type dotenv .env > .env.enc`"
                    .into(),
            );
        }
        Err(
            "it is not an encrypted dotenv file moat knows (age, SOPS dotenv, dotenvx); a \
             plain .env belongs in `env.dotenv`"
                .into(),
        )
    }
}

/// What `env.encrypted_dotenv` decrypted to.
pub struct EnvFile {
    pub format: Format,
    pub variables: Variables,
}

/// Letters, digits and `_`, not starting with a digit: what a `${VAR}` can name.
#[cfg_attr(not(feature = "age"), allow(dead_code))]
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(feature = "age")]
mod age_file;
#[cfg(feature = "age")]
mod dotenvx;
#[cfg(feature = "age")]
mod sops;

#[cfg(feature = "age")]
pub use self::age_file::{encrypt, identity_files, keygen};

/// The variables of the encrypted dotenv file at `path`, whichever of the three formats it
/// is in. The plaintext exists only in memory and is wiped when dropped; a file that does not
/// decrypt, or whose integrity check fails, is an error, never text. `keys_file` is
/// `env.dotenv_keys` (dotenvx's `.env.keys`).
pub fn read_encrypted_dotenv(path: &Path, keys_file: Option<&Path>) -> Result<EnvFile, String> {
    let origin = format!("env.encrypted_dotenv ({})", path.display());
    let (text, format) = read_detected(path).map_err(|e| format!("{origin}: {e}"))?;
    decrypt(format, &text, path, keys_file)
        .map(|variables| EnvFile { format, variables })
        .map_err(|e| format!("{origin}: {} file: {e}", format.name()))
}

/// The file's bytes (wiped when dropped) and which format they are in.
fn read_detected(path: &Path) -> Result<(Zeroizing<Vec<u8>>, Format), String> {
    let text = Zeroizing::new(crate::input::read(path, crate::input::Kind::EnvFile)?);
    let format = Format::detect(&text)?;
    Ok((text, format))
}

#[cfg(feature = "age")]
fn decrypt(
    format: Format,
    text: &[u8],
    path: &Path,
    keys_file: Option<&Path>,
) -> Result<Variables, String> {
    match format {
        Format::Age => {
            let plaintext = age_file::decrypt_file(text)?;
            parse_dotenv_ordered(&plaintext)
        }
        Format::Sops => sops::File::parse(text)?.decrypt(&age_file::identities(true)?),
        Format::Dotenvx => dotenvx::File::parse(text, path)?.decrypt(keys_file),
    }
}

#[cfg(not(feature = "age"))]
fn decrypt(_: Format, _: &[u8], _: &Path, _: Option<&Path>) -> Result<Variables, String> {
    Err(
        "this moat was built without the `age` feature; rebuild with default features or \
         use env.dotenv"
            .into(),
    )
}

/// `moat env decrypt`: the plaintext as a dotenv text — an age file's exactly as encrypted,
/// the others one `NAME=value` line per variable (SOPS's escaping for SOPS files, quoted for
/// dotenvx), so it reads back as the same values.
#[cfg_attr(not(feature = "age"), allow(dead_code))]
pub fn decrypt_to_text(
    path: &Path,
    keys_file: Option<&Path>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let (text, format) = read_detected(path)?;
    #[cfg(feature = "age")]
    if format == Format::Age {
        return age_file::decrypt_file(&text);
    }
    let variables = decrypt(format, &text, path, keys_file)?;
    let mut out = Zeroizing::new(Vec::new());
    for (name, value) in &variables {
        let line = Zeroizing::new(match format {
            Format::Dotenvx if value.contains(['\'', '\n']) => format!(
                "{name}=\"{}\"\n",
                value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            ),
            Format::Dotenvx => format!("{name}='{}'\n", value.as_str()),
            _ => format!("{name}={}\n", value.replace('\n', "\\n")),
        });
        out.extend_from_slice(line.as_bytes());
    }
    Ok(out)
}

/// `moat env inspect`: the format, who can decrypt, and which variables, never a value.
#[cfg(feature = "age")]
pub fn inspect(path: &Path) -> Result<String, String> {
    use std::fmt::Write as _;
    let (text, format) = read_detected(path)?;
    let mut out = String::new();
    match format {
        Format::Age => {
            let armored = text.starts_with(b"-----BEGIN");
            let _ = writeln!(
                out,
                "format      age (moat env encrypt){}",
                if armored { ", ASCII-armored" } else { "" }
            );
            let _ = writeln!(out, "recipients  not recorded in an age file");
            let names = match decrypt(format, &text, path, None) {
                Ok(variables) => names_of(variables.iter().map(|(n, _)| n.as_str())),
                Err(_) => format!(
                    "encrypted with the values (set {IDENTITY_VAR} or {IDENTITY_FILE_VAR} to list them)"
                ),
            };
            let _ = writeln!(out, "variables   {names}");
            let _ = writeln!(out, "integrity   the whole file is authenticated");
        }
        Format::Sops => {
            let file = sops::File::parse(&text)?;
            let _ = writeln!(out, "format      SOPS dotenv (sops {})", file.version());
            let recipients: Vec<String> = file
                .recipients()
                .into_iter()
                .map(|r| match r {
                    sops::Recipient::Age { recipient, .. } => format!("age {recipient}"),
                    sops::Recipient::Other(other) => other,
                })
                .collect();
            let _ = writeln!(
                out,
                "recipients  {}",
                if recipients.is_empty() {
                    "none".to_owned()
                } else {
                    recipients.join(", ")
                }
            );
            let _ = writeln!(out, "variables   {}", names_of(file.names()));
            let _ = writeln!(
                out,
                "integrity   a MAC over every value, in order (checked when decrypted)"
            );
        }
        Format::Dotenvx => {
            let file = dotenvx::File::parse(&text, path)?;
            let _ = writeln!(out, "format      dotenvx");
            for key in file.public_keys() {
                let _ = writeln!(out, "public key  {key}");
            }
            let names: Vec<String> = file
                .names()
                .map(|(name, encrypted)| {
                    if encrypted {
                        name.to_owned()
                    } else {
                        format!("{name} (plain)")
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "variables   {}",
                names_of(names.iter().map(String::as_str))
            );
            let _ = writeln!(
                out,
                "integrity   each value on its own: a dropped line, or values swapped between names, is not detected"
            );
        }
    }
    Ok(out)
}

#[cfg(feature = "age")]
fn names_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.len() {
        0 => "none".into(),
        n => format!("{n}: {}", names.join(", ")),
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
