//! Stage 3, API keys (design §3). A malformed key or an unknown id is refused at once, with
//! no hash computed. Otherwise the argon2id verification (~20 ms, 19 MiB) runs on the
//! blocking pool behind a semaphore with one slot per core and a bounded queue — a full
//! queue is 503, never an unbounded wait — and its result is cached under an HMAC of the key
//! with a per-process random key, so the plaintext is never held: successes for
//! `cache_ttl`, failures briefly. Every failure gives the client the same 401.
//!
//! A reload with an unchanged scheme config inherits the previous verifier's successes:
//! a key whose record is exactly as it was is not hashed again, while a record that was
//! revoked, removed or edited in any way misses the inherited entry and is checked afresh.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod error;
mod hashing;
mod legacy;
mod location;
mod store;

pub use self::error::KeyError;
pub use self::hashing::{hash_key, verify_hash};
use self::hashing::{pepper, random_digest_key};
pub use self::location::KeyLocation;
use super::keystore::{KeyRecord, KeyStore, parse_key};
use crate::config::{ApiKeyConfig, Secret, usable_cores};
use crate::metrics::{KeyVerificationLabels, Metrics};

/// Failed keys are remembered this long, so a retry storm of one wrong key costs one hash.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Verifications allowed to wait for a slot, per slot.
const QUEUE_PER_SLOT: usize = 16;

/// A successful verification: the record it admitted, and when (for `cache_ttl`).
#[derive(Clone)]
struct Verified {
    record: Arc<KeyRecord>,
    at: Instant,
}

pub struct ApiKeyVerifier {
    pub location: KeyLocation,
    /// Also reads a key-shaped `Authorization: Bearer` value (`bearer: true`).
    pub bearer: bool,
    /// What this verifier was built from: a reload inherits its cache only when unchanged.
    config: ApiKeyConfig,
    store: Arc<KeyStore>,
    /// The Redis store this verifier's records were taken from, kept current by its
    /// follower; `None` for a file store.
    live: Option<Arc<super::live::LiveKeys>>,
    pepper: Option<Secret>,
    /// A whole HMAC-SHA256 block, so keying the MAC cannot fail.
    digest_key: [u8; 64],
    /// Async, so concurrent first uses of one key wait for a single hash (`try_get_with`).
    verified: moka::future::Cache<[u8; 32], Verified>,
    /// The previous snapshot's successes (same config, same digest key), read through on a
    /// miss and taken over only for records that did not change.
    inherited: Option<moka::future::Cache<[u8; 32], Verified>>,
    refused: moka::sync::Cache<[u8; 32], ()>,
    slots: Arc<Semaphore>,
    /// Key ids whose legacy SHA-256 is being replaced by argon2id (shared with the verifiers
    /// that inherit this one's cache, so a reload does not start a second).
    rehashing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    waiting: AtomicUsize,
    queue_limit: usize,
    metrics: Option<Arc<Metrics>>,
    /// [`verify_hash`]; a test puts a failing one here to see faults handled as faults.
    pub(super) hash_verifier: fn(&str, &str, Option<&Secret>) -> bool,
}

impl std::fmt::Debug for ApiKeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyVerifier")
            .field("location", &self.location)
            .field("keys", &self.store.records.len())
            .finish_non_exhaustive()
    }
}

impl ApiKeyVerifier {
    /// `workers`: concurrent hashes (`limits.hash_workers`); `None`: one per core.
    pub fn new(
        config: &ApiKeyConfig,
        store: KeyStore,
        workers: Option<usize>,
    ) -> Result<Self, String> {
        let slots = workers.unwrap_or_else(usable_cores).max(1);
        Ok(Self {
            location: KeyLocation::configured(config)?,
            bearer: config.bearer,
            config: config.clone(),
            store: Arc::new(store),
            live: None,
            pepper: pepper(config)?,
            digest_key: random_digest_key(),
            verified: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.cache_ttl)
                .build(),
            inherited: None,
            refused: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            slots: Arc::new(Semaphore::new(slots)),
            rehashing: Arc::default(),
            waiting: AtomicUsize::new(0),
            queue_limit: slots * QUEUE_PER_SLOT,
            metrics: None,
            hash_verifier: verify_hash,
        })
    }

    /// Records from a Redis store, which also decides their freshness.
    pub fn with_live(mut self, live: Arc<super::live::LiveKeys>) -> Self {
        self.live = Some(live);
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Inherits `previous`'s verified keys when both were built from the same config (same
    /// pepper, location and TTL); only its own entries, so reloads never chain caches.
    pub fn inherit(mut self, previous: &ApiKeyVerifier) -> Self {
        if self.config == previous.config {
            self.digest_key = previous.digest_key;
            self.inherited = Some(previous.verified.clone());
            self.rehashing = previous.rehashing.clone();
        }
        self
    }

    /// Verifies `key` for a request from `client`; returns the key's record.
    pub async fn verify(&self, key: &str, client: IpAddr) -> Result<Arc<KeyRecord>, KeyError> {
        let Some(id) = parse_key(key) else {
            return self.verify_legacy(key, client).await;
        };
        let record = self.record_of(id)?;
        let digest = self.digest(key);
        if let Some(verified) = self.cached(&digest, &record).await {
            self.count("valid", "hit");
            return within_restrictions(verified.record, client);
        }
        if self.refused.contains_key(&digest) {
            self.count("invalid", "hit");
            return Err(KeyError::WrongSecret);
        }
        // Concurrent requests with the same key share this one verification.
        let verified = self
            .verified
            .try_get_with(digest, self.hash_verified(key, &record))
            .await;
        match verified {
            Ok(verified) => within_restrictions(verified.record, client),
            Err(error) => {
                if *error == KeyError::WrongSecret {
                    self.refused.insert(digest, ());
                }
                Err(*error)
            }
        }
    }

    /// The record a key claims by its id, refused before any hash when the store is stale
    /// or the id unknown.
    fn record_of(&self, id: &str) -> Result<Arc<KeyRecord>, KeyError> {
        self.fresh()?;
        let Some(record) = self.store.records.get(id).cloned() else {
            self.count("unknown", "none");
            return Err(KeyError::UnknownId);
        };
        Ok(record)
    }

    /// The store is fresh enough to check keys against.
    fn fresh(&self) -> Result<(), KeyError> {
        if self.staleness().is_some() {
            self.count("stale", "none");
            return Err(KeyError::Stale);
        }
        Ok(())
    }

    /// A fresh success for `record` when `key` hashes to it, else why not.
    async fn hash_verified(
        &self,
        key: &str,
        record: &Arc<KeyRecord>,
    ) -> Result<Verified, KeyError> {
        match self.hash_check(key, record).await {
            Ok(true) => {
                self.count("valid", "miss");
                Ok(Verified {
                    record: record.clone(),
                    at: Instant::now(),
                })
            }
            Ok(false) => {
                self.count("invalid", "miss");
                Err(KeyError::WrongSecret)
            }
            Err(error) => Err(error),
        }
    }

    /// A success still within `cache_ttl` of its hash, for this very record: from this
    /// verifier's cache, or inherited from the previous snapshot's if the record is unchanged.
    async fn cached(&self, digest: &[u8; 32], record: &Arc<KeyRecord>) -> Option<Verified> {
        let fresh = |verified: &Verified| verified.at.elapsed() < self.config.cache_ttl;
        if let Some(verified) = self.verified.get(digest).await {
            return fresh(&verified).then_some(verified);
        }
        let inherited = self.inherited.as_ref()?.get(digest).await?;
        if !fresh(&inherited) || *inherited.record != **record {
            return None;
        }
        let verified = Verified {
            record: record.clone(),
            at: inherited.at,
        };
        self.verified.insert(*digest, verified.clone()).await;
        Some(verified)
    }

    /// The argon2 verification, off the async runtime, within the bounded pool.
    async fn hash_check(&self, key: &str, record: &KeyRecord) -> Result<bool, KeyError> {
        let permit = self.slot().await?;
        let key = key.to_owned();
        let hash = record.hash.clone();
        let pepper = self.pepper.clone();
        let verify = self.hash_verifier;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify(&key, &hash, pepper.as_ref())
        })
        .await;
        result.map_err(|error| {
            // A panic inside argon2 or a runtime shutting down: no verdict on the key.
            tracing::error!(key_id = %record.id, error = %error, "API-key verification task failed");
            self.count("error", "miss");
            KeyError::Fault
        })
    }

    /// A slot in the pool, waited for in the bounded queue; a full queue is refused at once.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, KeyError> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.count("overloaded", "miss");
            return Err(KeyError::Overloaded);
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| KeyError::Fault)
    }

    fn digest(&self, key: &str) -> [u8; 32] {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new(&self.digest_key.into());
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn count(&self, result: &'static str, cache: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .key_verifications
                .get_or_create(&KeyVerificationLabels { result, cache })
                .inc();
        }
    }
}

/// The verified record, if its time, state and address restrictions admit `client` now.
fn within_restrictions(record: Arc<KeyRecord>, client: IpAddr) -> Result<Arc<KeyRecord>, KeyError> {
    record
        .admits(client, SystemTime::now())
        .map_err(KeyError::Restricted)?;
    Ok(record)
}

#[cfg(test)]
mod tests;
