//! `moat serve`: load the configuration, bind, serve until SIGTERM or SIGINT, drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::server::{self, Listeners};
use crate::snapshot::{Snapshot, State};
use crate::telemetry;

/// Exit code of `serve` when the configuration cannot be loaded (EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

pub fn main(config_path: PathBuf) -> ExitCode {
    let _log = telemetry::init();
    let metrics = Arc::new(Metrics::new());
    let snapshot = match Snapshot::load(&config_path, &metrics, None) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::error!(error = %error, "cannot load the configuration");
            eprintln!("moat: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if !snapshot.config.upstream.is_loopback() {
        tracing::warn!(
            upstream = %snapshot.config.upstream.shown_url(),
            "the upstream is not on loopback: make sure its port is not reachable around moat"
        );
    }
    let Some(runtime) = multi_thread_runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(bind_and_serve(snapshot, config_path, metrics))
}

/// Binds the listeners and serves until SIGTERM or SIGINT.
async fn bind_and_serve(
    snapshot: Snapshot,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
) -> ExitCode {
    let state = Arc::new(State::new(snapshot, config_path, metrics));
    let listeners = match Listeners::bind(&state).await {
        Ok(listeners) => listeners,
        Err(error) => {
            tracing::error!(error = %error, "cannot bind the listeners");
            eprintln!("moat: cannot bind the listeners: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let (Ok(public), Ok(admin)) = (listeners.public_addr(), listeners.admin_addr()) {
        let tls = Tls::of(&state);
        tracing::info!(
            listen = %public,
            admin = %admin,
            scheme = tls.scheme(),
            tls_cert = tls.cert.as_deref(),
            tls_not_after = tls.not_after.as_deref(),
            version = super::version::SHORT,
            "listening"
        );
    }
    server::serve(state, listeners, shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// Whether the public listener speaks TLS, for the start-up line: which certificate, and
/// until when it is valid (when its `notAfter` could be read).
struct Tls {
    cert: Option<String>,
    not_after: Option<String>,
}

impl Tls {
    fn of(state: &State) -> Tls {
        let snapshot = state.snapshot.load();
        let cert = snapshot
            .config
            .tls
            .as_ref()
            .map(|tls| tls.cert_file.display().to_string());
        let not_after = snapshot.tls.as_ref().and_then(|tls| tls.not_after);
        Tls {
            cert,
            not_after: not_after.map(|end| humantime::format_rfc3339_seconds(end).to_string()),
        }
    }

    /// `https` or `http`: what a client must type before the address.
    fn scheme(&self) -> &'static str {
        if self.cert.is_some() { "https" } else { "http" }
    }
}

/// The runtime `serve` and `demo` run on; `None` (said on stderr) when it cannot start.
pub fn multi_thread_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .inspect_err(|error| eprintln!("moat: cannot start the runtime: {error}"))
        .ok()
}

/// Resolves on the first SIGTERM or SIGINT.
///
/// The handlers are installed when this is called (inside the runtime), not when the future
/// is first polled: a signal that arrives before then would otherwise kill the process
/// without its clean-up (the demo's session directory).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop moat with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
