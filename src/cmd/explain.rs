//! `moat explain`: one request through stages 1–6 — `serve`'s own `admit`, on an in-memory
//! body — without forwarding, and a verdict per stage with its reason from the trail. The report never echoes
//! header values, the query or the body: they may hold credentials.

mod report;
mod request;

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::admit::admit;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::trail::Trail;

/// The request to explain, as the command line gave it.
pub struct Input {
    pub method: String,
    pub url: String,
    pub headers: Vec<String>,
    pub body: Option<Vec<u8>>,
    pub client: IpAddr,
}

/// The printed report and whether moat would forward the request.
pub struct Explanation {
    pub text: String,
    pub forwarded: bool,
}

/// The config as `serve` loads it, except that limits count in this process only: a
/// question about one request must not spend a replica's shared budget in Redis.
fn explained_snapshot(config_path: &Path) -> Result<Snapshot, crate::config::ConfigError> {
    let mut config = crate::config::Config::load(config_path)?;
    config.limits.store = crate::config::LimitStore::Memory;
    Snapshot::from_config(config, &Arc::new(Metrics::new()), None).map_err(|problems| {
        crate::config::ConfigError {
            file: config_path.to_owned(),
            problems,
        }
    })
}

/// Runs stages 1–6 on `input` against `snapshot` — `admit` itself, on an in-memory body —
/// and renders what each stage decided.
pub async fn explain(snapshot: &Snapshot, input: &Input) -> Result<Explanation, String> {
    let (request, notes) = request::build(input, snapshot.grpc.as_deref())?;
    let (parts, body) = request.into_parts();
    let mut trail = Trail::explaining();
    let verdict = admit(
        &snapshot.admission(),
        parts,
        body,
        input.client,
        "explain",
        &mut trail,
    )
    .await;
    let mut out = Explanation {
        text: String::new(),
        forwarded: false,
    };
    for note in notes {
        out.note(&note);
    }
    Ok(out.render(&trail, verdict))
}

/// Exit codes: 0 when moat would forward the request, 1 when it refuses it, 2 when the
/// request or the config is unusable.
const UNUSABLE: u8 = 2;

pub fn main(
    config_path: PathBuf,
    method: String,
    url: String,
    headers: Vec<String>,
    data: Option<String>,
    client: std::net::IpAddr,
) -> ExitCode {
    let body = match data.as_deref().map(read_body).transpose() {
        Ok(body) => body,
        Err(error) => return unusable(&format!("moat explain: {error}")),
    };
    let snapshot = match explained_snapshot(&config_path) {
        Ok(snapshot) => snapshot,
        Err(error) => return unusable(&error.to_string()),
    };
    let input = Input {
        method,
        url,
        headers,
        body,
        client,
    };
    run(&snapshot, &input)
}

/// `--data`: the body itself, or `@FILE` to read it from a file.
fn read_body(data: &str) -> Result<Vec<u8>, String> {
    match data.strip_prefix('@') {
        Some(file) => std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}")),
        None => Ok(data.as_bytes().to_vec()),
    }
}

/// Explains `input` and prints the report; the exit code says whether moat would forward it.
fn run(snapshot: &Snapshot, input: &Input) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return ExitCode::from(UNUSABLE);
    };
    match runtime.block_on(explain(snapshot, input)) {
        Ok(report) => {
            let _ = std::io::stdout().write_all(report.text.as_bytes());
            if report.forwarded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => unusable(&format!("moat explain: {error}")),
    }
}

/// Says why the request or the config cannot be explained.
fn unusable(why: &str) -> ExitCode {
    eprintln!("{why}");
    ExitCode::from(UNUSABLE)
}
