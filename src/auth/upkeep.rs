//! Keeping the verifiers fresh between reloads: key stores re-read on a timer (and aged
//! toward their `max_store_age` when they can't be), `jwks_url` key sets refreshed when due.

use std::time::Duration;

use super::api_key::ApiKeyVerifier;
use super::{Auth, Verifier};

impl Auth {
    /// Re-reads every key store (blocking: call it off the runtime), so an unchanged store
    /// stays fresh and one that can't be read ages toward its `max_store_age`. True when a
    /// store's file changed, which a reload then picks up.
    pub fn reread_key_stores(&self) -> bool {
        let mut changed = false;
        for (scheme, verifier) in self.api_keys() {
            match verifier.reread_store() {
                Ok(same) => changed |= !same,
                Err(problems) => warn_unreadable(scheme, verifier, &problems),
            }
        }
        changed
    }

    /// The first API-key scheme whose store is past its `max_store_age`: (scheme, age, max).
    pub fn stale_key_store(&self) -> Option<(&str, Duration, Duration)> {
        self.api_keys().find_map(|(scheme, verifier)| {
            let (age, max) = verifier.staleness()?;
            Some((scheme, age, max))
        })
    }

    /// How often to re-read the key stores: four times per the smallest `max_store_age`
    /// (at least every second), else every 30 s.
    pub fn reread_interval(&self) -> Duration {
        self.api_keys()
            .filter_map(|(_, verifier)| verifier.max_store_age())
            .map(|max| (max / 4).max(Duration::from_secs(1)))
            .min()
            .unwrap_or(Duration::from_secs(30))
    }

    /// Refreshes every `jwks_url` key set that is due (called periodically).
    pub async fn refresh_key_sets(&self) {
        for verifier in self.verifiers.values() {
            if let Verifier::Jwt(jwt) = verifier
                && jwt.refresh_due()
            {
                jwt.refresh().await;
            }
        }
    }
}

/// The last good store serves on; the log says for how long, and whether it is past its
/// `max_store_age` already.
fn warn_unreadable(scheme: &str, verifier: &ApiKeyVerifier, problems: &[String]) {
    let age = verifier.store().age();
    let stale = verifier.staleness().is_some();
    tracing::warn!(
        scheme,
        problems = problems.join("; "),
        age_seconds = age.as_secs(),
        stale,
        "cannot re-read the key store; the last good one serves{}",
        if stale {
            ", but past max_store_age: every key is refused with 503"
        } else {
            ""
        }
    );
}
