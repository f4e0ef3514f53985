//! A Redis key store as a replica holds it: the whole set in memory (a request never asks
//! Redis for a key), kept current by the changes Redis pushes (`follow`), and fresh while
//! Redis answers. A change is applied by the reload loop, which builds the serving
//! snapshot's verifiers again over [`LiveKeys::store`] (the key-store-only rebuild a file
//! store's change takes too), so limits, LLM rules and the verified-key cache follow the
//! records exactly as they do for a file.
//!
//! Whole set, not a bounded cache plus lookups: a key an attacker makes up must be refused
//! without a round trip (a lookup per unknown id would hand Redis the attack), and 100,000
//! records take ~120 MB — see the README's performance table.

mod follow;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::keystore::redis::{Change, Layout, records};
use super::keystore::{KeyRecord, KeyStore};
use crate::config::RedisKeysConfig;

pub struct LiveKeys {
    config: RedisKeysConfig,
    target: crate::redis_client::Target,
    layout: Layout,
    held: Mutex<Held>,
    /// Read whole from Redis at least once.
    synced: AtomicBool,
    /// Unix ms when Redis last answered and what it said is what the serving snapshot has:
    /// a held change the snapshot could not take (a failed rebuild) lets this age, so
    /// `max_store_age` fails closed instead of a revocation waiting unseen.
    confirmed_at: AtomicU64,
    /// Unix ms of the last whole read.
    read_whole_at: AtomicU64,
    /// Redis's clock (Unix ms) of the oldest change held but not yet serving; 0: none.
    pending_since: AtomicU64,
    /// How long the last change took from its write to serving (ms).
    last_lag_ms: AtomicU64,
    /// The version and content generation the last snapshot built took, and those the
    /// serving snapshot holds (set when it is swapped in).
    built: Mutex<(u64, u64)>,
    serving_version: AtomicU64,
    serving_generation: AtomicU64,
    following: AtomicBool,
    changed: Notify,
}

#[derive(Default)]
struct Held {
    records: HashMap<String, Arc<KeyRecord>>,
    version: u64,
    bytes: usize,
    /// Counts changes to `records` (a write past the script changes them at one version).
    generation: u64,
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKeys")
            .field("key_prefix", &self.config.key_prefix)
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl LiveKeys {
    /// The store read whole, blocking (at start, or when a reload names a new one). Redis
    /// not answering is no error: the store serves nothing (every key 503, `/readyz`
    /// unready) until the follower reaches it.
    pub fn open(config: &RedisKeysConfig) -> Result<Arc<LiveKeys>, String> {
        // An empty tag (`{}`) hashes the whole name, putting the two keys in two slots.
        if config.key_prefix.is_empty() || config.key_prefix.contains(['{', '}']) {
            return Err("`key_prefix` must be a non-empty name without braces".to_owned());
        }
        let target =
            crate::redis_client::target(&config.url, config.ca_file.as_deref(), config.timeout)?;
        let live = Arc::new(LiveKeys::unread(config.clone(), target));
        if let Err(error) = live.read_now() {
            tracing::warn!(key_prefix = %config.key_prefix, error = %error,
                "cannot read the key store from Redis; every key is refused (503) until it can");
        }
        Ok(live)
    }

    /// Holding nothing yet.
    fn unread(config: RedisKeysConfig, target: crate::redis_client::Target) -> LiveKeys {
        LiveKeys {
            layout: Layout::new(&config.key_prefix),
            config,
            target,
            held: Mutex::default(),
            synced: AtomicBool::new(false),
            confirmed_at: AtomicU64::new(unix_ms()),
            read_whole_at: AtomicU64::new(0),
            pending_since: AtomicU64::new(0),
            last_lag_ms: AtomicU64::new(0),
            built: Mutex::default(),
            serving_version: AtomicU64::new(0),
            serving_generation: AtomicU64::new(0),
            following: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn read_now(&self) -> redis::RedisResult<()> {
        let mut connection = self.target.connect_blocking()?;
        let (version, fields) = self.layout.read_all().invoke(connection.connection())?;
        self.replace(version, fields);
        Ok(())
    }

    pub fn config(&self) -> &RedisKeysConfig {
        &self.config
    }

    /// What a snapshot's verifier checks keys against: the records held now.
    pub fn store(&self) -> KeyStore {
        let held = self.held();
        let store = KeyStore::of_records(
            held.records.clone(),
            format!("v{}", held.version),
            held.bytes,
        );
        *lock(&self.built) = (held.version, held.generation);
        store
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Since Redis last confirmed the held records.
    pub fn age(&self) -> Duration {
        Duration::from_millis(unix_ms().saturating_sub(self.confirmed_at.load(Ordering::Relaxed)))
    }

    pub fn version(&self) -> u64 {
        self.serving_version.load(Ordering::Relaxed)
    }

    /// From the last change's write in Redis to its serving here.
    pub fn last_lag(&self) -> Duration {
        Duration::from_millis(self.last_lag_ms.load(Ordering::Relaxed))
    }

    /// Wakes when a change is held that the serving snapshot lacks.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// The snapshot last built now serves: its version, and the lag of the changes it took.
    pub fn applied(&self) {
        let (version, generation) = *lock(&self.built);
        self.serving_version.store(version, Ordering::Relaxed);
        self.serving_generation.store(generation, Ordering::Relaxed);
        self.answered();
        let since = self.pending_since.swap(0, Ordering::AcqRel);
        if since == 0 {
            return;
        }
        let lag = unix_ms().saturating_sub(since);
        self.last_lag_ms.store(lag, Ordering::Relaxed);
        tracing::info!(key_prefix = %self.config.key_prefix, version = self.version(),
            lag_ms = lag, "key store change applied");
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        lock(&self.held)
    }

    /// Redis answered: what this replica serves is confirmed if it is what Redis holds.
    fn answered(&self) {
        if self.serving_generation.load(Ordering::Relaxed) == self.held().generation {
            self.confirmed_at.store(unix_ms(), Ordering::Relaxed);
        }
    }

    /// The whole store as Redis gave it; a change when it differs from what is held.
    fn replace(&self, version: Option<u64>, fields: HashMap<String, String>) {
        let (records, bytes, problems) = records(fields);
        problems.iter().for_each(|problem| unreadable(problem));
        let differs = {
            let mut held = self.held();
            let differs = held.records != records || !self.synced();
            let generation = held.generation + u64::from(differs);
            *held = Held {
                records,
                version: version.unwrap_or(0),
                bytes,
                generation,
            };
            differs
        };
        self.synced.store(true, Ordering::Relaxed);
        self.read_whole_at.store(unix_ms(), Ordering::Relaxed);
        if differs {
            self.pending(unix_ms());
        } else {
            self.answered();
        }
    }

    /// One record as it is after `change` (`None`: deleted). False when `change` is not the
    /// next version: the caller reads the whole store instead.
    fn apply(&self, change: &Change, json: Option<String>) -> bool {
        let mut held = self.held();
        if change.version != held.version + 1 {
            return false;
        }
        held.version = change.version;
        held.generation += 1;
        match json.map(|json| super::keystore::redis::record(&change.id, &json)) {
            Some(Ok(record)) => {
                held.records.insert(change.id.clone(), Arc::new(record));
            }
            deleted_or_unread => {
                if let Some(Err(problem)) = deleted_or_unread {
                    unreadable(&problem);
                }
                held.records.remove(&change.id);
            }
        }
        drop(held);
        self.pending(change.at_ms);
        true
    }

    fn pending(&self, at_ms: u64) {
        let _ = self
            .pending_since
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |since| {
                (since == 0 || at_ms < since).then_some(at_ms)
            });
        self.changed.notify_one();
    }

    fn age_of_full_read(&self) -> Duration {
        Duration::from_millis(unix_ms().saturating_sub(self.read_whole_at.load(Ordering::Relaxed)))
    }

    fn held_version(&self) -> u64 {
        self.held().version
    }
}

/// A panic while holding one of these leaves whole values (each change is one step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unreadable(problem: &str) {
    tracing::warn!(problem = %problem, "a key record in Redis does not read; that key is refused");
}

fn unix_ms() -> u64 {
    super::keystore::unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests;
