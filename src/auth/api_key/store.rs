//! The verifier's key store and its freshness: re-read on a timer, and refused whole once
//! it has not been read for longer than `max_store_age`.

use std::path::Path;
use std::time::Duration;

use super::ApiKeyVerifier;
use crate::auth::keystore::KeyStore;

impl ApiKeyVerifier {
    /// The key store this verifier checks against.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// The file the store is read from.
    pub fn store_path(&self) -> &Path {
        &self.config.store
    }

    /// Re-reads the store file (blocking: call it off the runtime). The same content makes
    /// the serving store fresh again; `Ok(false)`: the file changed, reload it.
    pub fn reread_store(&self) -> Result<bool, Vec<String>> {
        let same = KeyStore::reload(&self.config.store)?.digest == self.store.digest;
        if same {
            self.store.confirm();
        }
        Ok(same)
    }

    pub fn max_store_age(&self) -> Option<Duration> {
        self.config.max_store_age
    }

    /// (age, `max_store_age`) when the store is older than its `max_store_age`.
    pub fn staleness(&self) -> Option<(Duration, Duration)> {
        let max = self.config.max_store_age?;
        let age = self.store.age();
        (age > max).then_some((age, max))
    }
}
