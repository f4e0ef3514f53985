//! Live reload (design §4): on SIGHUP, or when a file moat reads changed (see `watch`), a
//! whole new [`Snapshot`] is built and checked off to the side — on the blocking pool, since
//! loading parses a spec and may fetch — then swapped in atomically. In-flight requests
//! finish on the snapshot they loaded. The new snapshot takes over the state of every part
//! whose definition did not change (rate-limit buckets, verified keys and tokens, the
//! upstream pool; see `Snapshot::load`). A snapshot that fails to load is logged with every
//! problem and counted, and the old one keeps serving.

mod watched;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError};
use crate::metrics::ReloadLabels;
use crate::snapshot::{Snapshot, State};
use watched::{Wake, Watched, listen_for_hangups, reread_key_stores, wake};

const DEBOUNCE: Duration = Duration::from_millis(250);

/// The longest a pass over the inputs (digests, a key-store re-read) may take. Inputs are
/// regular files read without waiting (see `input`), so only a hung filesystem gets here;
/// the loop then goes on without that pass instead of stalling every later reload.
const INPUT_DEADLINE: Duration = Duration::from_secs(10);

/// Runs until the process ends: reloads on SIGHUP, and when an input file's content changed.
pub async fn run(state: Arc<State>) {
    let (files_tx, mut files) = mpsc::channel::<()>(1);
    let (hangup_tx, mut hangups) = mpsc::channel::<()>(1);
    tokio::spawn(listen_for_hangups(hangup_tx));
    let mut watched = Watched::start(&state, &files_tx).await;
    loop {
        let hangup = match wake(&state, &mut hangups, &mut files).await {
            Wake::Hangup => true,
            Wake::Files => false,
            // Applied at once: a revocation waits for no debounce.
            Wake::KeysChanged => {
                apply_key_changes(&state).await;
                continue;
            }
            Wake::Nothing => continue,
        };
        // Let a burst of events (an editor's save, a secret volume update) settle.
        tokio::time::sleep(DEBOUNCE).await;
        let hangup = hangup | hangups.try_recv().is_ok();
        while files.try_recv().is_ok() {}
        watched.look(&state, hangup, &files_tx).await;
    }
}

/// Builds a snapshot from the config path and swaps it in, or keeps the old one; true when
/// the new one was swapped in.
pub async fn reload(state: &Arc<State>) -> bool {
    let board = &state.metrics.board;
    let result = match load(state).await {
        Ok(snapshot) => {
            swap_in(state, snapshot);
            board.reloaded();
            "success"
        }
        Err(problems) => {
            board.reload_failed(problems);
            "failure"
        }
    };
    count_reload(state, result);
    result == "success"
}

/// The snapshot the config path describes now, or (logged) the problems that keep it from
/// serving.
async fn load(state: &Arc<State>) -> Result<Snapshot, Vec<String>> {
    let path = state.config_path.clone();
    let metrics = state.metrics.clone();
    let previous = state.snapshot.load_full();
    let loaded =
        tokio::task::spawn_blocking(move || Snapshot::load(&path, &metrics, Some(&*previous)))
            .await;
    match loaded {
        Ok(Ok(snapshot)) if snapshot.tls.is_some() != state.snapshot.load().tls.is_some() => {
            tracing::error!(
                "reload refused: turning TLS on or off needs a restart; the previous configuration keeps serving"
            );
            Err(vec!["turning TLS on or off needs a restart".to_owned()])
        }
        Ok(Ok(snapshot)) => Ok(snapshot),
        Ok(Err(error)) => {
            tracing::error!(error = %error, "reload failed; the previous configuration keeps serving");
            Err(problems(&error))
        }
        Err(error) => {
            tracing::error!(error = %error, "reload crashed; the previous configuration keeps serving");
            Err(vec![format!("loading crashed: {error}")])
        }
    }
}

/// Each problem of a config that failed to load, with the file it is in.
fn problems(error: &ConfigError) -> Vec<String> {
    let file = error.file.display();
    error
        .problems
        .iter()
        .map(|problem| format!("{file}: {problem}"))
        .collect()
}

/// Serves `snapshot` from now on.
fn swap_in(state: &State, snapshot: Snapshot) {
    warn_of_restarts(&state.snapshot.load().config, &snapshot.config);
    let live = snapshot.auth.live_stores();
    state.snapshot.store(Arc::new(snapshot));
    state.metrics.config_generation.inc();
    live.iter().for_each(|store| store.applied());
    tracing::info!("configuration reloaded");
}

/// A warning for each change a reload cannot apply: the listeners and the proxy threads
/// stay as they started.
fn warn_of_restarts(current: &Config, next: &Config) {
    for (name, old, new) in [
        ("listen", current.listen, next.listen),
        ("admin_listen", current.admin_listen, next.admin_listen),
    ] {
        if old != new {
            tracing::warn!(setting = name, %old, %new, "this change needs a restart; still listening on the old address");
        }
    }
    if current.runtime != next.runtime {
        tracing::warn!(
            setting = "runtime.threads",
            "this change needs a restart; the proxy threads stay as they are"
        );
    }
}

/// After a reload failed: when a key store changed all the same, the serving snapshot with
/// its key stores read again (see `Snapshot::with_key_stores`) takes over — a key revoked
/// while another input is broken is refused as soon as it would have been.
async fn refresh_key_stores(state: &Arc<State>) {
    if !reread_key_stores(state).await {
        return;
    }
    let result = match rebuild_key_stores(state).await {
        Some(snapshot) => {
            swap_in_key_stores(state, snapshot);
            tracing::warn!(
                "the reload failed, but the key stores changed: they were read again alone \
                 and serve now; the rest of the previous configuration keeps serving"
            );
            "key_stores"
        }
        None => "failure",
    };
    count_reload(state, result);
}

/// A Redis key store holds a change: the serving snapshot with its key stores taken again
/// serves from now on, and each store notes its lag.
async fn apply_key_changes(state: &Arc<State>) {
    let result = match rebuild_key_stores(state).await {
        Some(snapshot) => {
            swap_in_key_stores(state, snapshot);
            "key_stores"
        }
        None => "failure",
    };
    count_reload(state, result);
}

/// The serving snapshot with its key stores read again (see `Snapshot::with_key_stores`),
/// or `None` (logged) when they cannot be.
async fn rebuild_key_stores(state: &Arc<State>) -> Option<Snapshot> {
    let serving = state.snapshot.load_full();
    let metrics = state.metrics.clone();
    let rebuilt = tokio::task::spawn_blocking(move || serving.with_key_stores(&metrics));
    match tokio::time::timeout(INPUT_DEADLINE, rebuilt).await {
        Ok(Ok(Ok(snapshot))) => Some(snapshot),
        Ok(Ok(Err(problems))) => {
            tracing::error!(
                problems = problems.join("; "),
                "a key store changed but the key stores cannot be loaded; the previous ones serve"
            );
            None
        }
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Serves `snapshot`, the serving one with its key stores read again; each Redis store
/// notes the lag of the changes it now serves.
fn swap_in_key_stores(state: &State, snapshot: Snapshot) {
    let live = snapshot.auth.live_stores();
    state.snapshot.store(Arc::new(snapshot));
    state.metrics.config_generation.inc();
    live.iter().for_each(|store| store.applied());
}

/// Counts a reload by its result: `success`, `failure`, or `key_stores` alone.
fn count_reload(state: &State, result: &'static str) {
    state
        .metrics
        .config_reloads
        .get_or_create(&ReloadLabels { result })
        .inc();
}
