//! dotenvx files (`dotenvx encrypt`): a dotenv file whose values are `encrypted:` +
//! base64 of an ECIES message (secp256k1, AES-256-GCM; the `ecies` crate is the Rust member
//! of the family eciesjs, which dotenvx uses, belongs to), decrypted in memory with the
//! private key from `DOTENV_PRIVATE_KEY[_ENV]` or a `.env.keys` file.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::{Variables, check_permissions, parse_dotenv_ordered};

const PUBLIC: &str = "DOTENV_PUBLIC_KEY";
const PRIVATE: &str = "DOTENV_PRIVATE_KEY";
const PREFIX: &str = "encrypted:";

/// Whether `text` is a dotenvx file: a public-key line, or a value dotenvx encrypted.
pub fn detect(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line);
        line.starts_with(PUBLIC)
            || line.split_once('=').is_some_and(|(_, value)| {
                value
                    .trim_start()
                    .trim_start_matches(['"', '\''])
                    .starts_with(PREFIX)
            })
    })
}

/// A dotenvx file, parsed (dotenv syntax) but not decrypted.
pub struct File {
    /// Every variable but the public keys, in file order, values as written.
    items: Vec<(String, Zeroizing<String>)>,
    /// The `DOTENV_PUBLIC_KEY[_ENV]` lines: `(environment suffix, hex key)`.
    public_keys: Vec<(String, String)>,
}

impl File {
    pub fn parse(text: &[u8], path: &Path) -> Result<File, String> {
        let mut items = Vec::new();
        let mut public_keys = Vec::new();
        for (name, value) in parse_dotenv_ordered(text)? {
            if let Some(suffix) = name.strip_prefix(PUBLIC) {
                public_keys.push((suffix.to_owned(), value.as_str().to_owned()));
            } else if name.starts_with(PRIVATE) {
                return Err(format!(
                    "it holds `{name}`, the private key, next to what it encrypts: anyone who \
                     can read the file can decrypt it. Move the key to .env.keys (not committed) \
                     or the environment, and rotate it (`dotenvx rotate`)"
                ));
            } else {
                items.push((name, value));
            }
        }
        if public_keys.is_empty() {
            // dotenvx's older files carry no public key: the environment comes from the name.
            public_keys.push((suffix_from_file_name(path), String::new()));
        }
        Ok(File { items, public_keys })
    }

    pub fn names(&self) -> impl Iterator<Item = (&str, bool)> {
        self.items
            .iter()
            .map(|(name, value)| (name.as_str(), value.starts_with(PREFIX)))
    }

    pub fn public_keys(&self) -> impl Iterator<Item = String> {
        self.public_keys
            .iter()
            .map(|(suffix, key)| format!("{PUBLIC}{suffix}={key}"))
    }

    /// Decrypts every `encrypted:` value; plain values are kept as written.
    pub fn decrypt(self, keys_file: Option<&Path>) -> Result<Variables, String> {
        let secret = self.private_key(keys_file)?;
        let mut variables = Vec::with_capacity(self.items.len());
        for (name, value) in self.items {
            let plaintext = match value.strip_prefix(PREFIX) {
                Some(encoded) => decrypt_value(&secret, &name, encoded)?,
                None => value,
            };
            variables.push((name, plaintext));
        }
        Ok(variables)
    }

    /// The private key for one of the file's public keys: from `DOTENV_PRIVATE_KEY[_ENV]`
    /// (comma-separated keys allowed, as dotenvx does), else from `keys_file`.
    fn private_key(&self, keys_file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, String> {
        let (from_file, keys_origin) = read_keys_file(keys_file)?;
        let mut tried = Vec::new();
        for (suffix, public) in &self.public_keys {
            let name = format!("{PRIVATE}{suffix}");
            let candidates = candidates(&name, &from_file, &keys_origin);
            for (value, origin) in &candidates {
                if let Some(key) = key_for(value, origin, public)? {
                    return Ok(key);
                }
                tried.push(origin.clone());
            }
            if candidates.is_empty() {
                tried.push(format!("${name} (unset)"));
            }
        }
        Err(self.no_private_key(&tried, keys_file.is_some()))
    }

    /// What was tried, and what to set.
    fn no_private_key(&self, tried: &[String], keys_file_given: bool) -> String {
        let publics: Vec<&str> = self.public_keys.iter().map(|(_, k)| k.as_str()).collect();
        let hint = if keys_file_given {
            ""
        } else {
            " or name the .env.keys file in `env.dotenv_keys`"
        };
        format!(
            "no private key for {PUBLIC} {}: tried {}; set {}{hint}",
            publics.join(", "),
            tried.join(", "),
            self.public_keys
                .iter()
                .map(|(suffix, _)| format!("{PRIVATE}{suffix}"))
                .collect::<Vec<_>>()
                .join(" or "),
        )
    }
}

/// One `encrypted:` value (the base64 after the prefix), decrypted with `secret`.
fn decrypt_value(secret: &[u8], name: &str, encoded: &str) -> Result<Zeroizing<String>, String> {
    let plaintext = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|message| ecies::decrypt(secret, &message).ok())
        .ok_or_else(|| {
            format!(
                "`{name}` does not decrypt: the value was changed, or encrypted to \
                 another key (set it again with `dotenvx set {name} …`)"
            )
        })?;
    String::from_utf8(plaintext)
        .map(Zeroizing::new)
        .map_err(|_| format!("`{name}` decrypts to bytes that are not UTF-8"))
}

/// The variables of `env.dotenv_keys`, if given, and where they came from.
fn read_keys_file(keys_file: Option<&Path>) -> Result<(Variables, String), String> {
    let Some(path) = keys_file else {
        return Ok((Vec::new(), String::new()));
    };
    check_permissions(path, "dotenvx keys file (env.dotenv_keys)")?;
    let text = Zeroizing::new(
        crate::input::read(path, crate::input::Kind::EnvFile)
            .map_err(|e| format!("env.dotenv_keys: {e}"))?,
    );
    let keys = parse_dotenv_ordered(&text)
        .map_err(|e| format!("env.dotenv_keys ({}): {e}", path.display()))?;
    Ok((keys, path.display().to_string()))
}

/// The values the private key `name` may have, each with where it came from: the
/// environment first, then the keys file.
fn candidates(
    name: &str,
    from_file: &Variables,
    keys_origin: &str,
) -> Vec<(Zeroizing<String>, String)> {
    let mut candidates = Vec::new();
    if let Ok(value) = std::env::var(name) {
        candidates.push((Zeroizing::new(value), format!("${name}")));
    }
    if let Some((_, value)) = from_file.iter().find(|(n, _)| n == name) {
        candidates.push((value.clone(), format!("{name} in {keys_origin}")));
    }
    candidates
}

/// The key among a candidate's comma-separated ones that belongs to `public` (any key when
/// the file names no public key); a key that is not 64 hex digits is an error.
fn key_for(value: &str, origin: &str, public: &str) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    for hex in value.split(',') {
        let key = decode_secret(hex.trim())
            .ok_or_else(|| format!("{origin} is not a dotenvx private key (64 hex digits)"))?;
        if public.is_empty() || public_of(&key).as_deref() == Some(public) {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

fn decode_secret(hex: &str) -> Option<Zeroizing<Vec<u8>>> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Zeroizing::new(bytes))
}

/// The compressed public key, as dotenvx writes it (hex, lower case).
fn public_of(secret: &[u8]) -> Option<String> {
    use std::fmt::Write as _;
    let secret = ecies::SecretKey::parse_slice(secret).ok()?;
    let public = ecies::PublicKey::from_secret_key(&secret).serialize_compressed();
    Some(public.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    }))
}

/// `.env` → ``, `.env.production` → `_PRODUCTION` (dotenvx's naming of keys).
fn suffix_from_file_name(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name.strip_prefix(".env.") {
        Some(environment) if !environment.is_empty() => {
            format!(
                "_{}",
                environment.replace(['.', '-'], "_").to_ascii_uppercase()
            )
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn round_trips_an_ecies_value_and_names_a_wrong_key() {
        let (secret, public) = ecies::utils::generate_keypair();
        let sealed =
            ecies::encrypt(&public.serialize_compressed(), "a=b \"c\" ✓\nd".as_bytes()).unwrap();
        let public_hex = public_of(&secret.serialize()).unwrap();
        let text = format!(
            "{PUBLIC}=\"{public_hex}\"\nTOKEN=\"{PREFIX}{}\"\nPORT=8080\n",
            STANDARD.encode(sealed)
        );
        let file = File::parse(text.as_bytes(), Path::new(".env")).unwrap();
        let keys = tempfile::NamedTempFile::new().unwrap();
        let secret_hex = hex(&secret.serialize());
        std::fs::write(keys.path(), format!("{PRIVATE}={secret_hex}\n")).unwrap();
        let variables = file.decrypt(Some(keys.path())).unwrap();
        assert_eq!(&*variables[0].1, "a=b \"c\" ✓\nd");
        assert_eq!(&*variables[1].1, "8080");

        let (other, _) = ecies::utils::generate_keypair();
        let other_hex = hex(&other.serialize());
        std::fs::write(keys.path(), format!("{PRIVATE}={other_hex}\n")).unwrap();
        let file = File::parse(text.as_bytes(), Path::new(".env")).unwrap();
        let error = file.decrypt(Some(keys.path())).unwrap_err();
        assert!(
            error.contains(&public_hex) && !error.contains(&other_hex),
            "{error}"
        );
    }

    #[test]
    fn a_private_key_inside_the_file_is_refused() {
        let text = format!("{PUBLIC}=02ab\n{PRIVATE}=00\nA=encrypted:xx\n");
        let error = File::parse(text.as_bytes(), Path::new(".env"))
            .err()
            .unwrap();
        assert!(error.contains("private key"), "{error}");
    }

    #[test]
    fn environment_suffixes_follow_dotenvx() {
        assert_eq!(suffix_from_file_name(Path::new("/x/.env")), "");
        assert_eq!(
            suffix_from_file_name(Path::new(".env.production")),
            "_PRODUCTION"
        );
    }
}
