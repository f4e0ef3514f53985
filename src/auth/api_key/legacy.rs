//! Keys imported from gateways that kept an unsalted SHA-256 of each key (LiteLLM, Unkey,
//! agentgateway's `sha256:`). Their keys are not moat-shaped, so they carry no id: a key
//! finds its record by a tag, the first 32 bits of its SHA-256 (with 100,000 legacy keys, a
//! made-up key reaches a record once in 40,000 tries, so guessing still costs no hashes).
//! A record still holding the SHA-256 is checked against it — once: the first success
//! hashes the key with argon2id (and the pepper) and writes the record back with that hash
//! and the tag, so what the store keeps is what `moat keys new` would have made. The tag
//! narrows an offline guess by 32 bits, which matters only for keys of little entropy —
//! the keys these gateways mint carry 128 bits or more.

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiKeyVerifier, KeyError, hash_key, within_restrictions};
use crate::auth::keystore::{KeyRecord, hex};
use crate::config::KeySource;

/// How long after a failed write-back the key is re-hashed again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

impl ApiKeyVerifier {
    /// A key that is not moat-shaped: malformed, unless the store holds legacy records.
    pub(super) async fn verify_legacy(
        &self,
        key: &str,
        client: IpAddr,
    ) -> Result<Arc<KeyRecord>, KeyError> {
        if self.store.legacy.is_empty() || key.is_empty() {
            self.count("malformed", "none");
            return Err(KeyError::Malformed);
        }
        self.fresh()?;
        let sha: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let tag = u32::from_be_bytes([sha[0], sha[1], sha[2], sha[3]]);
        let Some(candidates) = self.store.legacy.get(&tag) else {
            self.count("unknown", "none");
            return Err(KeyError::UnknownId);
        };
        let sha_hex = hex(&sha);
        for record in candidates {
            if let Some(expected) = &record.legacy_sha256
                && bool::from(expected.as_bytes().ct_eq(sha_hex.as_bytes()))
            {
                self.count("valid", "none");
                self.rehash_later(key, record, &sha_hex);
                return within_restrictions(record.clone(), client);
            }
        }
        self.verify_rehashed(key, candidates, client).await
    }

    /// The candidates already re-hashed: each verified like a moat key's record.
    async fn verify_rehashed(
        &self,
        key: &str,
        candidates: &[Arc<KeyRecord>],
        client: IpAddr,
    ) -> Result<Arc<KeyRecord>, KeyError> {
        let digest = self.digest(key);
        let rehashed = || candidates.iter().filter(|r| r.legacy_sha256.is_none());
        for record in rehashed() {
            if let Some(verified) = self.cached(&digest, record).await {
                self.count("valid", "hit");
                return within_restrictions(verified.record, client);
            }
        }
        if self.refused.contains_key(&digest) {
            self.count("invalid", "hit");
            return Err(KeyError::WrongSecret);
        }
        // Not coalesced through the cache as a moat key is: two records may share a tag,
        // and a failure against one is no verdict on the other.
        for record in rehashed() {
            match self.hash_verified(key, record).await {
                Ok(verified) => {
                    self.verified.insert(digest, verified.clone()).await;
                    return within_restrictions(verified.record, client);
                }
                Err(KeyError::WrongSecret) => {}
                Err(error) => return Err(error),
            }
        }
        self.refused.insert(digest, ());
        Err(KeyError::WrongSecret)
    }

    /// Hashes `key` with argon2id in the background and writes the record back with it.
    fn rehash_later(&self, key: &str, record: &Arc<KeyRecord>, sha_hex: &str) {
        let id = record.id.to_string();
        {
            let mut rehashing = self
                .rehashing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !rehashing.insert(id.clone()) {
                return;
            }
        }
        let job = Rehash {
            key: key.to_owned(),
            id,
            sha_hex: sha_hex.to_owned(),
            pepper: self.pepper.clone(),
            slots: self.slots.clone(),
            store: self.config.store.clone(),
            live: self.live.clone(),
            rehashing: self.rehashing.clone(),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(job.run());
        }
    }
}

/// One legacy key to re-hash and write back.
struct Rehash {
    key: String,
    id: String,
    sha_hex: String,
    pepper: Option<crate::config::Secret>,
    slots: Arc<tokio::sync::Semaphore>,
    store: KeySource,
    live: Option<Arc<crate::auth::live::LiveKeys>>,
    rehashing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Rehash {
    async fn run(self) {
        let written = self.hash_and_write().await;
        match &written {
            Ok(true) => {
                tracing::info!(key_id = %self.id, "legacy SHA-256 key re-hashed to argon2id and written back")
            }
            Ok(false) => {
                tracing::debug!(key_id = %self.id, "legacy key's record no longer holds its SHA-256: nothing to write")
            }
            Err(problem) => {
                tracing::warn!(key_id = %self.id, problem = %problem,
                    "cannot write back the argon2id hash of a legacy key; it keeps verifying by SHA-256 (tried again in 10 minutes)");
                // Not on every request: a read-only store (a mounted Secret) would cost an
                // argon2 hash per use of the key.
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
        let mut rehashing = self
            .rehashing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rehashing.remove(&self.id);
    }

    /// True when the record was written; false when it no longer holds the SHA-256.
    async fn hash_and_write(&self) -> Result<bool, String> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (key, pepper) = (self.key.clone(), self.pepper.clone());
        let hash = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_key(&key, pepper.as_ref())
        })
        .await
        .map_err(|e| e.to_string())??;
        let tag = self.sha_hex[..8].to_owned();
        match (&self.live, &self.store) {
            (Some(live), _) => {
                live.write_rehashed(&self.id, &self.sha_hex, &hash, &tag)
                    .await
            }
            (None, KeySource::File(path)) => {
                let (path, id, sha_hex) = (path.clone(), self.id.clone(), self.sha_hex.clone());
                tokio::task::spawn_blocking(move || write_file(&path, &id, &sha_hex, &hash, &tag))
                    .await
                    .map_err(|e| e.to_string())?
            }
            (None, KeySource::Redis(_)) => Err("no Redis store held".to_owned()),
        }
    }
}

/// The record `id` in a store file, rewritten with `hash` and `tag` in place of the
/// SHA-256 — unless it changed since (then nothing is written).
fn write_file(
    path: &std::path::Path,
    id: &str,
    sha_hex: &str,
    hash: &str,
    tag: &str,
) -> Result<bool, String> {
    use serde_json::Value;
    let original = crate::input::read_to_string(path, crate::input::Kind::KeyStore)?;
    let mut edited = crate::auth::store_edit::StoreText::parse(original.clone())?;
    let current = edited
        .record(id)
        .and_then(|r| r.get("legacy_sha256"))
        .and_then(Value::as_str);
    if current != Some(sha_hex) {
        return Ok(false);
    }
    edited.set(id, "hash", Value::from(hash))?;
    edited.set(id, "legacy_tag", Value::from(tag))?;
    edited.remove(id, "legacy_sha256")?;
    let (text, _) = edited.into_text();
    crate::auth::keystore::KeyStore::parse(&text).map_err(|p| p.join("; "))?;
    // `moat keys` may have written the file meanwhile (a revocation): then it decided.
    if crate::input::read_to_string(path, crate::input::Kind::KeyStore)? != original {
        return Ok(false);
    }
    crate::auth::keystore::write_atomically(path, &text)
        .map(|()| true)
        .map_err(|e| format!("{}: {e}", path.display()))
}
