//! `moat spec effective` prints the document moat enforces — the configured spec with its
//! overlays applied and its request schemas normalised — and `moat spec loose` writes, as an
//! Overlay document, what that document leaves open in requests.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::snapshot::read_spec;
use crate::spec;

/// How `moat spec effective` writes the document.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

pub fn effective(config_path: &Path, format: Format) -> ExitCode {
    match load(config_path) {
        Ok(effective) => print(effective.docs.root(), format),
        Err(problems) => fail(config_path, &problems),
    }
}

pub fn loose(config_path: &Path) -> ExitCode {
    match read(config_path).and_then(spec::loose) {
        Ok(Some(overlay)) => print(&overlay, Format::Yaml),
        Ok(None) => {
            eprintln!("moat spec loose: nothing is left open");
            ExitCode::SUCCESS
        }
        Err(problems) => fail(config_path, &problems),
    }
}

fn load(config_path: &Path) -> Result<spec::Effective, Vec<String>> {
    spec::effective(read(config_path)?)
}

/// The configured spec with its overlays, as read.
fn read(config_path: &Path) -> Result<spec::source::Documents, Vec<String>> {
    // Only `openapi` matters here: a secret not set in this shell is no reason to refuse.
    let (config, problems) = Config::load_leniently(config_path);
    let config = config.ok_or(problems)?;
    let openapi = config
        .openapi
        .as_ref()
        .ok_or_else(|| vec!["no `openapi` is configured: there is no spec to show".to_owned()])?;
    read_spec(openapi)
}

fn print(value: &impl serde::Serialize, format: Format) -> ExitCode {
    match render(value, format) {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("moat spec: cannot write the document: {error}");
            ExitCode::FAILURE
        }
    }
}

fn render(value: &impl serde::Serialize, format: Format) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(value).map_err(|e| e.to_string()),
        Format::Yaml => serde_saphyr::to_string(value).map_err(|e| e.to_string()),
    }
}

fn fail(config_path: &Path, problems: &[String]) -> ExitCode {
    eprintln!("{}:", config_path.display());
    for problem in problems {
        eprintln!("  {problem}");
    }
    ExitCode::FAILURE
}
