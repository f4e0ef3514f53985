//! `moat check`'s line about the model's answers: which operations hold them to the spec
//! in which `responses.mode`, and whether the mode was set or follows from the spec (unset,
//! it is `shadow` where the spec declares a response schema, `off` elsewhere).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::ResponsePolicy;
use crate::snapshot::Snapshot;

/// Operations named in full up to this many per mode; past it, counted.
const NAMED: usize = 6;

/// One line per mode the operations are in, e.g. `responses  shadow (unset: …): 4 — a, b`.
pub(super) fn describe(out: &mut String, snapshot: &Snapshot, spec: &crate::spec::Spec) {
    let mut modes: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (index, operation) in spec.operations.iter().enumerate() {
        let policy = &snapshot.routes.operation(index).responses;
        modes.entry(label(policy)).or_default().push(&operation.id);
    }
    for (label, ids) in modes {
        let named = match ids.len() {
            n if n <= NAMED => ids.join(", "),
            n => format!("{} and {} more", ids[..NAMED].join(", "), n - NAMED),
        };
        let _ = writeln!(out, "  responses     {label}: {named}");
    }
}

/// A policy as the line names it: its mode, why, and what else it does.
pub(super) fn label(policy: &ResponsePolicy) -> String {
    let mode = policy.mode.as_str();
    let mut label = match (policy.mode_by_default, policy.mode) {
        (true, crate::config::ResponseMode::Off) => {
            format!("{mode} (unset; the spec declares no response schema)")
        }
        (true, _) => format!("{mode} (unset; the spec declares a response schema)"),
        (false, _) => mode.to_owned(),
    };
    if policy.conceal {
        label.push_str(", 5xx bodies concealed");
    }
    if policy.strip_undeclared {
        label.push_str(", undeclared members removed");
    }
    label
}
