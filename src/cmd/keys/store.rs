//! `moat keys`: mint, hash, list, revoke and rotate API keys in the key store. A new key is
//! printed once, to stdout, and nothing else secret is printed anywhere; the store keeps
//! only its argon2id hash. Writes are atomic (temporary file + rename, mode 0600) and keep
//! the rest of the file, comments included, where its layout allows (see `store_edit`).
//!
//! The store and the pepper come from the config, read as `serve` reads it (dotenv,
//! encrypted dotenv, `VAR_FILE`), so a minted key verifies under `serve`: a pepper kept in
//! `.env` is the pepper both use.

mod edit;
mod foreign;
mod list;
mod opened;
mod record;
mod target;
mod transfer;

use std::path::Path;

use crate::auth::keystore::{self, KeyStore};
use crate::auth::store_edit::StoreText;

pub use edit::{hash_stdin, new, revoke, rotate};
pub use foreign::Gateway;
pub use list::list;
pub use record::NewKey;
pub use target::{Choice, Target};
pub use transfer::{export, import};

/// The store at `path` as `serve` would load it, and its text ready for editing. A missing
/// file is an empty store (the first `moat keys new` creates it).
fn read_store(path: &Path) -> Result<(StoreText, KeyStore), String> {
    let text = match path.try_exists() {
        Ok(false) => String::new(),
        _ => crate::input::read_to_string(path, crate::input::Kind::KeyStore)?,
    };
    let store =
        KeyStore::parse(&text).map_err(|p| format!("{}: {}", path.display(), p.join("; ")))?;
    let editable = StoreText::parse(text).map_err(|p| format!("{}: {p}", path.display()))?;
    Ok((editable, store))
}

/// Checks the edited store still loads, then writes it atomically (mode 0600).
fn write_store(path: &Path, edited: StoreText) -> Result<KeyStore, String> {
    let (text, rewritten) = edited.into_text();
    let store = KeyStore::parse(&text).map_err(|p| {
        format!(
            "{}: the edit would break the store ({}); nothing written",
            path.display(),
            p.join("; ")
        )
    })?;
    keystore::write_atomically(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    if rewritten {
        eprintln!(
            "{}: rewritten as block YAML (its layout allowed no line edit; comments in it are gone)",
            path.display()
        );
    }
    Ok(store)
}
