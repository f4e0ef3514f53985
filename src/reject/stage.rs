//! The stages of design §1, as refusals and the trail name them.

/// The pipeline stage that refused a request; the `stage` label of
/// `moat_rejections_total` and the `stage` field of the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Frame,
    Route,
    Authenticate,
    Authorize,
    Limit,
    Validate,
    Forward,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Frame => "frame",
            Stage::Route => "route",
            Stage::Authenticate => "authenticate",
            Stage::Authorize => "authorize",
            Stage::Limit => "limit",
            Stage::Validate => "validate",
            Stage::Forward => "forward",
        }
    }
}
