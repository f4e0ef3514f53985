//! Live reload (design §4): on SIGHUP, or when a file moat reads changed (see `watch`), a
//! whole new [`Snapshot`] is built and checked off to the side — on the blocking pool, since
//! loading parses a spec and may fetch — then swapped in atomically. In-flight requests
//! finish on the snapshot they loaded. The new snapshot takes over the state of every part
//! whose definition did not change (rate-limit buckets, verified keys and tokens, the
//! upstream pool; see `Snapshot::load`). A snapshot that fails to load is logged with every
//! problem and counted, and the old one keeps serving.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics::ReloadLabels;
use crate::snapshot::{Snapshot, State};
use crate::watch::{Fingerprints, Inputs, Watcher};

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
    let mut watcher = if state.snapshot.load().config.watch_files {
        Watcher::new(files_tx.clone())
            .inspect_err(|error| {
                tracing::warn!(error = %error, "cannot watch the config files; reload with SIGHUP");
            })
            .ok()
    } else {
        None
    };
    let mut inputs = Inputs::of(&state.config_path, &state.snapshot.load().config);
    let mut seen = fingerprints(&inputs).await.unwrap_or_default();
    if let Some(watcher) = &mut watcher {
        watcher.follow(&inputs, &seen);
    }
    loop {
        let reread = state.snapshot.load().auth.reread_interval();
        let hangup = tokio::select! {
            Some(()) = hangups.recv() => true,
            Some(()) = files.recv() => false,
            // A store found changed reloads like a SIGHUP (the watcher may be off, or late).
            () = tokio::time::sleep(reread) => {
                if !reread_key_stores(&state).await {
                    continue;
                }
                true
            }
        };
        // Let a burst of events (an editor's save, a secret volume update) settle.
        tokio::time::sleep(DEBOUNCE).await;
        let hangup = hangup | hangups.try_recv().is_ok();
        while files.try_recv().is_ok() {}
        let Some(now) = fingerprints(&inputs).await else {
            continue;
        };
        if hangup || now.changed_since(&seen) {
            let loaded = reload(&state).await;
            if !loaded {
                refresh_key_stores(&state).await;
            }
            inputs = next_inputs(&state, loaded).await;
            // Taken before the load, so a change made while loading is seen next time.
            seen = now.carried_to(&inputs);
            if seen.has_unknown() {
                let _ = files_tx.try_send(());
            }
        } else {
            seen = now;
        }
        // Kubernetes' swaps move the resolved files to new directories: follow them.
        if let Some(watcher) = &mut watcher {
            watcher.follow(&inputs, &seen);
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
async fn reread_key_stores(state: &Arc<State>) -> bool {
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

/// After a reload failed: when a key store changed all the same, the serving snapshot with
/// its key stores read again (see `Snapshot::with_key_stores`) takes over — a key revoked
/// while another input is broken is refused as soon as it would have been.
async fn refresh_key_stores(state: &Arc<State>) {
    if !reread_key_stores(state).await {
        return;
    }
    let serving = state.snapshot.load_full();
    let metrics = state.metrics.clone();
    let rebuilt = tokio::task::spawn_blocking(move || serving.with_key_stores(&metrics));
    let result = match tokio::time::timeout(INPUT_DEADLINE, rebuilt).await {
        Ok(Ok(Ok(snapshot))) => {
            state.snapshot.store(Arc::new(snapshot));
            state.metrics.config_generation.inc();
            tracing::warn!(
                "the reload failed, but the key stores changed: they were read again alone and \
                 serve now; the rest of the previous configuration keeps serving"
            );
            "key_stores"
        }
        Ok(Ok(Err(problems))) => {
            tracing::error!(
                problems = problems.join("; "),
                "the key stores changed but cannot be loaded either; the previous ones serve"
            );
            "failure"
        }
        Ok(Err(_)) | Err(_) => "failure",
    };
    state
        .metrics
        .config_reloads
        .get_or_create(&ReloadLabels { result })
        .inc();
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

async fn listen_for_hangups(tx: mpsc::Sender<()>) {
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

/// Builds a snapshot from the config path and swaps it in, or keeps the old one; true when
/// the new one was swapped in.
pub async fn reload(state: &Arc<State>) -> bool {
    let path = state.config_path.clone();
    let metrics = state.metrics.clone();
    let previous = state.snapshot.load_full();
    let loaded =
        tokio::task::spawn_blocking(move || Snapshot::load(&path, &metrics, Some(&*previous)))
            .await;
    let result = match loaded {
        Ok(Ok(snapshot)) if snapshot.tls.is_some() != state.snapshot.load().tls.is_some() => {
            tracing::error!(
                "reload refused: turning TLS on or off needs a restart; the previous configuration keeps serving"
            );
            Err(vec!["turning TLS on or off needs a restart".to_owned()])
        }
        Ok(Ok(snapshot)) => {
            let current = state.snapshot.load();
            for (name, old, new) in [
                ("listen", current.config.listen, snapshot.config.listen),
                (
                    "admin_listen",
                    current.config.admin_listen,
                    snapshot.config.admin_listen,
                ),
            ] {
                if old != new {
                    tracing::warn!(setting = name, %old, %new, "this change needs a restart; still listening on the old address");
                }
            }
            if current.config.runtime != snapshot.config.runtime {
                tracing::warn!(
                    setting = "runtime.threads",
                    "this change needs a restart; the proxy threads stay as they are"
                );
            }
            state.snapshot.store(Arc::new(snapshot));
            state.metrics.config_generation.inc();
            tracing::info!("configuration reloaded");
            Ok(())
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error, "reload failed; the previous configuration keeps serving");
            let file = error.file.display();
            Err(error
                .problems
                .iter()
                .map(|problem| format!("{file}: {problem}"))
                .collect())
        }
        Err(error) => {
            tracing::error!(error = %error, "reload crashed; the previous configuration keeps serving");
            Err(vec![format!("loading crashed: {error}")])
        }
    };
    let board = &state.metrics.board;
    let result = match result {
        Ok(()) => {
            board.reloaded();
            "success"
        }
        Err(problems) => {
            board.reload_failed(problems);
            "failure"
        }
    };
    state
        .metrics
        .config_reloads
        .get_or_create(&ReloadLabels { result })
        .inc();
    result == "success"
}
