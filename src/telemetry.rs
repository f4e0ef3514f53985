//! Logging: JSON lines on stdout (the access log and everything else). Level from
//! `MOAT_LOG` (default `info`), in `tracing_subscriber::EnvFilter` syntax.
//!
//! Lines go into one shared buffer that a background thread flushes every 100 ms (or
//! sooner, when it fills). A writer thread woken per line would cost a context switch per
//! request — measured at half of moat's throughput on one core — and a full buffer makes the
//! logging call wait rather than drop lines: an access log with holes is no audit trail.

use std::io::{self, BufWriter, Stdout, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

const BUFFER_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone)]
struct SharedStdout(Arc<Mutex<BufWriter<Stdout>>>);

impl SharedStdout {
    fn lock(&self) -> MutexGuard<'_, BufWriter<Stdout>> {
        // A panic while holding the lock leaves at worst a torn line; keep logging.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One event's bytes, handed to the shared buffer in a single locked write so lines from
/// different threads never interleave.
struct LineWriter {
    shared: SharedStdout,
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let _ = self.shared.lock().write_all(&self.line);
    }
}

impl<'a> MakeWriter<'a> for SharedStdout {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            shared: self.clone(),
            line: Vec::with_capacity(512),
        }
    }
}

static STDOUT: OnceLock<SharedStdout> = OnceLock::new();

/// Appends one complete line (with its newline) to the log. A no-op before [`init`], so
/// library code and tests without a subscriber stay quiet.
pub fn write_line(line: &[u8]) {
    if let Some(shared) = STDOUT.get() {
        let _ = shared.lock().write_all(line);
    }
}

/// Flushes the last lines when dropped; keep it alive for the life of the process.
pub struct LogGuard(SharedStdout);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let _ = self.0.lock().flush();
    }
}

/// Installs the subscriber and starts the flusher thread.
pub fn init() -> LogGuard {
    let shared = SharedStdout(Arc::new(Mutex::new(BufWriter::with_capacity(
        BUFFER_BYTES,
        io::stdout(),
    ))));
    let _ = STDOUT.set(shared.clone());
    flush_every_interval(shared.clone());
    let filter = EnvFilter::try_from_env("MOAT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(shared.clone())
        .init();
    LogGuard(shared)
}

/// The flusher thread: what the buffer holds reaches stdout within [`FLUSH_EVERY`].
fn flush_every_interval(shared: SharedStdout) {
    let _ = std::thread::Builder::new()
        .name("moat-log-flush".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                let _ = shared.lock().flush();
            }
        });
}
