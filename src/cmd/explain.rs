//! `moat explain`: one request through stages 1–6 — `serve`'s own `admit`, on an in-memory
//! body — without forwarding, and a verdict per stage with its reason from the trail. The report never echoes
//! header values, the query or the body: they may hold credentials.

mod report;
mod request;
mod response;

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub use self::response::{Answer, ResponseArgs};
use crate::admit::{Verdict, admit};
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
    /// The model's answer to explain as well (`--response-status`, …).
    pub response: Option<Answer>,
}

/// The printed report, whether moat would forward the request, and whether the client
/// would get the model's answer (when one was given).
pub struct Explanation {
    pub text: String,
    pub forwarded: bool,
    pub answered: bool,
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
    let mut verdict = admit(
        &snapshot.admission(),
        parts,
        body,
        input.client,
        "explain",
        &mut trail,
    )
    .await;
    let answers = match &mut verdict {
        Ok(Verdict::Forward(admitted)) => Some((admitted.take_responses(), admitted.unread())),
        _ => None,
    };
    let mut out = Explanation {
        text: String::new(),
        forwarded: false,
        answered: true,
    };
    for note in notes {
        out.note(&note);
    }
    let mut out = out.render(&trail, verdict);
    if let (Some((answers, unread)), Some(answer)) = (answers, &input.response) {
        out.response(snapshot, answers, unread, answer)?;
    }
    Ok(out)
}

/// Exit codes: 0 when moat would forward the request (and relay the answer, when one is
/// given), 1 when it refuses it (or would not relay the answer), 2 when the request or the
/// config is unusable.
const UNUSABLE: u8 = 2;

pub fn main(
    config_path: PathBuf,
    method: String,
    url: String,
    headers: Vec<String>,
    data: Option<String>,
    client: std::net::IpAddr,
    answer: ResponseArgs,
) -> ExitCode {
    let body = match data.as_deref().map(read_body).transpose() {
        Ok(body) => body,
        Err(error) => return unusable(&format!("moat explain: {error}")),
    };
    let response = match answer.body.as_deref().map(read_body).transpose() {
        Ok(body) => answer.status.map(|status| Answer {
            status,
            content_type: answer.content_type,
            body,
        }),
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
        response,
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
            if report.forwarded && report.answered {
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
