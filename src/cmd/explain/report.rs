//! The report of `moat explain`: each stage's verdict and reasons from the trail, in stage
//! order, up to the one that refused; then the verdict.

use std::fmt::Write as _;

use http::{Method, Uri};

use super::Explanation;
use crate::admit::Verdict;
use crate::reject::{Rejection, Stage};
use crate::trail::{Note, Trail};

/// The stages as the report groups them: authorize shares authenticate's lines.
const GROUPS: [(Stage, &str); 5] = [
    (Stage::Frame, "1 frame"),
    (Stage::Route, "2 route"),
    (Stage::Authenticate, "3-4 auth"),
    (Stage::Limit, "5 limit"),
    (Stage::Validate, "6 validate"),
];

fn group(stage: Stage) -> Stage {
    match stage {
        Stage::Authorize => Stage::Authenticate,
        other => other,
    }
}

fn fail_label(stage: Stage) -> &'static str {
    match stage {
        Stage::Frame => "1 frame",
        Stage::Route => "2 route",
        Stage::Authenticate => "3 authenticate",
        Stage::Authorize => "4 authorize",
        Stage::Limit => "5 limit",
        Stage::Validate | Stage::Forward => "6 validate",
    }
}

impl Explanation {
    /// Each stage's verdict and details from the trail, in stage order, up to the one that
    /// refused; then the verdict.
    pub(super) fn render<B>(
        mut self,
        trail: &Trail,
        verdict: Result<Verdict<B>, Rejection>,
    ) -> Explanation {
        let failed = verdict.as_ref().err();
        for (stage, label) in GROUPS {
            let notes: Vec<_> = trail
                .notes()
                .iter()
                .filter(|n| group(n.stage) == stage)
                .collect();
            if let Some(rejection) = failed.filter(|r| group(r.stage()) == stage) {
                self.fail(fail_label(rejection.stage()), rejection, "FAIL");
                self.details(&notes);
                return self.verdict_refused(rejection);
            }
            self.passed(stage, label, &notes, trail);
        }
        self.verdict(verdict)
    }

    /// A stage the request passed: its verdicts — or, for validation in shadow mode, the
    /// refusals it logged instead — then its details.
    fn passed(&mut self, stage: Stage, label: &str, notes: &[&Note], trail: &Trail) {
        let shadowed = stage == Stage::Validate && !trail.shadowed.is_empty();
        for note in notes.iter().filter(|n| n.verdict && !shadowed) {
            self.pass(label, &note.text);
        }
        if stage == Stage::Validate {
            for rejection in &trail.shadowed {
                self.fail(fail_label(rejection.stage()), rejection, "SHADOW");
                self.note("shadow mode: logged and counted, forwarded anyway");
            }
        }
        self.details(notes);
    }

    /// The notes that explain rather than decide.
    fn details(&mut self, notes: &[&Note]) {
        for note in notes.iter().filter(|n| !n.verdict) {
            self.note(&note.text);
        }
    }

    fn verdict<B>(mut self, verdict: Result<Verdict<B>, Rejection>) -> Explanation {
        match verdict {
            Ok(Verdict::Forward(admitted)) => self.forward(admitted.method(), admitted.uri()),
            Ok(Verdict::Options(_)) => {
                self.line("verdict: answered by moat (204), not forwarded");
                self
            }
            Ok(Verdict::Health(answer)) => {
                let status = answer.status as u8;
                self.line(&format!(
                    "verdict: the gRPC health check, answered by moat (grpc-status {status}), \
                     not forwarded"
                ));
                self
            }
            // A refusal at a stage the report does not group was rendered above.
            Err(rejection) => self.verdict_refused(&rejection),
        }
    }

    pub(super) fn line(&mut self, text: &str) {
        let _ = writeln!(self.text, "{text}");
    }

    fn pass(&mut self, stage: &str, reason: &str) {
        let _ = writeln!(self.text, "{stage:<16} pass  {reason}");
    }

    /// A line of detail under a stage's verdict.
    pub(super) fn note(&mut self, note: &str) {
        let _ = writeln!(self.text, "{:<22}{note}", "");
    }

    /// A failure: its status, code, reason and each field error with its pointer.
    fn fail(&mut self, stage: &str, rejection: &Rejection, word: &str) {
        let _ = writeln!(
            self.text,
            "{stage:<16} {word}  {} {}: {}",
            rejection.status().as_u16(),
            rejection.code(),
            rejection.detail()
        );
        for error in rejection.errors() {
            let pointer = if error.pointer.is_empty() {
                "/"
            } else {
                &error.pointer
            };
            self.note(&format!("{} {pointer}: {}", error.location, error.message));
        }
    }

    fn verdict_refused(mut self, rejection: &Rejection) -> Explanation {
        let _ = writeln!(
            self.text,
            "verdict: refused with {} {}, not forwarded",
            rejection.status().as_u16(),
            rejection.code()
        );
        self
    }

    fn forward(mut self, method: &Method, uri: &Uri) -> Explanation {
        let _ = writeln!(
            self.text,
            "verdict: {method} {} would be forwarded to the model (explain never forwards)",
            uri.path()
        );
        self.forwarded = true;
        self
    }
}
