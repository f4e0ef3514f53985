//! The board's containers: counters by label behind a read-mostly lock, bounded queues, and
//! locks that outlive a panic elsewhere.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::SystemTime;

pub(super) fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, bound: usize) {
    if queue.len() == bound {
        queue.pop_front();
    }
    queue.push_back(item);
}

pub(super) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A poisoned lock only means a panic elsewhere while it was held; the counts stay usable.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters by label, created on first use. Read-mostly: a request takes the read lock
/// for one lookup; only a label never seen before takes the write lock. The labels are
/// bounded by the spec's operations and moat's refusal codes, and chosen by moat, not by
/// a client, so a fast unkeyed-quality hash (foldhash, seeded per process) is enough:
/// SipHash was a third of the cost of recording a request.
pub(super) struct Table<K, V> {
    map: RwLock<HashMap<K, Arc<V>, foldhash::fast::RandomState>>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::default()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Default> Table<K, V> {
    pub(super) fn with(&self, key: &K, f: impl FnOnce(&V)) {
        if let Some(value) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return f(value);
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(key.clone()).or_default());
    }

    pub(super) fn entries(&self) -> Vec<(K, Arc<V>)> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}
