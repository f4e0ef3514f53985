//! The verifier's key store and its freshness: re-read on a timer, and refused whole once
//! it has not been read for longer than `max_store_age`.

use std::sync::Arc;
use std::time::Duration;

use super::ApiKeyVerifier;
use crate::auth::keystore::KeyStore;
use crate::auth::live::LiveKeys;
use crate::config::KeySource;

impl ApiKeyVerifier {
    /// The key store this verifier checks against.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// Where the store is read from.
    pub fn store_source(&self) -> &KeySource {
        &self.config.store
    }

    /// The Redis store, when the records come from one.
    pub fn live(&self) -> Option<&Arc<LiveKeys>> {
        self.live.as_ref()
    }

    /// Re-reads a store file (blocking: call it off the runtime). The same content makes
    /// the serving store fresh again; `Ok(false)`: the file changed, reload it. A Redis
    /// store is kept fresh by its follower: nothing to read here.
    pub fn reread_store(&self) -> Result<bool, Vec<String>> {
        let KeySource::File(path) = &self.config.store else {
            return Ok(true);
        };
        let same = KeyStore::reload(path)?.digest == self.store.digest;
        if same {
            self.store.confirm();
        }
        Ok(same)
    }

    pub fn max_store_age(&self) -> Option<Duration> {
        self.config.max_store_age
    }

    /// (age, `max_store_age`) when the store is older than its `max_store_age` — or, for
    /// a Redis store, never read yet (then `max_store_age` is shown as 0 when unset).
    pub fn staleness(&self) -> Option<(Duration, Duration)> {
        if let Some(live) = &self.live
            && !live.synced()
        {
            return Some((live.age(), self.config.max_store_age.unwrap_or_default()));
        }
        let max = self.config.max_store_age?;
        let age = self
            .live
            .as_ref()
            .map_or_else(|| self.store.age(), |live| live.age());
        (age > max).then_some((age, max))
    }

    /// Since the records were last confirmed: the file read, or Redis answering.
    pub fn store_age(&self) -> Duration {
        self.live
            .as_ref()
            .map_or_else(|| self.store.age(), |live| live.age())
    }
}
