//! What the reload loop watches: the input files' digests as last looked at, the watcher
//! on their directories, SIGHUP, and the periodic re-read of the key stores.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{INPUT_DEADLINE, refresh_key_stores, reload};
use crate::auth::live::LiveKeys;
use crate::config::Config;
use crate::snapshot::State;
use crate::watch::{Fingerprints, Inputs, Watcher};

/// A watcher sending on `files_tx`, unless `watch_files` is off or it cannot start (then
/// SIGHUP still reloads).
fn watcher(state: &State, files_tx: &mpsc::Sender<()>) -> Option<Watcher> {
    if !state.snapshot.load().config.watch_files {
        return None;
    }
    Watcher::new(files_tx.clone())
        .inspect_err(|error| {
            tracing::warn!(error = %error, "cannot watch the config files; reload with SIGHUP");
        })
        .ok()
}

/// Why the reload loop woke.
pub(super) enum Wake {
    /// A SIGHUP, or a key-store file found changed: reload whatever the digests say.
    Hangup,
    /// A file event.
    Files,
    /// A Redis key store holds a change the serving snapshot lacks.
    KeysChanged,
    /// The periodic key-store re-read found nothing.
    Nothing,
}

/// Waits for a reason to look at the inputs or apply a key-store change.
pub(super) async fn wake(
    state: &Arc<State>,
    hangups: &mut mpsc::Receiver<()>,
    files: &mut mpsc::Receiver<()>,
) -> Wake {
    let snapshot = state.snapshot.load_full();
    let reread = snapshot.auth.reread_interval();
    let live = snapshot.auth.live_stores();
    drop(snapshot);
    tokio::select! {
        Some(()) = hangups.recv() => Wake::Hangup,
        Some(()) = files.recv() => Wake::Files,
        () = live_change(&live, reread) => Wake::KeysChanged,
        // A store found changed reloads like a SIGHUP (the watcher may be off, or late).
        () = tokio::time::sleep(reread) => if reread_key_stores(state).await {
            Wake::Hangup
        } else {
            Wake::Nothing
        },
    }
}

/// Follows each Redis key store (checking it every `tick`) and returns when one of them
/// holds a change; never, without one.
async fn live_change(live: &[Arc<LiveKeys>], tick: std::time::Duration) {
    if live.is_empty() {
        return std::future::pending().await;
    }
    // The version check finds missed changes: at least every 5 s.
    let tick = tick.min(std::time::Duration::from_secs(5));
    for store in live {
        store.follow(tick);
    }
    let changes = live
        .iter()
        .map(|store| Box::pin(store.changed().notified()));
    futures_util::future::select_all(changes).await;
}

/// The input files as last looked at, and the watcher on their directories (none when
/// `watch_files` is off or the platform refused one).
pub(super) struct Watched {
    inputs: Inputs,
    seen: Fingerprints,
    watcher: Option<Watcher>,
}

impl Watched {
    pub(super) async fn start(state: &Arc<State>, files_tx: &mpsc::Sender<()>) -> Watched {
        let watcher = watcher(state, files_tx);
        let inputs = Inputs::of(&state.config_path, &state.snapshot.load().config);
        let seen = fingerprints(&inputs).await.unwrap_or_default();
        let mut watched = Watched {
            inputs,
            seen,
            watcher,
        };
        watched.follow();
        watched
    }

    /// Reloads when asked to (`hangup`) or when an input's content changed, then watches
    /// what the serving config reads.
    pub(super) async fn look(
        &mut self,
        state: &Arc<State>,
        hangup: bool,
        files_tx: &mpsc::Sender<()>,
    ) {
        let Some(now) = fingerprints(&self.inputs).await else {
            return;
        };
        if hangup || now.changed_since(&self.seen) {
            let loaded = reload(state).await;
            if !loaded {
                refresh_key_stores(state).await;
            }
            self.inputs = next_inputs(state, loaded).await;
            // Taken before the load, so a change made while loading is seen next time.
            self.seen = now.carried_to(&self.inputs);
            if self.seen.has_unknown() {
                let _ = files_tx.try_send(());
            }
        } else {
            self.seen = now;
        }
        // Kubernetes' swaps move the resolved files to new directories: follow them.
        self.follow();
    }

    fn follow(&mut self) {
        if let Some(watcher) = &mut self.watcher {
            watcher.follow(&self.inputs, &self.seen);
        }
    }
}

/// The inputs to watch after a reload: the serving config's, and after a failure also
/// every file the config that failed names — read as leniently as `moat check` reads it, so
/// a config that fails on a bad dotenv line, a short secret or an unset variable still has
/// the file that would fix it watched.
async fn next_inputs(state: &Arc<State>, loaded: bool) -> Inputs {
    let mut inputs = Inputs::of(&state.config_path, &state.snapshot.load().config);
    if !loaded {
        let path = state.config_path.clone();
        let candidate = tokio::task::spawn_blocking(move || Config::load_leniently(&path).0);
        if let Ok(Ok(Some(candidate))) = tokio::time::timeout(INPUT_DEADLINE, candidate).await {
            inputs.extend(Inputs::of(&state.config_path, &candidate));
        }
    }
    inputs
}

/// True when a key store's file no longer holds the serving store.
pub(super) async fn reread_key_stores(state: &Arc<State>) -> bool {
    let snapshot = state.snapshot.load_full();
    let reread = tokio::task::spawn_blocking(move || snapshot.auth.reread_key_stores());
    match tokio::time::timeout(INPUT_DEADLINE, reread).await {
        Ok(changed) => changed.unwrap_or(false),
        Err(_) => {
            tracing::warn!("re-reading the key stores took over {INPUT_DEADLINE:?}; skipped");
            false
        }
    }
}

/// Every input's digest, or `None` (logged) when reading them took over [`INPUT_DEADLINE`].
async fn fingerprints(inputs: &Inputs) -> Option<Fingerprints> {
    let inputs = inputs.clone();
    let taken = tokio::task::spawn_blocking(move || Fingerprints::take(&inputs));
    match tokio::time::timeout(INPUT_DEADLINE, taken).await {
        Ok(fingerprints) => Some(fingerprints.unwrap_or_default()),
        Err(_) => {
            tracing::warn!("reading the input files took over {INPUT_DEADLINE:?}; skipped");
            None
        }
    }
}

pub(super) async fn listen_for_hangups(tx: mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP");
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading");
        let _ = tx.try_send(());
    }
}
