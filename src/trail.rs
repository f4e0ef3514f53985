//! What the admission stages decided about one request, written as they go: the operation
//! and route, who the caller is, the failures shadow mode let through — what the access
//! record logs — and, only for `moat explain`, a line per stage saying why. Stages write
//! here and nowhere else; the access record and the explain report read it.

use std::sync::Arc;

use crate::ids::{Name, OperationLabel};
use crate::reject::{Rejection, Stage};

#[derive(Debug, Default)]
pub struct Trail {
    /// The operationId (or `METHOD /template`) once routed.
    pub operation: Option<OperationLabel>,
    /// The matched path template, once routed.
    pub route: Option<Arc<str>>,
    /// The route is an LLM operation: refusals also carry OpenAI's error object.
    pub openai: bool,
    /// The authenticated subject: the token's `sub`, else the key's `owner`.
    pub subject: Option<Name>,
    /// The verified API key's id.
    pub key_id: Option<Name>,
    /// Failures `policy.mode: shadow` let through, in stage order.
    pub shadowed: Vec<Rejection>,
    /// The request body was read to its end (a refusal before that leaves it unread).
    pub body_read: bool,
    /// The key's quota after stage 5 counted this request: its `RateLimit-*` fields go on
    /// whatever response follows, a later refusal's too.
    pub quota: Option<crate::reject::QuotaUsage>,
    /// Why each stage decided as it did; `None` on the hot path, where a note costs one
    /// branch and its text is never built.
    explained: Option<Vec<Note>>,
}

/// One line of the explain report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub stage: Stage,
    /// A stage's verdict (`pass …`), or a detail under it.
    pub verdict: bool,
    pub text: String,
}

impl Trail {
    /// A trail that also keeps the reasons, for `moat explain`.
    pub fn explaining() -> Trail {
        Trail {
            explained: Some(Vec::new()),
            ..Trail::default()
        }
    }

    /// The stage passed, for the reason `text` gives (built only when explaining).
    pub fn pass(&mut self, stage: Stage, text: impl FnOnce() -> String) {
        if let Some(notes) = &mut self.explained {
            notes.push(Note {
                stage,
                verdict: true,
                text: text(),
            });
        }
    }

    /// A detail of how `stage` reached its verdict (built only when explaining).
    pub fn note(&mut self, stage: Stage, text: impl FnOnce() -> String) {
        if let Some(notes) = &mut self.explained {
            notes.push(Note {
                stage,
                verdict: false,
                text: text(),
            });
        }
    }

    pub fn notes(&self) -> &[Note] {
        self.explained.as_deref().unwrap_or_default()
    }
}
