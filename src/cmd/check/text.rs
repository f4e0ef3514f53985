//! `moat check`'s text report: what a config that loads sets up — addresses, TLS, limits,
//! env, schemes and each operation — then its warnings; or, when there are errors, the
//! warnings on stdout and every error on stderr, as `serve` would name them.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use super::findings::Finding;
use super::load::Checked;
use super::spec_source::SpecSource;
use super::tls_status::TlsStatus;
use crate::config::Config;
use crate::snapshot::Snapshot;

/// The report for stdout, and the errors for stderr.
pub fn render(config_path: &Path, checked: &Checked, offline: bool) -> (String, String) {
    let mut out = String::new();
    let errors: Vec<&Finding> = checked.errors().collect();
    if let (Some(config), true) = (&checked.config, errors.is_empty()) {
        let _ = writeln!(out, "{}: ok", config_path.display());
        describe_config(&mut out, config, offline);
        match &checked.snapshot {
            Some(snapshot) => describe_snapshot(&mut out, snapshot, &checked.spec),
            None => {
                let _ = writeln!(
                    out,
                    "  routes        not listed: a part could not be built without the unset \
                     variables (see the warnings)"
                );
            }
        }
    }
    for warning in checked.warnings() {
        let _ = writeln!(out, "{}warning: {}", indent(&out), located(warning));
    }
    (out, errors_text(config_path, &errors))
}

/// Warnings sit inside the report when there is one.
fn indent(out: &str) -> &'static str {
    if out.is_empty() { "" } else { "  " }
}

/// A warning's message, and its file and line when the message does not say them.
fn located(finding: &Finding) -> String {
    let file = match finding.line {
        Some(line) => format!("{}:{line}", finding.file),
        None => finding.file.clone(),
    };
    match finding.message.contains(&finding.file) {
        true => finding.message.clone(),
        false => format!("{} ({file})", finding.message),
    }
}

/// Every error as `serve` reports them: `FILE: PROBLEM`, or `FILE: N problems` and a list.
fn errors_text(config_path: &Path, errors: &[&Finding]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("{}: {}\n", config_path.display(), one.text),
        many => {
            let mut out = format!("{}: {} problems\n", config_path.display(), many.len());
            for error in many {
                let _ = writeln!(out, "  - {}", error.text);
            }
            out
        }
    }
}

/// What the config alone says: where moat listens and forwards, TLS, limits and env.
fn describe_config(out: &mut String, config: &Config, offline: bool) {
    if offline {
        let _ = writeln!(
            out,
            "  offline       nothing fetched; unset variables checked as placeholders"
        );
    }
    let _ = writeln!(out, "  listen        {}", config.listen);
    let _ = writeln!(out, "  admin_listen  {}", config.admin_listen);
    let _ = writeln!(out, "  upstream      {}", config.upstream.shown_url());
    let tls = TlsStatus::of(config).describe(SystemTime::now());
    let _ = writeln!(out, "  tls           {tls}");
    let _ = writeln!(
        out,
        "  limits        {}",
        describe_store(&config.limits.store)
    );
    if let Some(env) = describe_encrypted_env(config) {
        let _ = writeln!(out, "  env           {env}");
    }
}

/// The schemes, and the routes with the spec's operations.
fn describe_snapshot(out: &mut String, snapshot: &Snapshot, source: &SpecSource) {
    for scheme in snapshot.auth.describe_schemes() {
        let _ = writeln!(out, "  scheme        {scheme}");
    }
    match (&snapshot.spec, source) {
        (_, SpecSource::Skipped { url }) => {
            let _ = writeln!(
                out,
                "  openapi       not checked: no copy of {url} (see the warnings)"
            );
        }
        (None, _) if snapshot.grpc.is_some() => {
            let _ = writeln!(
                out,
                "  routes        HTTP: every path is forwarded (no `openapi` configured), {}",
                snapshot.routes.without_spec().requirement
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "  routes        none: every path is forwarded (no `openapi` configured), {}",
                snapshot.routes.without_spec().requirement
            );
        }
        (Some(spec), _) => describe_spec(out, snapshot, spec, source),
    }
    if let Some(grpc) = &snapshot.grpc {
        describe_grpc(out, snapshot, grpc);
    }
}

/// The gRPC services: where they come from, then each method with its mode and requirement.
use crate::spec::Rpc;

fn describe_grpc(out: &mut String, snapshot: &Snapshot, grpc: &crate::grpc::Services) {
    let to = snapshot
        .config
        .grpc
        .as_ref()
        .map_or_else(String::new, |config| {
            match config.upstream_uri(&snapshot.config.upstream) {
                Ok(uri) => format!(", forwarded over h2c to {uri}"),
                Err(problem) => format!(" ({problem})"),
            }
        });
    let _ = writeln!(
        out,
        "  grpc          {} methods from {}{to}",
        grpc.operations.len(),
        grpc.files.join(", ")
    );
    for (index, operation) in grpc.operations.iter().enumerate() {
        let route = snapshot.routes.grpc(index);
        let _ = writeln!(
            out,
            "  {:<7} {:<50} {:<40} {:<8} {}",
            "gRPC",
            operation.template,
            operation.rpc.as_ref().map_or("", Rpc::kind),
            route.mode.as_str(),
            super::requirement(route)
        );
    }
}

/// The spec: its version, size and source, then each operation and its LLM profile.
fn describe_spec(
    out: &mut String,
    snapshot: &Snapshot,
    spec: &crate::spec::Spec,
    source: &SpecSource,
) {
    let overlays = snapshot
        .config
        .openapi
        .as_ref()
        .map_or(0, |o| o.overlays.len());
    let _ = writeln!(
        out,
        "  openapi       {} ({} operations{}){}",
        spec.version,
        spec.operations.len(),
        overlays_applied(overlays),
        describe_source(source)
    );
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
    describe_llm(out, snapshot, spec);
    super::responses::describe(out, snapshot, spec);
}

/// Where the spec came from, after its counts (with its leading space).
fn describe_source(source: &SpecSource) -> String {
    match source {
        SpecSource::None | SpecSource::Skipped { .. } => String::new(),
        SpecSource::File(path) => format!(" from {}", path.display()),
        SpecSource::Fetched {
            url,
            cached: Ok(path),
        } => {
            format!(
                " fetched from {url} (cached in {} for --offline)",
                path.display()
            )
        }
        SpecSource::Fetched {
            url,
            cached: Err(why),
        } => {
            format!(" fetched from {url} (not cached: {why})")
        }
        SpecSource::Cached { url, path, fetched } => {
            let age = fetched
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .map(|age| std::time::Duration::from_secs(age.as_secs()))
                .map_or_else(String::new, |age| {
                    format!(", fetched {} ago", humantime::format_duration(age))
                });
            format!(" from the cached copy of {url} ({}{age})", path.display())
        }
    }
}

fn overlays_applied(overlays: usize) -> String {
    match overlays {
        0 => String::new(),
        n => format!(", {n} overlay{} applied", if n == 1 { "" } else { "s" }),
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
