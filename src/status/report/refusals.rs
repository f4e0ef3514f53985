//! The report's refusals (and shadow-mode would-be refusals): counts by label, and the
//! last ones with the caller they refused.

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use serde::Serialize;

use crate::reject::FieldError;
use crate::status::Refusal;
use crate::status::recent::RefusalLog;

#[derive(Serialize)]
pub(super) struct Refusals {
    by_code: Vec<CodeRow>,
    recent: Vec<RecentRow>,
}

#[derive(Serialize)]
struct CodeRow {
    stage: &'static str,
    code: &'static str,
    status: u16,
    count: u64,
}

#[derive(Serialize)]
struct RecentRow {
    time: String,
    request_id: String,
    operation: String,
    status: u16,
    stage: &'static str,
    code: &'static str,
    key_id: Option<String>,
    subject: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl Refusals {
    /// By label, most frequent first, and the last ones, newest first.
    pub(super) fn of(log: &RefusalLog) -> Refusals {
        let mut by_code: Vec<CodeRow> = log
            .counts()
            .into_iter()
            .map(|((stage, code, status), count)| CodeRow {
                stage,
                code,
                status,
                count: count.load(Relaxed),
            })
            .collect();
        by_code.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.code.cmp(b.code)));
        Refusals {
            by_code,
            recent: log.latest().iter().map(row).collect(),
        }
    }
}

fn row(refusal: &Refusal) -> RecentRow {
    RecentRow {
        time: humantime::format_rfc3339_millis(refusal.at.max(SystemTime::UNIX_EPOCH)).to_string(),
        request_id: refusal.request_id.as_str().to_owned(),
        operation: refusal.operation.to_string(),
        status: refusal.status,
        stage: refusal.stage,
        code: refusal.code,
        key_id: refusal.key_id.as_deref().map(str::to_owned),
        subject: refusal.subject.as_deref().map(str::to_owned),
        errors: refusal.errors.clone(),
    }
}
