//! What a replica holds of a Redis store as changes arrive, without Redis: the next version
//! applied, a gap refused (the follower then reads the whole store), a deletion and a record
//! that does not read each leaving that key refused.

use super::*;
use crate::config::Secret;

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

fn record(id: &str) -> String {
    format!(r#"{{"id": "{id}", "hash": "{HASH}"}}"#)
}

fn unconnected() -> LiveKeys {
    let config = RedisKeysConfig::at(Secret::from("redis://127.0.0.1:1".to_owned()));
    let target = crate::redis_client::target(&config.url, None, config.timeout).unwrap();
    LiveKeys::unread(config, target)
}

fn change(version: u64, id: &str) -> Change {
    Change {
        version,
        id: id.to_owned(),
        at_ms: unix_ms(),
    }
}

#[test]
fn changes_apply_in_version_order_and_a_gap_asks_for_the_whole_store() {
    let live = unconnected();
    assert!(!live.synced());
    live.replace(Some(4), HashMap::from([("a".to_owned(), record("a"))]));
    assert!(live.synced());
    let store = live.store();
    assert_eq!(live.version(), 0, "built, not yet serving");
    live.applied();
    assert_eq!(
        (store.records.len(), &*store.digest, live.version()),
        (1, "v4", 4)
    );

    assert!(live.apply(&change(5, "b"), Some(record("b"))));
    assert!(
        !live.apply(&change(7, "c"), Some(record("c"))),
        "6 was missed"
    );
    assert!(live.apply(&change(6, "a"), None), "a deleted");
    assert!(live.apply(
        &change(7, "b"),
        Some(r#"{"id": "b", "hash": "plain"}"#.to_owned())
    ));
    let store = live.store();
    live.applied();
    assert!(store.records.is_empty(), "{:?}", store.records.keys());
    assert_eq!(live.version(), 7);
}

#[test]
fn a_change_is_pending_until_a_snapshot_serves_it() {
    let live = unconnected();
    live.replace(Some(1), HashMap::new());
    live.store();
    live.applied();
    assert!(live.apply(&change(2, "a"), Some(record("a"))));
    assert_ne!(live.pending_since.load(Ordering::Relaxed), 0);
    // Redis answering does not make the store fresh while the snapshot lacks the change
    // (a rebuild that failed): `max_store_age` then fails closed.
    live.confirmed_at.store(0, Ordering::Relaxed);
    live.answered();
    assert_eq!(live.confirmed_at.load(Ordering::Relaxed), 0);
    live.store();
    live.applied();
    assert_ne!(
        live.confirmed_at.load(Ordering::Relaxed),
        0,
        "served: fresh again"
    );
    assert_eq!(live.pending_since.load(Ordering::Relaxed), 0);
    // The same whole store again is no change.
    live.replace(Some(2), HashMap::from([("a".to_owned(), record("a"))]));
    assert_eq!(live.pending_since.load(Ordering::Relaxed), 0);
}
