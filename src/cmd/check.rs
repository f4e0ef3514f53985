//! `moat check`: load everything exactly as `serve` does and report every problem of every
//! file at once, or list each operation with its mode and requirement — as text, or as one
//! JSON document for CI (`--format json`); `--offline` checks without the network or the
//! secrets (see `load`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod advice;
mod capture;
mod findings;
mod json;
mod load;
mod locate;
mod responses;
mod spec_source;
mod text;
mod tls_status;

/// A route's requirement as `moat check` shows it: a gRPC method that is never routed
/// (`policy::Route::closed`) says so.
fn requirement(route: &crate::policy::Route) -> String {
    match route.closed {
        true => "closed: changes the model server; name it in policy.operations to open it".into(),
        false => route.requirement.to_string(),
    }
}

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The report for a person.
    Text,
    /// One JSON document on stdout: `ok`, `errors`, `warnings`, `summary`.
    Json,
}

/// What `moat check` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub format: Format,
    /// Nothing fetched; unset variables and missing encryption keys are warnings.
    pub offline: bool,
    /// The most fetching `openapi.url` may take.
    pub fetch_timeout: Option<Duration>,
}

/// Exit 1 when there is an error, whatever the format; warnings alone exit 0.
pub fn main(options: &Options) -> ExitCode {
    let fetching = spec_source::Fetching {
        offline: options.offline,
        timeout: options.fetch_timeout,
    };
    let checked = load::load(&options.config, fetching);
    let (stdout, stderr) = match options.format {
        Format::Text => text::render(&options.config, &checked, options.offline),
        Format::Json => (
            json::render(&options.config, &checked, options.offline),
            String::new(),
        ),
    };
    // Stdout may be a closed pipe (`moat check | head`): not an error worth a panic.
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    match checked.errors().next() {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::FAILURE,
    }
}
