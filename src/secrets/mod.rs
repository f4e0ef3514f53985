//! Secret material that lives outside the config text: the permission rule for files that
//! hold secrets, dotenv parsing, and encrypted dotenv files (design §4) in three formats —
//! moat's own age file, SOPS dotenv and dotenvx — decrypted in memory only.

use std::path::Path;

use zeroize::Zeroizing;

#[cfg(feature = "age")]
mod age_file;
mod dotenv;
#[cfg(feature = "age")]
mod dotenvx;
pub(crate) mod fuzz;
#[cfg(feature = "age")]
mod inspect;
mod permissions;
#[cfg(feature = "age")]
mod sops;

#[cfg(feature = "age")]
pub use self::age_file::{encrypt, identity_files, keygen};
pub use self::dotenv::{Variables, parse_dotenv};
#[cfg(feature = "age")]
use self::dotenv::{parse_dotenv_ordered, valid_name};
#[cfg(feature = "age")]
pub use self::inspect::inspect;
pub use self::permissions::{check_permissions, refuse_world_writable};

/// The variable holding an age identity (the `AGE-SECRET-KEY-1…` line, or a whole identity
/// file's text); `MOAT_AGE_IDENTITY_FILE` names a file instead.
pub const IDENTITY_VAR: &str = "MOAT_AGE_IDENTITY";
pub const IDENTITY_FILE_VAR: &str = "MOAT_AGE_IDENTITY_FILE";

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
        Err(unknown_format(text))
    }
}

/// What a text that is none of the three formats looks like instead.
fn unknown_format(text: &str) -> String {
    if text.contains("\"sops\":") || text.lines().any(|l| l.starts_with("sops:")) {
        return "it is a SOPS YAML or JSON file; moat reads SOPS dotenv files: \
                `sops -e --input-type dotenv --output-type dotenv .env > .env.enc`"
            .into();
    }
    "it is not an encrypted dotenv file moat knows (age, SOPS dotenv, dotenvx); a plain .env \
     belongs in `env.dotenv`"
        .into()
}

/// What `env.encrypted_dotenv` decrypted to.
pub struct EnvFile {
    pub format: Format,
    pub variables: Variables,
}

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
        out.extend_from_slice(dotenv_line(format, name, value).as_bytes());
    }
    Ok(out)
}

/// One variable as a dotenv line that reads back as the same value: quoted for dotenvx,
/// SOPS's `\n` escape otherwise.
#[cfg_attr(not(feature = "age"), allow(dead_code))]
fn dotenv_line(format: Format, name: &str, value: &str) -> Zeroizing<String> {
    Zeroizing::new(match format {
        Format::Dotenvx if value.contains(['\'', '\n']) => format!(
            "{name}=\"{}\"\n",
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        ),
        Format::Dotenvx => format!("{name}='{value}'\n"),
        _ => format!("{name}={}\n", value.replace('\n', "\\n")),
    })
}
