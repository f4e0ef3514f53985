//! Refusals for the status page: counted by their labels, and the last ones kept in a
//! bounded ring per proxy thread, so a refusal never waits on another thread's, merged
//! newest first when the page asks. The board keeps one log of refusals and one of the
//! failures shadow mode let through.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use thread_local::ThreadLocal;

use super::{RefusalKey, Table, lock, push_bounded};
use crate::ids::{Name, OperationLabel, RequestId};
use crate::reject::FieldError;

/// How many refusals the page lists (and each thread keeps).
pub const KEPT: usize = 50;

/// One refused request, as the page shows it: who and what, never a credential, a body or
/// a query value. `subject` and `key_id` are only ever verified identities (the trail sets
/// them after verification).
#[derive(Clone, Debug)]
pub struct Refusal {
    pub at: SystemTime,
    pub request_id: RequestId,
    pub operation: OperationLabel,
    pub status: u16,
    pub stage: &'static str,
    pub code: &'static str,
    pub key_id: Option<Name>,
    pub subject: Option<Name>,
    /// A validation refusal's pointers and messages, which never hold a value sent.
    pub errors: Vec<FieldError>,
}

#[derive(Default)]
pub struct RefusalLog {
    counts: Table<RefusalKey, AtomicU64>,
    rings: ThreadLocal<Mutex<VecDeque<Refusal>>>,
}

impl RefusalLog {
    /// Counts a refusal by its labels and keeps it among the last ones.
    pub fn push(&self, refusal: Refusal) {
        let key = (refusal.stage, refusal.code, refusal.status);
        self.counts.with(&key, |count| {
            count.fetch_add(1, Relaxed);
        });
        let ring = self
            .rings
            .get_or(|| Mutex::new(VecDeque::with_capacity(KEPT)));
        push_bounded(&mut lock(ring), refusal, KEPT);
    }

    /// Every label seen, with its count.
    pub fn counts(&self) -> Vec<(RefusalKey, Arc<AtomicU64>)> {
        self.counts.entries()
    }

    /// The last [`KEPT`] of every thread's, newest first.
    pub fn latest(&self) -> Vec<Refusal> {
        let mut all: Vec<Refusal> = self
            .rings
            .iter()
            .flat_map(|ring| lock(ring).iter().cloned().collect::<Vec<_>>())
            .collect();
        all.sort_by_key(|refusal| std::cmp::Reverse(refusal.at));
        all.truncate(KEPT);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: &'static str, at: SystemTime) -> Refusal {
        Refusal {
            at,
            request_id: RequestId::fresh(),
            operation: "predict".into(),
            status: 401,
            stage: "authenticate",
            code,
            key_id: None,
            subject: None,
            errors: Vec::new(),
        }
    }

    #[test]
    fn the_rings_of_every_thread_merge_newest_first_and_stay_bounded() {
        let recent = std::sync::Arc::new(RefusalLog::default());
        let start = SystemTime::UNIX_EPOCH;
        // Alive together, as proxy threads are (an exited thread's ring passes to the next).
        let together = std::sync::Arc::new(std::sync::Barrier::new(3));
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let (recent, together) = (recent.clone(), together.clone());
                std::thread::spawn(move || {
                    together.wait();
                    for i in 0..100u64 {
                        let at = start + std::time::Duration::from_secs(i * 3 + t);
                        recent.push(refusal("invalid_api_key", at));
                    }
                    together.wait();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let latest = recent.latest();
        assert_eq!(latest.len(), KEPT);
        let seconds: Vec<u64> = latest
            .iter()
            .map(|r| r.at.duration_since(start).unwrap().as_secs())
            .collect();
        let expected: Vec<u64> = (0..KEPT as u64).map(|i| 299 - i).collect();
        assert_eq!(seconds, expected, "the newest 50 across threads");
    }
}
