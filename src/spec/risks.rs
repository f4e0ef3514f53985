//! What overlays take away from the spec's checks, as warnings for `moat check`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::raw::RawOperation;
use super::source::Documents;
use super::{effective, loose, overlay};
use crate::config::Alternative;

/// What applying `overlays` in turn to `docs` (the spec as read, before any overlay) takes
/// away, one warning each: an operation an overlay made public, or whose security it
/// removed so that `policy.default` decides; a bound on requests it removed (what `moat
/// spec loose` reports newly after it). `moat check` prints them: an overlay is meant to
/// tighten, and a loosening one should be a decision, not a slip.
pub fn overlay_risks(mut docs: Documents, overlays: &[PathBuf]) -> Vec<String> {
    let mut warnings = Vec::new();
    for file in overlays {
        match risks_of(&mut docs, file) {
            Some(found) => warnings.extend(found),
            None => break,
        }
    }
    warnings
}

/// What applying `file` to `docs` (in place) takes away; `None` when the spec does not load
/// before or after it, or the overlay does not apply.
fn risks_of(docs: &mut Documents, file: &Path) -> Option<Vec<String>> {
    let before = effective(docs.clone()).ok()?;
    let before_openings = loose::openings(docs, &before.operations);
    let root = docs.docs.get_mut(&docs.root)?;
    overlay::apply_files(root, std::slice::from_ref(&file)).ok()?;
    let after = effective(docs.clone()).ok()?;
    let name = file.display().to_string();
    let mut warnings: Vec<String> = after
        .operations
        .iter()
        .filter_map(|operation| security_risk(&name, &before.operations, operation))
        .collect();
    let after_openings = loose::openings(docs, &after.operations);
    for opened in after_openings.difference(&before_openings) {
        warnings.push(format!("overlay {name} loosens a request schema: {opened}"));
    }
    Some(warnings)
}

/// The warning when overlay `name` made `operation` public, or removed the security it
/// declared (found `before` the overlay by method and template).
fn security_risk(name: &str, before: &[RawOperation], operation: &RawOperation) -> Option<String> {
    let was = before
        .iter()
        .find(|o| o.method == operation.method && o.template == operation.template)?
        .security
        .as_ref()?;
    let label = format!("{} {}", operation.method, operation.template);
    match &operation.security {
        Some(now) if !is_public(was) && is_public(now) => Some(format!(
            "overlay {name} makes `{label}` public: it required credentials before"
        )),
        None if !is_public(was) => Some(format!(
            "overlay {name} removes the security `{label}` declared: \
             `policy.default` decides it now"
        )),
        _ => None,
    }
}

/// A requirement any request meets: no alternative, or an empty one.
fn is_public(security: &[Alternative]) -> bool {
    security.is_empty() || security.iter().any(BTreeMap::is_empty)
}
