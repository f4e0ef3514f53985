//! `moat spec loose`: what the effective spec leaves open in what a request may carry —
//! strings with no length, pattern, enum or bounded format; numbers without both bounds;
//! arrays without `maxItems`; objects open to any other property; schemas that accept
//! anything; JSON bodies with no schema — and, in the schemas of its answers, objects open
//! to any other property (what the model may add to an answer and moat relays) — written as an Overlay document with an action
//! for each, to be reviewed and kept as the spec's tightening. An action's `update` holds
//! only what the spec already states; the keywords that would close it are suggestions.
//!
//! Each schema location is reported once, with every operation that reaches it, and only
//! in the spec's own document (the only one an overlay can target). The report reads the
//! document as overlays see it — after them, before 3.0→3.1 normalisation, which rewrites
//! schemas (`nullable` wraps one a level down) — so every target it writes exists.

mod open_ends;
mod walk;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use self::open_ends::Opening;
use self::walk::Walk;
use super::raw::RawOperation;
use super::source::Documents;

/// One thing left open, what closes it for certain, and what might.
struct Finding {
    what: String,
    update: Value,
    suggested: Value,
}

#[derive(Default)]
struct Openings {
    /// By JSON pointer in the spec's own document: what is open there.
    findings: BTreeMap<String, Vec<Finding>>,
    /// By JSON pointer: the operations whose requests reach it.
    reached_by: BTreeMap<String, BTreeSet<String>>,
}

/// An Overlay document, its fields in the order the specification lists them.
#[derive(Serialize)]
pub struct Overlay {
    overlay: &'static str,
    info: Info,
    actions: Vec<Action>,
}

#[derive(Serialize)]
struct Info {
    title: String,
    version: &'static str,
}

/// One action: `update` holds only what the spec states, so the overlay applied as it is
/// refuses nothing the spec allows; the guesses go in `x-moat-suggested` (a specification
/// extension, which overlay tools ignore) for a person to review and move into `update`.
#[derive(Serialize)]
struct Action {
    target: String,
    description: String,
    update: Map<String, Value>,
    #[serde(rename = "x-moat-suggested", skip_serializing_if = "Map::is_empty")]
    suggested: Map<String, Value>,
}

/// The overlay that would close everything the spec leaves open; `None` when nothing is.
pub(super) fn report(docs: &Documents, operations: &[RawOperation]) -> Option<Overlay> {
    let report = collect(docs, operations);
    overlay(docs, &report)
}

/// What the spec leaves open, one line each (`#pointer: what`): to tell what an overlay
/// opened by comparing before and after it.
pub(super) fn openings(docs: &Documents, operations: &[RawOperation]) -> BTreeSet<String> {
    collect(docs, operations)
        .findings
        .iter()
        .flat_map(|(pointer, findings)| {
            findings
                .iter()
                .map(move |f| format!("#{pointer}: {}", f.what))
        })
        .collect()
}

fn collect(docs: &Documents, operations: &[RawOperation]) -> Openings {
    let mut report = Openings::default();
    for operation in operations {
        Walk::new(&mut report, docs, operation).operation(operation);
        Walk::answers(&mut report, docs, operation).responses(operation);
    }
    report
}

fn overlay(docs: &Documents, report: &Openings) -> Option<Overlay> {
    let doc = docs.root();
    let actions: Vec<Action> = report
        .findings
        .iter()
        .map(|(pointer, findings)| report.action(doc, pointer, findings))
        .collect();
    (!actions.is_empty()).then(|| Overlay::closing(doc, actions))
}

impl Overlay {
    /// The overlay of `actions` on the spec `doc`, titled for review.
    fn closing(doc: &Value, actions: Vec<Action>) -> Overlay {
        let title = doc
            .pointer("/info/title")
            .and_then(Value::as_str)
            .unwrap_or("the spec");
        Overlay {
            overlay: "1.0.0",
            info: Info {
                title: format!(
                    "What {title} leaves open (moat spec loose): each update holds only what \
                     the spec states; review x-moat-suggested and move what fits into update"
                ),
                version: "1.0.0",
            },
            actions,
        }
    }
}

impl Openings {
    fn found(&mut self, pointer: &str, operation: &str, opening: Opening) {
        self.reached(pointer, operation);
        let findings = self.findings.entry(pointer.to_owned()).or_default();
        if !findings.iter().any(|f| f.what == opening.what) {
            findings.push(Finding {
                what: opening.what.to_owned(),
                update: opening.update,
                suggested: opening.suggested,
            });
        }
    }

    fn reached(&mut self, pointer: &str, operation: &str) {
        self.reached_by
            .entry(pointer.to_owned())
            .or_default()
            .insert(operation.to_owned());
    }

    /// The action that closes what is open at `pointer`: every finding's update merged,
    /// described with the operations that reach it.
    fn action(&self, doc: &Value, pointer: &str, findings: &[Finding]) -> Action {
        let merged = |pick: fn(&Finding) -> &Value| {
            let mut merged = Map::new();
            for finding in findings {
                if let Value::Object(members) = pick(finding) {
                    merged.extend(members.clone());
                }
            }
            merged
        };
        let what: Vec<&str> = findings.iter().map(|f| f.what.as_str()).collect();
        Action {
            target: normalized_path(doc, pointer),
            description: format!(
                "#{pointer}: {} (reached by {})",
                what.join("; "),
                self.reaching(pointer)
            ),
            update: merged(|f| &f.update),
            suggested: merged(|f| &f.suggested),
        }
    }

    /// The operations whose requests reach `pointer`, as a list.
    fn reaching(&self, pointer: &str) -> String {
        let operations: Vec<&str> = self
            .reached_by
            .get(pointer)
            .map(|ops| ops.iter().map(String::as_str).collect())
            .unwrap_or_default();
        operations.join(", ")
    }
}

/// The RFC 9535 normalized path of a JSON pointer in `doc`: `$['paths']['/x']['post']`.
fn normalized_path(doc: &Value, pointer: &str) -> String {
    let mut path = String::from("$");
    let mut node = Some(doc);
    for segment in pointer.split('/').skip(1) {
        let name = super::normalize::unescape(segment);
        match node {
            Some(Value::Array(entries)) => {
                let index: usize = name.parse().unwrap_or(usize::MAX);
                path.push_str(&format!("[{index}]"));
                node = entries.get(index);
            }
            other => {
                let quoted = name.replace('\\', "\\\\").replace('\'', "\\'");
                path.push_str(&format!("['{quoted}']"));
                node = other.and_then(|value| value.get(&name));
            }
        }
    }
    path
}

#[cfg(test)]
mod tests;
