//! `moat spec effective` prints the document moat enforces — the configured spec with its
//! overlays applied and its request schemas normalised — and `moat spec loose` writes, as an
//! Overlay document, what that document leaves open in requests, and, for `grpc`, the
//! fields of each method's input that no proto bounds.

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
    let (config, problems) = Config::load_leniently(config_path);
    let Some(config) = config else {
        return fail(config_path, &problems);
    };
    if config.openapi.is_none() && config.grpc.is_none() {
        let problem = "no `openapi` or `grpc` is configured: there is nothing to report";
        return fail(config_path, &[problem.to_owned()]);
    }
    let mut reports = Vec::new();
    if let Some(openapi) = &config.openapi {
        match read_spec(openapi).and_then(spec::loose) {
            Ok(overlay) => reports.extend(overlay.map(|o| render(&o, Format::Yaml))),
            Err(problems) => return fail(config_path, &problems),
        }
    }
    if let Some(grpc) = &config.grpc {
        match crate::grpc::load(grpc) {
            Ok(services) => {
                let open = crate::grpc::loose::open_fields(&services);
                reports.extend(open.map(|o| render(&o, Format::Yaml)));
            }
            Err(problems) => return fail(config_path, &problems),
        }
    }
    if reports.is_empty() {
        eprintln!("moat spec loose: nothing is left open");
        return ExitCode::SUCCESS;
    }
    // One YAML document each: the spec's overlay, then the gRPC methods' open fields.
    let rendered: Result<Vec<String>, String> = reports.into_iter().collect();
    match rendered {
        Ok(documents) => {
            println!("{}", documents.join("---\n").trim_end());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("moat spec: cannot write the document: {error}");
            ExitCode::FAILURE
        }
    }
}

fn load(config_path: &Path) -> Result<spec::Effective, Vec<String>> {
    spec::effective(read(config_path)?)
}

/// The configured spec with its overlays, as read (for `moat spec effective`).
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
