//! Where a key stands in its quota, as the `RateLimit-*` response fields say it: carried by
//! the refusals that concern the quota and by the trail after stage 5.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Where a key stands in its quota: what the `RateLimit-*` response headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaUsage {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window ends.
    pub reset: u64,
    /// The window's length in seconds (`RateLimit-Policy`'s `w`).
    pub window: u64,
}

impl QuotaUsage {
    /// The fields of the IETF draft (draft-ietf-httpapi-ratelimit-headers-07): `RateLimit-Limit`,
    /// `-Remaining`, `-Reset` (delta seconds, never a date) and `RateLimit-Policy`.
    pub fn write(&self, headers: &mut HeaderMap) {
        static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
        static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
        static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
        static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
        headers.insert(LIMIT.clone(), HeaderValue::from(self.limit));
        headers.insert(REMAINING.clone(), HeaderValue::from(self.remaining));
        headers.insert(RESET.clone(), HeaderValue::from(self.reset));
        let policy = format!("{};w={}", self.limit, self.window);
        if let Ok(policy) = HeaderValue::try_from(policy) {
            headers.insert(POLICY.clone(), policy);
        }
    }
}
