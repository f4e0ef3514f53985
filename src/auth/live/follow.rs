//! The follower of one Redis key store: subscribed to its change channel, applying each
//! change as it comes; checking the version every tick (so a replica that missed messages —
//! a reconnect, a dropped subscription — reads the store again) and reading the whole
//! store every `full_check` (a change written past moat's script is seen then). Redis not
//! answering: retried every second while the held records age toward `max_store_age`.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{Instant, timeout};

use super::LiveKeys;
use crate::auth::keystore::redis::Change;

/// Why a session with Redis ended.
enum Ended {
    /// The store is no longer served by any snapshot.
    Dropped,
    Failed(String),
}

impl From<redis::RedisError> for Ended {
    fn from(error: redis::RedisError) -> Self {
        Ended::Failed(error.to_string())
    }
}

impl From<tokio::time::error::Elapsed> for Ended {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Ended::Failed("timed out".to_owned())
    }
}

impl LiveKeys {
    /// Starts the follower (once; on the caller's runtime), checking every `tick`.
    pub fn follow(self: &Arc<Self>, tick: Duration) {
        if self
            .following
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        tokio::spawn(run(Arc::downgrade(self), tick));
    }
}

async fn run(live: Weak<LiveKeys>, tick: Duration) {
    let mut failing = false;
    // Which seed of a cluster to subscribe on: the next one after each failure.
    let mut attempt = 0;
    loop {
        match session(&live, tick, &mut failing, attempt).await {
            Ended::Dropped => return,
            Ended::Failed(error) => {
                let Some(held) = live.upgrade() else { return };
                if !failing {
                    tracing::warn!(key_prefix = %held.config.key_prefix, error = %error,
                        "lost the key store's Redis; the held keys serve until max_store_age");
                }
                failing = true;
                attempt += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Subscribes, catches up, then applies changes and checks until Redis fails.
async fn session(
    live: &Weak<LiveKeys>,
    tick: Duration,
    failing: &mut bool,
    attempt: usize,
) -> Ended {
    let Some(held) = live.upgrade() else {
        return Ended::Dropped;
    };
    let wait = held.config.timeout;
    let target = held.target.clone();
    let channel = held.layout.channel.clone();
    drop(held);
    let connected = async {
        let mut pubsub = timeout(wait, target.subscriber(attempt).get_async_pubsub()).await??;
        timeout(wait, pubsub.subscribe(&channel)).await??;
        let connection = timeout(wait, target.connect()).await??;
        Ok::<_, Ended>((pubsub, connection))
    };
    let (pubsub, mut connection) = match connected.await {
        Ok(connected) => connected,
        Err(ended) => return ended,
    };
    // Subscribed first: a change made from here on is sent, and the check sees any before.
    // The first session compares versions (the store was just read whole); a reconnect
    // reads the whole store, as a failover may have lost a write and reused its version.
    if let Err(ended) = check(live, &mut connection, attempt > 0).await {
        return ended;
    }
    if std::mem::take(failing) {
        tracing::info!(channel = %channel, "the key store's Redis answers again; caught up");
    }
    let mut messages = pubsub.into_on_message();
    let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
    loop {
        let step = tokio::select! {
            message = messages.next() => match message {
                Some(message) => on_message(live, &mut connection, message.get_payload_bytes()).await,
                None => Err(Ended::Failed("the subscription closed".to_owned())),
            },
            _ = ticks.tick() => check(live, &mut connection, false).await,
        };
        if let Err(ended) = step {
            return ended;
        }
    }
}

type Connection = crate::redis_client::Connection;

/// The version Redis has against the held one; the whole store read again when they differ,
/// or when a full check is due (`full`, or `full_check` since the last).
async fn check(
    live: &Weak<LiveKeys>,
    connection: &mut Connection,
    full: bool,
) -> Result<(), Ended> {
    let held = live.upgrade().ok_or(Ended::Dropped)?;
    let wait = held.config.timeout;
    let version: Option<u64> = timeout(
        wait,
        redis::cmd("GET")
            .arg(&held.layout.version)
            .query_async(connection),
    )
    .await??;
    let due = full || held.age_of_full_read() >= held.config.full_check;
    if !due && version.unwrap_or(0) == held.held_version() {
        held.answered();
        return Ok(());
    }
    let (version, fields): (Option<u64>, HashMap<String, String>) =
        timeout(wait, held.layout.read_all().invoke_async(connection)).await??;
    // 100,000 records to parse and compare: off the runtime.
    tokio::task::spawn_blocking(move || held.replace(version, fields))
        .await
        .map_err(|e| Ended::Failed(e.to_string()))
}

/// One published change: the record read and applied when it is the next version, the
/// whole store read when versions were missed; a version already held is ignored.
async fn on_message(
    live: &Weak<LiveKeys>,
    connection: &mut Connection,
    payload: &[u8],
) -> Result<(), Ended> {
    let held = live.upgrade().ok_or(Ended::Dropped)?;
    let Some(change) = std::str::from_utf8(payload).ok().and_then(Change::parse) else {
        tracing::warn!("a message on the key store's channel is not a change; checking the store");
        drop(held);
        return check(live, connection, true).await;
    };
    if change.version <= held.held_version() {
        return Ok(());
    }
    let (_, json): (Option<u64>, Option<String>) = timeout(
        held.config.timeout,
        held.layout.read_one(&change.id).invoke_async(connection),
    )
    .await??;
    if !held.apply(&change, json) {
        drop(held);
        return check(live, connection, true).await;
    }
    Ok(())
}
