//! `moat check --format json`: one document on stdout — `ok`, every error and warning with
//! its code, file, line and JSON pointer, and a summary of what loaded — for a CI job to
//! read instead of scraping the text report. Progress stays on stderr.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::findings::Finding;
use super::load::Checked;
use super::spec_source::SpecSource;
use super::tls_status::TlsStatus;
use crate::config::Config;
use crate::snapshot::Snapshot;

/// The whole document, pretty-printed, with a final newline.
pub fn render(config_path: &Path, checked: &Checked, offline: bool) -> String {
    let errors: Vec<&Finding> = checked.errors().collect();
    let warnings: Vec<&Finding> = checked.warnings().collect();
    let mut summary = json!({"errors": errors.len(), "warnings": warnings.len()});
    if let Some(config) = &checked.config {
        merge(&mut summary, config_summary(config));
    }
    merge(
        &mut summary,
        spec_summary(&checked.spec, checked.snapshot.as_ref()),
    );
    let document = json!({
        "ok": errors.is_empty(),
        "config": config_path.display().to_string(),
        "offline": offline,
        "errors": errors,
        "warnings": warnings,
        "summary": summary,
    });
    // Serialising a `Value` cannot fail: its keys are strings.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// Addresses and TLS, from the config alone.
fn config_summary(config: &Config) -> Value {
    let tls = TlsStatus::of(config);
    let now = SystemTime::now();
    let leaf = tls.leaf.as_ref();
    json!({
        "listen": config.listen.to_string(),
        "admin_listen": config.admin_listen.to_string(),
        "upstream": config.upstream.shown_url(),
        "tls": {
            "enabled": tls.cert_file.is_some(),
            "status": tls.describe(now),
            "cert_file": tls.cert_file.as_ref().map(|f| f.display().to_string()),
            "common_name": leaf.and_then(|l| l.common_name.clone()),
            "names": leaf.map(|l| l.names.clone()).unwrap_or_default(),
            "not_after": leaf.map(|l| humantime::format_rfc3339_seconds(l.not_after).to_string()),
            "days_left": leaf.map(|l| l.days_left(now)),
            "client_certificates": tls.client_ca.is_some(),
        },
    })
}

/// Where the spec came from, how many operations were checked, and each one's route.
fn spec_summary(source: &SpecSource, snapshot: Option<&Snapshot>) -> Value {
    let (kind, location, cache) = match source {
        SpecSource::None => ("none", None, None),
        SpecSource::File(path) => ("file", Some(path.display().to_string()), None),
        SpecSource::Fetched { url, cached } => {
            let cache = cached.as_ref().ok().map(|p| p.display().to_string());
            ("url", Some(url.clone()), cache)
        }
        SpecSource::Cached { url, path, .. } => {
            ("cache", Some(url.clone()), Some(path.display().to_string()))
        }
        SpecSource::Skipped { url } => ("skipped", Some(url.clone()), None),
    };
    let spec = snapshot.and_then(|s| s.spec.as_deref());
    let operations = snapshot.map(operations).unwrap_or_default();
    json!({
        "spec": {
            "source": kind,
            "location": location,
            "cache": cache,
            "version": spec.map(|s| s.version.to_string()),
        },
        "operations_checked": operations.len(),
        "schemes": snapshot.map(|s| s.auth.describe_schemes()).unwrap_or_default(),
        "operations": operations,
    })
}

/// Each operation: method, path template, operationId, mode, requirement, LLM or not.
/// gRPC methods follow, with `method: "gRPC"` and their kind (`unary`, `server streaming`, …).
fn operations(snapshot: &Snapshot) -> Vec<Value> {
    let spec = snapshot.spec.as_deref().map_or(&[][..], |s| &s.operations);
    let grpc = snapshot.grpc.as_deref().map_or(&[][..], |g| &g.operations);
    let http = spec.iter().enumerate().map(|(index, operation)| {
        let route = snapshot.routes.operation(index);
        json!({
            "method": operation.method.as_str(),
            "path": operation.template.to_string(),
            "operation_id": operation.id.to_string(),
            "mode": route.mode.as_str(),
            "requirement": route.requirement.to_string(),
            "llm": route.llm.is_some(),
            "responses": super::responses::label(&route.responses),
        })
    });
    let rpc = grpc.iter().enumerate().map(|(index, operation)| {
        let route = snapshot.routes.grpc(index);
        json!({
            "method": "gRPC",
            "path": operation.template.to_string(),
            "operation_id": operation.id.to_string(),
            "mode": route.mode.as_str(),
            "requirement": super::requirement(route),
            "llm": false,
            "kind": operation.rpc.as_ref().map_or("", crate::spec::Rpc::kind),
        })
    });
    http.chain(rpc).collect()
}

#[cfg(test)]
mod tests;
