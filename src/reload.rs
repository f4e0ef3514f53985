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
    let mut seen = fingerprints(&inputs).await;
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
        let now = fingerprints(&inputs).await;
        if hangup || now.changed_since(&seen) {
            let loaded = reload(&state).await;
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
/// those of the config that failed (its key store may not exist yet), so fixing them is seen.
async fn next_inputs(state: &Arc<State>, loaded: bool) -> Inputs {
    let mut inputs = Inputs::of(&state.config_path, &state.snapshot.load().config);
    if !loaded {
        let path = state.config_path.clone();
        if let Ok(Ok(candidate)) = tokio::task::spawn_blocking(move || Config::load(&path)).await {
            inputs.extend(Inputs::of(&state.config_path, &candidate));
        }
    }
    inputs
}

/// True when a key store's file no longer holds the serving store.
async fn reread_key_stores(state: &Arc<State>) -> bool {
    let snapshot = state.snapshot.load_full();
    tokio::task::spawn_blocking(move || snapshot.auth.reread_key_stores())
        .await
        .unwrap_or(false)
}

async fn fingerprints(inputs: &Inputs) -> Fingerprints {
    let inputs = inputs.clone();
    tokio::task::spawn_blocking(move || Fingerprints::take(&inputs))
        .await
        .unwrap_or_default()
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
