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

use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use hmac::{KeyInit, Mac};
use http::HeaderName;
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::keystore::{KeyRecord, KeyStore, Restriction, parse_key};
use crate::config::{ApiKeyConfig, Secret, usable_cores};
use crate::metrics::{KeyVerificationLabels, Metrics};
use crate::reject::{Rejection, Stage};

/// Failed keys are remembered this long, so a retry storm of one wrong key costs one hash.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Verifications allowed to wait for a slot, per slot.
const QUEUE_PER_SLOT: usize = 16;

/// Why a key was refused (for the log; the client sees `invalid_api_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Malformed,
    UnknownId,
    WrongSecret,
    Restricted(Restriction),
    /// The verification queue is full: 503, try again.
    Overloaded,
    /// The verification itself failed (its task panicked or was cancelled): a fault, 500,
    /// never cached as a verdict on the key.
    Fault,
    /// The store could not be re-read for longer than `max_store_age`: 503, no key is
    /// trusted from a copy that may miss a revocation.
    Stale,
}

impl KeyError {
    pub fn reason(self) -> &'static str {
        match self {
            KeyError::Malformed => "malformed key",
            KeyError::UnknownId => "unknown key id",
            KeyError::WrongSecret => "wrong secret",
            KeyError::Restricted(Restriction::Disabled) => "key disabled",
            KeyError::Restricted(Restriction::Expired) => "key expired",
            KeyError::Restricted(Restriction::NotYetValid) => "key not yet valid",
            KeyError::Restricted(Restriction::Address) => "client address not allowed",
            KeyError::Overloaded => "verification queue full",
            KeyError::Fault => "verification failed inside moat",
            KeyError::Stale => "key store not re-read within max_store_age",
        }
    }
}

/// Every key failure is the same 401 to the client (the log says which); a full queue is
/// 503 and a fault 500, never a verdict on the key.
impl From<KeyError> for Rejection {
    fn from(error: KeyError) -> Rejection {
        match error {
            KeyError::Overloaded => Rejection::Overloaded,
            KeyError::Fault => Rejection::Internal(Stage::Authenticate),
            KeyError::Stale => Rejection::KeyStoreStale,
            KeyError::Malformed
            | KeyError::UnknownId
            | KeyError::WrongSecret
            | KeyError::Restricted(_) => Rejection::InvalidApiKey,
        }
    }
}

/// Where a request carries its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Header(HeaderName),
    Query(String),
    Cookie(String),
}

impl KeyLocation {
    /// As OpenAPI's `in` and `name` say it.
    pub fn spec_terms(&self) -> (&'static str, &str) {
        match self {
            KeyLocation::Header(name) => ("header", name.as_str()),
            KeyLocation::Query(name) => ("query", name),
            KeyLocation::Cookie(name) => ("cookie", name),
        }
    }
}

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
    pepper: Option<Secret>,
    digest_key: [u8; 32],
    /// Async, so concurrent first uses of one key wait for a single hash (`try_get_with`).
    verified: moka::future::Cache<[u8; 32], Verified>,
    /// The previous snapshot's successes (same config, same digest key), read through on a
    /// miss and taken over only for records that did not change.
    inherited: Option<moka::future::Cache<[u8; 32], Verified>>,
    refused: moka::sync::Cache<[u8; 32], ()>,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue_limit: usize,
    metrics: Option<Arc<Metrics>>,
    /// [`verify_hash`]; a test puts a failing one here to see faults handled as faults.
    hash_verifier: fn(&str, &str, Option<&Secret>) -> bool,
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
    /// The key store this verifier checks against.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// The file the store is read from.
    pub fn store_path(&self) -> &std::path::Path {
        &self.config.store
    }

    /// Re-reads the store file (blocking: call it off the runtime). The same content makes
    /// the serving store fresh again; `Ok(false)`: the file changed, reload it.
    pub fn reread_store(&self) -> Result<bool, Vec<String>> {
        let current = KeyStore::reload(&self.config.store)?;
        if current.digest == self.store.digest {
            self.store.confirm();
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub fn max_store_age(&self) -> Option<std::time::Duration> {
        self.config.max_store_age
    }

    /// (age, `max_store_age`) when the store is older than its `max_store_age`.
    pub fn staleness(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        let max = self.config.max_store_age?;
        let age = self.store.age();
        (age > max).then_some((age, max))
    }

    /// `workers`: concurrent hashes (`limits.hash_workers`); `None`: one per core.
    pub fn new(
        config: &ApiKeyConfig,
        store: KeyStore,
        workers: Option<usize>,
    ) -> Result<Self, String> {
        let location = match (&config.query, &config.cookie) {
            (Some(_), Some(_)) => return Err("give `query` or `cookie`, not both".to_owned()),
            (Some(name), None) => KeyLocation::Query(name.clone()),
            (None, Some(name)) => KeyLocation::Cookie(name.clone()),
            (None, None) => KeyLocation::Header(
                HeaderName::from_bytes(config.header.as_bytes())
                    .map_err(|_| format!("`header: {}` is not a header name", config.header))?,
            ),
        };
        if let Some(pepper) = &config.pepper
            && pepper.expose().len() > 64
        {
            return Err("`pepper` must be at most 64 bytes".to_owned());
        }
        let slots = workers.unwrap_or_else(usable_cores).max(1);
        let mut digest_key = [0u8; 32];
        rand::fill(&mut digest_key);
        Ok(Self {
            location,
            bearer: config.bearer,
            config: config.clone(),
            store: Arc::new(store),
            pepper: config.pepper.clone().filter(|p| !p.expose().is_empty()),
            digest_key,
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
            waiting: AtomicUsize::new(0),
            queue_limit: slots * QUEUE_PER_SLOT,
            metrics: None,
            hash_verifier: verify_hash,
        })
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
        }
        self
    }

    /// Verifies `key` for a request from `client`; returns the key's record.
    pub async fn verify(&self, key: &str, client: IpAddr) -> Result<Arc<KeyRecord>, KeyError> {
        let Some(id) = parse_key(key) else {
            self.count("malformed", "none");
            return Err(KeyError::Malformed);
        };
        if self.staleness().is_some() {
            self.count("stale", "none");
            return Err(KeyError::Stale);
        }
        let Some(record) = self.store.records.get(id).cloned() else {
            self.count("unknown", "none");
            return Err(KeyError::UnknownId);
        };
        let digest = self.digest(key);
        if let Some(verified) = self.cached(&digest, &record).await {
            self.count("valid", "hit");
            return admit(verified.record, client);
        }
        if self.refused.contains_key(&digest) {
            self.count("invalid", "hit");
            return Err(KeyError::WrongSecret);
        }
        // Concurrent requests with the same key share this one verification.
        let verified = self
            .verified
            .try_get_with(digest, async {
                match self.hash_check(key, &record).await {
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
            })
            .await;
        match verified {
            Ok(verified) => admit(verified.record, client),
            Err(error) => {
                if *error == KeyError::WrongSecret {
                    self.refused.insert(digest, ());
                }
                Err(*error)
            }
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
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.count("overloaded", "miss");
            return Err(KeyError::Overloaded);
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let Ok(permit) = permit else {
            return Err(KeyError::Fault);
        };
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

    fn digest(&self, key: &str) -> [u8; 32] {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.digest_key)
            .expect("HMAC takes any key length");
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

fn admit(record: Arc<KeyRecord>, client: IpAddr) -> Result<Arc<KeyRecord>, KeyError> {
    record
        .admits(client, SystemTime::now())
        .map_err(KeyError::Restricted)?;
    Ok(record)
}

/// argon2 with the optional pepper as its secret input; the comparison inside is
/// constant-time.
pub fn verify_hash(key: &str, hash: &str, pepper: Option<&Secret>) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(hash) else {
        return false;
    };
    // The hash's own parameters are used for verifying; `hasher` only supplies the pepper.
    hasher(pepper).is_ok_and(|hasher| hasher.verify_password(key.as_bytes(), &parsed).is_ok())
}

/// The PHC hash of `key`, with the optional pepper (what `moat keys` stores).
pub fn hash_key(key: &str, pepper: Option<&Secret>) -> Result<String, String> {
    use argon2::PasswordHasher;
    hasher(pepper)?
        .hash_password(key.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// argon2id with the default parameters and the pepper, if any, as its secret input.
fn hasher(pepper: Option<&Secret>) -> Result<Argon2<'_>, String> {
    match pepper {
        Some(pepper) => Argon2::new_with_secret(
            pepper.expose().as_bytes(),
            Algorithm::Argon2id,
            Version::V0x13,
            Params::default(),
        )
        .map_err(|e| e.to_string()),
        None => Ok(Argon2::default()),
    }
}

#[cfg(test)]
mod tests;
