//! Where `moat check` takes the spec from when `openapi.url` names the model's: fetched
//! with a line on stderr per attempt within a bound it states, and kept in a cache beside
//! the config; with `--offline`, that cached copy, or none and a warning that the checks
//! of operations were skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::findings::{Finding, Severity};
use super::locate::Files;
use crate::config::{Config, Prefetched};
use crate::fetch::Schedule;

/// Where the spec that was checked came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecSource {
    /// The config names no `openapi`.
    None,
    /// `openapi.file`.
    File(PathBuf),
    /// Fetched from `url` now; `cached` is where the copy was written, or why it was not.
    Fetched {
        url: String,
        cached: Result<PathBuf, String>,
    },
    /// `--offline`: the copy of `url` an earlier `moat check` fetched, and when.
    Cached {
        url: String,
        path: PathBuf,
        fetched: Option<SystemTime>,
    },
    /// Not checked: offline without a cached copy, or the model did not answer.
    Skipped { url: String },
}

/// How `moat check` may get a spec named by URL.
#[derive(Debug, Clone, Copy)]
pub struct Fetching {
    pub offline: bool,
    /// The most the fetch may take: `--fetch-timeout`, else `openapi.fetch_timeout` up to
    /// [`DEFAULT_BOUND`].
    pub timeout: Option<Duration>,
}

/// `moat check` reports on a running model rather than waiting for one to start, as
/// `serve` does for `openapi.fetch_timeout`: ten seconds is five attempts.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(10);

/// Where the spec at `url` is cached: `.moat-cache/openapi-<16 hex digits of the URL's
/// SHA-256>` in the config's directory, one file per URL so a changed URL never finds
/// another model's spec.
pub fn cache_path(config_path: &Path, url: &str) -> PathBuf {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(url.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let dir = config_path.parent().unwrap_or(Path::new(""));
    dir.join(".moat-cache").join(format!("openapi-{hex}"))
}

/// Gives `openapi.prefetched` the spec `openapi.url` names — fetched, or cached when
/// offline — or, when there is none to be had, drops `openapi` and `policy.operations` so
/// the rest is checked without them, with a finding that says so.
pub fn prepare(
    config: &mut Config,
    config_path: &Path,
    fetching: Fetching,
    files: &Files,
    findings: &mut Vec<Finding>,
) -> SpecSource {
    let Some(openapi) = config.openapi.as_mut() else {
        return SpecSource::None;
    };
    let Some(url) = openapi.url.clone().filter(|_| openapi.file.is_none()) else {
        return openapi
            .file
            .clone()
            .map_or(SpecSource::None, SpecSource::File);
    };
    let cache = cache_path(config_path, &url);
    let got = match fetching.offline {
        true => cached(&cache, url.clone()),
        false => {
            let bound = fetching
                .timeout
                .unwrap_or(openapi.fetch_timeout.min(DEFAULT_BOUND));
            fetched(&url, bound, &cache)
        }
    };
    match got {
        Ok((bytes, source)) => {
            openapi.prefetched = Some(Prefetched(Arc::new(bytes)));
            source
        }
        Err((severity, code, problem)) => {
            // Without a spec, what names its operations cannot be checked either.
            config.openapi = None;
            config.policy.operations.clear();
            let at = files.setting("openapi.url");
            findings.push(Finding::at(severity, code, at, &problem));
            SpecSource::Skipped { url }
        }
    }
}

/// Why there is no spec: the finding's severity, code and message.
type NoSpec = (Severity, &'static str, String);

/// The copy at `cache`, if an earlier `moat check` wrote one.
fn cached(cache: &Path, url: String) -> Result<(Vec<u8>, SpecSource), NoSpec> {
    match crate::input::read(cache, crate::input::Kind::Spec) {
        Ok(bytes) => {
            let fetched = std::fs::metadata(cache).and_then(|m| m.modified()).ok();
            let path = cache.to_owned();
            Ok((bytes, SpecSource::Cached { url, path, fetched }))
        }
        Err(_) => Err((
            Severity::Warning,
            "spec_skipped_offline",
            format!(
                "openapi.url: offline, and no copy of {url} is cached ({}): the operations, \
                 their schemas and `policy.operations` were not checked; run `moat check` \
                 once with the model up to cache it",
                cache.display()
            ),
        )),
    }
}

/// The spec from `url`, fetched within `bound` with a line on stderr per attempt, and its
/// copy written to `cache` for `--offline`.
fn fetched(url: &str, bound: Duration, cache: &Path) -> Result<(Vec<u8>, SpecSource), NoSpec> {
    let schedule = Schedule::within(bound);
    let each = crate::fetch::seconds(schedule.each);
    let mut progress = |attempt: u32| {
        eprintln!(
            "fetching {url} (attempt {attempt} of {}, timeout {each})…",
            schedule.attempts
        );
    };
    match crate::fetch::fetch_on_schedule(url, schedule, crate::input::Kind::Spec, &mut progress) {
        Ok(bytes) => {
            let cached = write_cache(cache, &bytes);
            let url = url.to_owned();
            Ok((bytes, SpecSource::Fetched { url, cached }))
        }
        Err(error) => Err((
            Severity::Error,
            "spec_fetch_failed",
            format!(
                "openapi.url: {error}; the operations were not checked (wait longer with \
                 --fetch-timeout, or check the last fetched copy with --offline)"
            ),
        )),
    }
}

/// Writes the copy whole or not at all: a temporary file renamed over the old copy, so an
/// interrupted check never leaves half a spec for `--offline` to read.
fn write_cache(cache: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = cache.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = cache.with_extension("partial");
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, cache)
    };
    write()
        .map(|()| cache.to_owned())
        .map_err(|e| format!("cannot write {}: {e}", cache.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_url_has_its_own_cache_file_beside_the_config() {
        let one = cache_path(
            Path::new("config/moat.yaml"),
            "http://127.0.0.1:8000/openapi.json",
        );
        let two = cache_path(
            Path::new("config/moat.yaml"),
            "http://127.0.0.1:8001/openapi.json",
        );
        assert!(one.starts_with("config/.moat-cache"), "{}", one.display());
        assert_ne!(one, two);
        let bare = cache_path(Path::new("moat.yaml"), "http://x/");
        assert!(bare.starts_with(".moat-cache"), "{}", bare.display());
    }

    #[test]
    fn a_cache_is_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_path(&dir.path().join("moat.yaml"), "http://x/");
        assert_eq!(write_cache(&cache, b"{}"), Ok(cache.clone()));
        let (bytes, source) = cached(&cache, "http://x/".into()).unwrap();
        assert_eq!(bytes, b"{}");
        assert!(matches!(source, SpecSource::Cached { .. }));
        let missing = cached(&dir.path().join("none"), "http://x/".into()).unwrap_err();
        assert_eq!(
            (missing.0, missing.1),
            (Severity::Warning, "spec_skipped_offline")
        );
    }
}
