//! Fuzz targets of the secret-file readers (`fuzz/`, replayed by `tests/fuzz_targets.rs`).
//! `dotenv`: any bytes are variables in file order, each name once, or an error.
//! `encrypted_env`: the age, SOPS and dotenvx readers take any bytes to an error or a file,
//! and nothing decrypts without the key (a file a fuzzer wrote cannot name moat's).

use std::collections::HashSet;

use super::dotenv::parse_dotenv_ordered;

pub fn dotenv(bytes: &[u8]) {
    if let Ok(variables) = parse_dotenv_ordered(bytes) {
        let mut names = HashSet::new();
        assert!(
            variables
                .iter()
                .all(|(name, _)| names.insert(name.as_str()))
        );
    }
}

#[cfg(feature = "age")]
pub use self::encrypted::encrypted_env;

#[cfg(feature = "age")]
mod encrypted {
    use std::path::Path;
    use std::sync::LazyLock;

    use super::super::age_file::{IdentitySource, decrypt_with, keygen, parse_identities};
    use super::super::{Format, dotenvx, sops};

    /// An identity the input never holds the key of.
    static IDENTITY: LazyLock<Vec<IdentitySource>> = LazyLock::new(|| {
        let (identity, _recipient) = keygen();
        let source = parse_identities(&identity, "the fuzz identity".to_owned());
        vec![source.unwrap_or_else(|e| panic!("{e}"))]
    });

    pub fn encrypted_env(bytes: &[u8]) {
        let _ = Format::detect(bytes);
        assert!(
            decrypt_with(&IDENTITY, bytes).is_err(),
            "decrypted without the key"
        );
        if let Ok(file) = sops::File::parse(bytes) {
            let _ = file.version();
            let _ = file.names().count();
            assert!(
                file.decrypt(&IDENTITY).is_err(),
                "decrypted without the key"
            );
        }
        if let Ok(file) = dotenvx::File::parse(bytes, Path::new(".env.production")) {
            let _ = file.names().count();
            let _ = file.public_keys().count();
        }
    }
}
