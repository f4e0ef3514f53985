//! The warnings `moat check` adds of its own: about what loads but deserves a second look
//! (a listener or upstream off loopback, the spec's own warnings, what an overlay loosened,
//! a certificate near its end, an administrative operation every credential may call).

use std::time::SystemTime;

use super::findings::{Finding, Severity};
use super::locate::{Files, Location};
use super::tls_status::TlsStatus;
use crate::config::Config;
use crate::snapshot::Snapshot;

/// Every warning about `config` and what was built from it.
pub fn warnings(config: &Config, snapshot: Option<&Snapshot>, files: &Files) -> Vec<Finding> {
    let warn = |code, at, message: &str| Finding::at(Severity::Warning, code, at, message);
    let mut found = Vec::new();
    if !config.admin_listen.ip().is_loopback() {
        found.push(warn(
            "admin_not_loopback",
            files.setting("admin_listen"),
            "admin_listen is not on loopback: /metrics and the status page (key ids, \
             subjects) are open to that network; restrict it or bind 127.0.0.1",
        ));
    }
    if !config.upstream.is_loopback() {
        found.push(warn(
            "upstream_not_loopback",
            files.setting("upstream.url"),
            "the upstream is not on loopback: its port may be reachable around moat",
        ));
    }
    found.extend(TlsStatus::of(config).findings(SystemTime::now()));
    if let Some(spec) = snapshot.and_then(|s| s.spec.as_deref()) {
        found.extend(
            spec.warnings
                .iter()
                .map(|warning| warn("spec_warning", in_spec(config, files, warning), warning)),
        );
    }
    if let Some(snapshot) = snapshot {
        let at = policy_location(files);
        found.extend(
            snapshot
                .routes
                .warnings()
                .iter()
                .map(|warning| warn("admin_operation_open", at.clone(), warning)),
        );
    }
    found.extend(overlay_risks(config, files));
    found
}

/// Where an operation's open requirement most likely comes from: `policy.default`, else
/// the `policy` section.
fn policy_location(files: &Files) -> Location {
    let default = files.setting("policy.default");
    match default.line {
        Some(_) => default,
        None => files.setting("policy"),
    }
}

/// A warning for each thing an overlay loosened (see `spec::overlay_risks`).
fn overlay_risks(config: &Config, files: &Files) -> Vec<Finding> {
    let Some(openapi) = config.openapi.as_ref().filter(|o| !o.overlays.is_empty()) else {
        return Vec::new();
    };
    let Ok(docs) = crate::snapshot::read_spec_documents(openapi) else {
        return Vec::new();
    };
    crate::spec::overlay_risks(docs, &openapi.overlays)
        .into_iter()
        .map(|risk| {
            let (at, _) = files.locate(&risk);
            Finding::at(Severity::Warning, "overlay_loosens", at, &risk)
        })
        .collect()
}

/// Where a warning about the spec is: the file its text names, else the spec's own.
fn in_spec(config: &Config, files: &Files, warning: &str) -> Location {
    let (mut at, named) = files.locate(warning);
    let spec = config.openapi.as_ref().and_then(|openapi| {
        let file = openapi.file.as_ref().map(|f| f.display().to_string());
        file.or_else(|| openapi.url.clone())
    });
    if let (None, Some(spec)) = (named, spec) {
        at.file = spec;
        at.line = None;
    }
    at
}
