//! `moat check`: load everything exactly as `serve` does and report every problem of every
//! file at once, or list each operation with its mode and requirement.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Config, mentions_placeholder};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Where moat listens and forwards, with a warning for what should stay on loopback.
fn describe_addresses(out: &mut String, config: &Config) {
    let _ = writeln!(out, "  listen        {}", config.listen);
    let _ = writeln!(out, "  admin_listen  {}", config.admin_listen);
    if !config.admin_listen.ip().is_loopback() {
        let _ = writeln!(
            out,
            "  warning: admin_listen is not on loopback: /metrics and the status page \
             (key ids, subjects) are open to that network; restrict it or bind 127.0.0.1"
        );
    }
    let _ = writeln!(out, "  upstream      {}", config.upstream.url);
    if !config.upstream.is_loopback() {
        let _ = writeln!(out, "  warning: the upstream is not on loopback");
    }
}

pub fn main(config_path: PathBuf) -> ExitCode {
    // serve's warnings (a group-readable key store, say) belong in the report too.
    let _warnings = tracing::subscriber::set_default(warnings_on_stdout());
    match load_for_check(&config_path) {
        Ok(snapshot) => {
            let report = report(&config_path, &snapshot);
            // Stdout may be a closed pipe (`moat check | head`): not an error worth a panic.
            let _ = std::io::stdout().write_all(report.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Warnings and errors as plain lines on stdout, amid the report.
fn warnings_on_stdout() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .compact()
        .finish()
}

/// What a config that loads sets up: addresses, limits, env, schemes and routes.
fn report(config_path: &Path, snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let config = &snapshot.config;
    let _ = writeln!(out, "{}: ok", config_path.display());
    describe_addresses(&mut out, config);
    let _ = writeln!(
        out,
        "  limits        {}",
        describe_store(&config.limits.store)
    );
    if let Some(env) = describe_encrypted_env(config) {
        let _ = writeln!(out, "  env           {env}");
    }
    for scheme in snapshot.auth.describe_schemes() {
        let _ = writeln!(out, "  scheme        {scheme}");
    }
    describe_routes(&mut out, snapshot);
    out
}

/// The spec's routes, or that every path is forwarded without one.
fn describe_routes(out: &mut String, snapshot: &Snapshot) {
    match &snapshot.spec {
        None => {
            let _ = writeln!(
                out,
                "  routes        none: every path is forwarded (no `openapi` configured), {}",
                snapshot.routes.without_spec().requirement
            );
        }
        Some(spec) => describe_spec(out, snapshot, spec),
    }
}

/// The spec: its version and size, then each operation, its warnings, its LLM operations
/// and what its overlays loosened.
fn describe_spec(out: &mut String, snapshot: &Snapshot, spec: &crate::spec::Spec) {
    let config = &snapshot.config;
    let overlays = config.openapi.as_ref().map_or(0, |o| o.overlays.len());
    let _ = writeln!(
        out,
        "  openapi       {} ({} operations{})",
        spec.version,
        spec.operations.len(),
        overlays_applied(overlays)
    );
    describe_operations(out, snapshot, spec);
    for warning in &spec.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    describe_llm(out, snapshot, spec);
    describe_overlay_risks(out, config);
}

fn overlays_applied(overlays: usize) -> String {
    match overlays {
        0 => String::new(),
        1 => ", 1 overlay applied".to_owned(),
        n => format!(", {n} overlays applied"),
    }
}

/// One line per operation: method, template, id, mode and what it requires.
fn describe_operations(out: &mut String, snapshot: &Snapshot, spec: &crate::spec::Spec) {
    for (index, operation) in spec.operations.iter().enumerate() {
        let route = snapshot.routes.operation(index);
        let _ = writeln!(
            out,
            "  {:<7} {:<50} {:<40} {:<8} {}",
            operation.method.as_str(),
            operation.template,
            operation.id,
            route.mode.as_str(),
            route.requirement
        );
    }
}

/// A warning for each thing an overlay loosened (see `spec::overlay_risks`).
fn describe_overlay_risks(out: &mut String, config: &Config) {
    let Some(openapi) = config.openapi.as_ref().filter(|o| !o.overlays.is_empty()) else {
        return;
    };
    let Ok(docs) = crate::snapshot::read_spec_documents(openapi) else {
        return;
    };
    for warning in crate::spec::overlay_risks(docs, &openapi.overlays) {
        let _ = writeln!(out, "  warning: {warning}");
    }
}

/// One line per LLM operation: how it was found, and what moat writes into its requests.
fn describe_llm(out: &mut String, snapshot: &Snapshot, spec: &crate::spec::Spec) {
    let bounds = llm_bounds(&snapshot.config.policy);
    for (index, operation) in spec.operations.iter().enumerate() {
        let Some(profile) = snapshot.routes.operation(index).llm else {
            continue;
        };
        let found = if profile.detected {
            "detected from the path (`llm: none` turns it off)"
        } else {
            "set by `llm: openai`"
        };
        let _ = writeln!(
            out,
            "  llm           {} ({} {}): openai, {found}; {bounds}",
            operation.id, operation.method, operation.template,
        );
    }
}

/// The fields moat writes an LLM request's token bound into, and whether it asks streams
/// for their usage.
fn llm_bounds(policy: &crate::config::PolicyConfig) -> String {
    let fields: Vec<&str> = policy
        .max_tokens_fields
        .0
        .iter()
        .map(|f| f.as_str())
        .collect();
    let usage = if policy.asks_stream_usage() {
        "; streams asked for their usage"
    } else {
        ""
    };
    format!("bounds written to {}{usage}", fields.join(", "))
}

fn describe_store(store: &crate::config::LimitStore) -> String {
    match store {
        crate::config::LimitStore::Memory => "counted in this process (store: memory)".to_owned(),
        crate::config::LimitStore::Redis(redis) => format!(
            "counted in Redis for every replica (key_prefix {}, timeout {:?}, on_error: {})",
            redis.key_prefix,
            redis.timeout,
            redis.on_error.as_str()
        ),
    }
}

/// Loads as `serve` does, but on a problem goes on as far as it can, so every problem of
/// every file is reported at once (an unset variable does not hide a broken key store).
fn load_for_check(config_path: &Path) -> Result<Snapshot, crate::config::ConfigError> {
    let (config, mut problems) = Config::load_leniently(config_path);
    let snapshot = config.and_then(|config| {
        match Snapshot::from_config(config, &Arc::new(Metrics::new()), None) {
            Ok(snapshot) => Some(snapshot),
            Err(more) => {
                let more = more.into_iter().filter(|p| !mentions_placeholder(p));
                problems.extend(more);
                None
            }
        }
    });
    match snapshot {
        Some(snapshot) if problems.is_empty() => Ok(snapshot),
        _ => Err(crate::config::ConfigError {
            file: config_path.to_owned(),
            problems,
        }),
    }
}

/// `env.encrypted_dotenv`'s format and the variables it set: never a value.
fn describe_encrypted_env(config: &Config) -> Option<String> {
    let (path, env) = (
        config.env.encrypted_dotenv.as_ref()?,
        config.encrypted_env.as_ref()?,
    );
    Some(format!(
        "{}: {}, {} variable{} ({})",
        path.display(),
        env.format.name(),
        env.names.len(),
        if env.names.len() == 1 { "" } else { "s" },
        env.names.join(", ")
    ))
}
