//! Live reload (design §4): on SIGHUP, or when a watched file changes, a whole new
//! [`Snapshot`] is built and checked off to the side — on the blocking pool, since loading
//! hashes nothing but parses a spec and may fetch — then swapped in atomically. In-flight
//! requests finish on the snapshot they loaded. A snapshot that fails to load is logged
//! with every problem and counted, and the old one keeps serving.
//!
//! The directories of the config, dotenv and `VAR_FILE` files, spec, key stores, key files
//! and TLS files are watched (not the files), so editors' rename-writes and Kubernetes'
//! `..data` symlink swaps are seen; only create, modify and remove events count (reading a
//! file must not trigger a reload), and bursts are debounced. The set follows each reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{Config, SchemeConfig};
use crate::metrics::ReloadLabels;
use crate::snapshot::{Snapshot, State};

const DEBOUNCE: Duration = Duration::from_millis(250);

/// Runs until the process ends: reloads on SIGHUP and on changes under the watched paths.
pub async fn run(state: Arc<State>) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watch = if state.snapshot.load().config.watch_files {
        Watch::new(tx.clone())
            .inspect_err(|error| {
                tracing::warn!(error = %error, "cannot watch the config files; reload with SIGHUP");
            })
            .ok()
    } else {
        None
    };
    if let Some(watch) = &mut watch {
        watch.follow(watched_directories(
            &state.config_path,
            &state.snapshot.load().config,
        ));
    }
    tokio::spawn(hangups(tx.clone()));
    while rx.recv().await.is_some() {
        // Let a burst of events (an editor's save, a secret volume update) settle.
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        let loaded = reload(&state).await;
        let Some(watch) = &mut watch else { continue };
        // The new config may name other files; after a failure, so may the config that
        // failed (its key store may not exist yet): watch those too, so fixing them is seen.
        let mut wanted = watched_directories(&state.config_path, &state.snapshot.load().config);
        if !loaded {
            let path = state.config_path.clone();
            if let Ok(Ok(candidate)) =
                tokio::task::spawn_blocking(move || Config::load(&path)).await
            {
                wanted.extend(watched_directories(&state.config_path, &candidate));
            }
        }
        // A change made in a new directory before it was watched would be missed: look again.
        if watch.follow(wanted) {
            let _ = tx.try_send(());
        }
    }
}

/// A notify watcher and the directories it watches.
struct Watch {
    watcher: notify::RecommendedWatcher,
    directories: BTreeSet<PathBuf>,
}

impl Watch {
    fn new(tx: mpsc::Sender<()>) -> notify::Result<Watch> {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = event.is_ok_and(|event| {
                matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                )
            });
            if relevant {
                let _ = tx.try_send(());
            }
        })?;
        Ok(Watch {
            watcher,
            directories: BTreeSet::new(),
        })
    }

    /// Watches exactly `wanted`; true when a directory was added.
    fn follow(&mut self, mut wanted: BTreeSet<PathBuf>) -> bool {
        for gone in self.directories.difference(&wanted) {
            let _ = self.watcher.unwatch(gone);
        }
        let new: Vec<PathBuf> = wanted.difference(&self.directories).cloned().collect();
        let mut added = false;
        for directory in new {
            if let Err(error) = self.watcher.watch(&directory, RecursiveMode::NonRecursive) {
                tracing::warn!(directory = %directory.display(), error = %error, "cannot watch; reload with SIGHUP");
                wanted.remove(&directory); // tried again after the next reload
            } else {
                added = true;
            }
        }
        self.directories = wanted;
        added
    }
}

async fn hangups(tx: mpsc::Sender<()>) {
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
    let loaded = tokio::task::spawn_blocking(move || Snapshot::load(&path, &metrics)).await;
    let result = match loaded {
        Ok(Ok(snapshot)) if snapshot.tls.is_some() != state.snapshot.load().tls.is_some() => {
            tracing::error!(
                "reload refused: turning TLS on or off needs a restart; the previous configuration keeps serving"
            );
            "failure"
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
            state.snapshot.store(Arc::new(snapshot));
            state.metrics.config_generation.inc();
            tracing::info!("configuration reloaded");
            "success"
        }
        Ok(Err(error)) => {
            tracing::error!(error = %error, "reload failed; the previous configuration keeps serving");
            "failure"
        }
        Err(error) => {
            tracing::error!(error = %error, "reload crashed; the previous configuration keeps serving");
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

/// The directories holding every file a snapshot is built from.
pub fn watched_directories(config_path: &Path, config: &Config) -> BTreeSet<PathBuf> {
    let mut files: Vec<&Path> = vec![config_path];
    files.extend(config.env.dotenv.as_deref());
    files.extend(config.env.encrypted_dotenv.as_deref());
    files.extend(config.secret_files.iter().map(PathBuf::as_path));
    if let Some(tls) = &config.tls {
        files.extend([tls.cert_file.as_path(), tls.key_file.as_path()]);
        files.extend(tls.client_ca_file.as_deref());
    }
    if let Some(file) = config.openapi.as_ref().and_then(|o| o.file.as_deref()) {
        files.push(file);
    }
    for scheme in config.auth.schemes.values() {
        match scheme {
            SchemeConfig::ApiKey(key) => files.push(&key.store),
            SchemeConfig::Jwt(jwt) => {
                files.extend(jwt.jwks_file.as_deref());
                files.extend(jwt.public_key_file.as_deref());
            }
        }
    }
    files
        .into_iter()
        .filter_map(|file| {
            let absolute = std::path::absolute(file).ok()?;
            absolute.parent().map(Path::to_path_buf)
        })
        .collect()
}
