//! A `jwks_url` key set fetched again: on its `jwks_refresh` schedule, and on an unknown
//! `kid` (a key the provider may just have rotated in), never more than once per
//! `jwks_min_refresh`; a bad fetch keeps the last good set.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::JwtVerifier;
use super::keys::{Keys, parse_jwks};
use crate::config::JwtConfig;

/// Where a fetched key set comes from, and when it was last tried and loaded.
pub(super) struct JwksSource {
    url: String,
    refresh_every: Duration,
    /// An unknown `kid` triggers at most one fetch per this interval, so a stream of forged
    /// `kid`s cannot turn moat into a load generator against the identity provider.
    min_interval: Duration,
    last_attempt: Mutex<Instant>,
    last_loaded: Mutex<Instant>,
}

impl JwksSource {
    /// The config's `jwks_url`, if any, as just loaded.
    pub(super) fn of(config: &JwtConfig) -> Option<JwksSource> {
        config.jwks_url.as_ref().map(|url| JwksSource {
            url: url.clone(),
            refresh_every: config.jwks_refresh,
            min_interval: config.jwks_min_refresh,
            last_attempt: Mutex::new(Instant::now()),
            last_loaded: Mutex::new(Instant::now()),
        })
    }

    /// Whether an attempt may be made now; if so, it counts as made.
    fn attempt_allowed(&self) -> bool {
        let mut last = lock(&self.last_attempt);
        if last.elapsed() < self.min_interval {
            return false;
        }
        *last = Instant::now();
        true
    }

    /// One attempt, briefly: this may run on a request's path (an unknown `kid`).
    async fn fetch(&self) -> Result<String, String> {
        let attempt =
            crate::fetch::fetch_async(&self.url, Duration::ZERO, crate::input::Kind::KeyMaterial);
        let fetched = tokio::time::timeout(Duration::from_secs(3), attempt)
            .await
            .unwrap_or_else(|_| Err("no answer within 3s".to_owned()));
        fetched.and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned()))
    }
}

impl JwtVerifier {
    /// True when a `jwks_url` set is older than `jwks_refresh`.
    pub fn refresh_due(&self) -> bool {
        self.jwks
            .as_ref()
            .is_some_and(|source| lock(&source.last_loaded).elapsed() >= source.refresh_every)
    }

    /// Fetches the `jwks_url` set again, at most once per `jwks_min_refresh`; keeps the last
    /// good set when the fetch or the set is bad. True when new keys were loaded.
    pub async fn refresh(&self) -> bool {
        let (Some(source), Keys::ByKid(keys)) = (&self.jwks, &self.keys) else {
            return false;
        };
        if !source.attempt_allowed() {
            return false;
        }
        let parsed = source
            .fetch()
            .await
            .and_then(|text| parse_jwks(&text, &source.url));
        match parsed {
            Ok(set) => {
                keys.store(Arc::new(set));
                *lock(&source.last_loaded) = Instant::now();
                self.clear_cache();
                tracing::info!(url = %source.url, "JWKS refreshed");
                true
            }
            Err(error) => {
                tracing::warn!(url = %source.url, error = %error, "JWKS refresh failed; keeping the last good set");
                false
            }
        }
    }
}

fn lock(mutex: &Mutex<Instant>) -> MutexGuard<'_, Instant> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
