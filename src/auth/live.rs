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
    /// Unix ms when Redis last confirmed what this replica holds.
    confirmed_at: AtomicU64,
    /// Unix ms of the last whole read.
    read_whole_at: AtomicU64,
    /// Redis's clock (Unix ms) of the oldest change held but not yet serving; 0: none.
    pending_since: AtomicU64,
    /// How long the last change took from its write to serving (ms).
    last_lag_ms: AtomicU64,
    /// The version the serving snapshot holds.
    serving_version: AtomicU64,
    following: AtomicBool,
    changed: Notify,
}

#[derive(Default)]
struct Held {
    records: HashMap<String, Arc<KeyRecord>>,
    version: u64,
    bytes: usize,
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
        let target = crate::redis_client::target(&config.url, config.ca_file.as_deref())?;
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
            serving_version: AtomicU64::new(0),
            following: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn read_now(&self) -> redis::RedisResult<()> {
        let mut connection = self.target.connect_blocking(self.config.timeout)?;
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
        self.serving_version.store(held.version, Ordering::Relaxed);
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

    /// The serving snapshot took the held records: the lag of the changes it applied.
    pub fn applied(&self) {
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
        // A panic while holding it leaves whole records (each insert is one step).
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn confirmed(&self) {
        self.confirmed_at.store(unix_ms(), Ordering::Relaxed);
    }

    /// The whole store as Redis gave it; a change when it differs from what is held.
    fn replace(&self, version: Option<u64>, fields: HashMap<String, String>) {
        let (records, bytes, problems) = records(fields);
        for problem in &problems {
            tracing::warn!(problem = %problem, "a key record in Redis does not read; that key is refused");
        }
        let differs = {
            let mut held = self.held();
            let differs = held.records != records || !self.synced();
            *held = Held {
                records,
                version: version.unwrap_or(0),
                bytes,
            };
            differs
        };
        self.synced.store(true, Ordering::Relaxed);
        self.read_whole_at.store(unix_ms(), Ordering::Relaxed);
        self.confirmed();
        if differs {
            self.pending(unix_ms());
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
        let record = json.map(|json| super::keystore::redis::record(&change.id, &json));
        match record {
            Some(Ok(record)) => {
                held.records.insert(change.id.clone(), Arc::new(record));
            }
            Some(Err(problem)) => {
                tracing::warn!(problem = %problem, "a key record in Redis does not read; that key is refused");
                held.records.remove(&change.id);
            }
            None => {
                held.records.remove(&change.id);
            }
        }
        drop(held);
        self.confirmed();
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
