//! Logging: JSON lines on stdout (the access log and everything else), written by a
//! background thread so a slow stdout never blocks the runtime. Level from `MOAT_LOG`
//! (default `info`), in `tracing_subscriber::EnvFilter` syntax.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Installs the subscriber. Keep the guard alive: dropping it flushes the last lines.
pub fn init() -> WorkerGuard {
    // Not lossy: an access log that drops lines under load is no audit trail. A full queue
    // makes the logging call wait instead.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let filter = EnvFilter::try_from_env("MOAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .init();
    guard
}
