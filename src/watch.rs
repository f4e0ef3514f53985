//! Which files a snapshot is built from, and whether any of them changed — so that a reload
//! follows exactly what moat reads. A log file, an editor's swap file or a note beside
//! `moat.yaml` changes nothing: no rebuild, no spec fetch, no log line.
//!
//! Directories are watched, not files, so editors' rename-over saves and Kubernetes'
//! `..data` symlink swaps are seen; an event counts only when it names one of the input
//! files (as configured or as resolved through symlinks) or a `..`-prefixed entry (the
//! swap). A counted event only asks for a look: the reload happens when the content digest
//! of an input changed, so a swap to identical content, a `touch` or a `chmod` reload
//! nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher as _};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::{Config, SchemeConfig};

/// The files one configuration reads, as absolute paths (not resolved through symlinks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs(BTreeSet<PathBuf>);

impl Inputs {
    /// Every file `config` (read from `config_path`) makes moat read.
    pub fn of(config_path: &Path, config: &Config) -> Inputs {
        let mut files: Vec<PathBuf> = vec![config_path.to_owned()];
        files.extend(env_files(config));
        files.extend(config.secret_files.iter().cloned());
        if let Some(tls) = &config.tls {
            files.extend([tls.cert_file.clone(), tls.key_file.clone()]);
            files.extend(tls.client_ca_file.clone());
        }
        if let Some(openapi) = &config.openapi {
            files.extend(openapi.file.clone());
            files.extend(openapi.overlays.iter().cloned());
        }
        files.extend(config.grpc.iter().flat_map(|grpc| grpc.files().cloned()));
        files.extend(config.auth.schemes.values().flat_map(scheme_files));
        Inputs(
            files
                .into_iter()
                .filter_map(|file| std::path::absolute(file).ok())
                .collect(),
        )
    }

    pub fn extend(&mut self, other: Inputs) {
        self.0.extend(other.0);
    }
}

/// The dotenv files, and the encrypted one with what decrypts it.
fn env_files(config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config.env.dotenv.iter().cloned().collect();
    if let Some(encrypted) = &config.env.encrypted_dotenv {
        files.push(encrypted.clone());
        files.extend(config.env.dotenv_keys.clone());
        #[cfg(feature = "age")]
        files.extend(crate::secrets::identity_files());
    }
    files
}

/// The key store an `api_key` scheme reads, or the key files of a `jwt` scheme.
fn scheme_files(scheme: &SchemeConfig) -> Vec<PathBuf> {
    match scheme {
        SchemeConfig::ApiKey(key) => key.store.file().into_iter().cloned().collect(),
        SchemeConfig::Jwt(jwt) => jwt
            .jwks_file
            .iter()
            .chain(&jwt.public_key_file)
            .cloned()
            .collect(),
    }
}

/// What was seen of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// New to the set: never looked at, so any state of the file counts as a change.
    NotLookedAt,
    /// Missing, unreadable, not a regular file, or too big to read.
    Missing,
    Digest([u8; 32]),
}

/// Each input's content digest and where it resolves to.
#[derive(Debug, Clone, Default)]
pub struct Fingerprints {
    digests: BTreeMap<PathBuf, Content>,
    resolved: BTreeMap<PathBuf, PathBuf>,
}

impl Fingerprints {
    /// Reads and hashes every input (blocking: call off the async runtime). An input that is
    /// not a regular file, or past every cap, reads as missing: never waited on, never
    /// read whole (see `input`).
    pub fn take(inputs: &Inputs) -> Fingerprints {
        let mut fingerprints = Fingerprints::default();
        for file in &inputs.0 {
            let digest = crate::input::read(file, crate::input::Kind::Any)
                .map_or(Content::Missing, |bytes| {
                    Content::Digest(Sha256::digest(&bytes).into())
                });
            fingerprints.digests.insert(file.clone(), digest);
            if let Ok(target) = std::fs::canonicalize(file) {
                fingerprints.resolved.insert(file.clone(), target);
            }
        }
        fingerprints
    }

    /// True when some input's content differs from `earlier`'s (or it appeared, vanished,
    /// or is new to the set). Where a file resolves to is not compared: a symlink swap to the
    /// same bytes changes nothing moat would load.
    pub fn changed_since(&self, earlier: &Fingerprints) -> bool {
        self.digests
            .iter()
            .any(|(file, digest)| earlier.digests.get(file) != Some(digest))
    }

    /// `self`, restricted to `inputs`; files it has not seen are marked unknown, so the
    /// next look reloads if they exist (a change made before they were watched is not lost).
    pub fn carried_to(mut self, inputs: &Inputs) -> Fingerprints {
        self.digests.retain(|file, _| inputs.0.contains(file));
        for file in &inputs.0 {
            self.digests
                .entry(file.clone())
                .or_insert(Content::NotLookedAt);
        }
        self.resolved.retain(|file, _| inputs.0.contains(file));
        self
    }

    /// True when some input has never been looked at (see [`Fingerprints::carried_to`]).
    pub fn has_unknown(&self) -> bool {
        self.digests
            .values()
            .any(|content| *content == Content::NotLookedAt)
    }
}

/// A notify watcher on the inputs' directories, passing on only events about inputs.
pub struct Watcher {
    watcher: notify::RecommendedWatcher,
    directories: BTreeSet<PathBuf>,
    /// File names an event must name to count; shared with notify's thread.
    names: Arc<ArcSwap<HashSet<OsString>>>,
}

impl Watcher {
    /// Sends `()` on `tx` (without waiting) for each event that may concern an input.
    pub fn new(tx: mpsc::Sender<()>) -> notify::Result<Watcher> {
        let names: Arc<ArcSwap<HashSet<OsString>>> = Arc::default();
        let interesting = names.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if relevant(&event, &interesting.load()) {
                let _ = tx.try_send(());
            }
        })?;
        Ok(Watcher {
            watcher,
            directories: BTreeSet::new(),
            names,
        })
    }

    /// Watches the directories of `inputs`, as configured and as resolved.
    pub fn follow(&mut self, inputs: &Inputs, fingerprints: &Fingerprints) {
        let files = inputs.0.iter().chain(fingerprints.resolved.values());
        let (names, mut wanted) = names_and_directories(files);
        self.names.store(Arc::new(names));
        for gone in self.directories.difference(&wanted) {
            let _ = self.watcher.unwatch(gone);
        }
        let new: Vec<PathBuf> = wanted.difference(&self.directories).cloned().collect();
        for directory in new {
            if let Err(error) = self.watcher.watch(&directory, RecursiveMode::NonRecursive) {
                // A directory that does not exist yet: tried again at the next look.
                tracing::debug!(directory = %directory.display(), error = %error, "cannot watch");
                wanted.remove(&directory);
            }
        }
        self.directories = wanted;
    }
}

/// The file names an event must name to count, and the directories to watch for them.
fn names_and_directories<'a>(
    files: impl Iterator<Item = &'a PathBuf>,
) -> (HashSet<OsString>, BTreeSet<PathBuf>) {
    let mut names = HashSet::new();
    let mut directories = BTreeSet::new();
    for file in files {
        names.extend(file.file_name().map(OsString::from));
        directories.extend(file.parent().map(Path::to_path_buf));
    }
    (names, directories)
}

/// Only changes count: notify also reports opens and closes, and moat's own reads would
/// then trigger it again.
fn relevant(event: &notify::Result<notify::Event>, names: &HashSet<OsString>) -> bool {
    event.as_ref().is_ok_and(|event| {
        matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) && event.paths.iter().any(|path| concerns(path, names))
    })
}

/// An event path concerns the inputs when it is one of them by name, or a `..`-prefixed
/// entry such as Kubernetes' `..data` symlink and `..2026_…` directories.
fn concerns(path: &Path, names: &HashSet<OsString>) -> bool {
    path.file_name()
        .is_some_and(|name| names.contains(name) || name.as_encoded_bytes().starts_with(b".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(files: &[&Path]) -> Inputs {
        Inputs(files.iter().map(|f| f.to_path_buf()).collect())
    }

    #[test]
    fn only_a_content_change_of_an_input_counts() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("moat.yaml");
        std::fs::write(&config, "a: 1\n").unwrap();
        let set = inputs(&[&config]);
        let before = Fingerprints::take(&set);
        std::fs::write(dir.path().join("access.log"), "line\n").unwrap();
        std::fs::write(&config, "a: 1\n").unwrap(); // rewritten, same bytes
        assert!(!Fingerprints::take(&set).changed_since(&before));
        std::fs::write(&config, "a: 2\n").unwrap();
        assert!(Fingerprints::take(&set).changed_since(&before));
        std::fs::remove_file(&config).unwrap();
        assert!(Fingerprints::take(&set).changed_since(&before));
    }

    #[test]
    fn a_symlink_swap_counts_only_when_the_content_differs() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second, third) = (
            dir.path().join("..2026_01"),
            dir.path().join("..2026_02"),
            dir.path().join("..2026_03"),
        );
        for (version, text) in [(&first, "v1"), (&second, "v1"), (&third, "v2")] {
            std::fs::create_dir(version).unwrap();
            std::fs::write(version.join("keys.yaml"), text).unwrap();
        }
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink(&first, &data).unwrap();
        let keys = dir.path().join("keys.yaml");
        std::os::unix::fs::symlink("..data/keys.yaml", &keys).unwrap();
        let set = inputs(&[&keys]);
        let before = Fingerprints::take(&set);
        assert_eq!(
            before.resolved[&keys],
            first.join("keys.yaml").canonicalize().unwrap()
        );
        let swap = |to: &Path| {
            let temporary = dir.path().join("..data_tmp");
            std::os::unix::fs::symlink(to, &temporary).unwrap();
            std::fs::rename(&temporary, &data).unwrap();
        };
        swap(&second);
        assert!(
            !Fingerprints::take(&set).changed_since(&before),
            "same bytes"
        );
        swap(&third);
        assert!(Fingerprints::take(&set).changed_since(&before));
    }

    #[test]
    fn files_new_to_the_set_are_looked_at_once_more() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        let carried = Fingerprints::take(&inputs(&[&a])).carried_to(&inputs(&[&a, &b]));
        assert!(carried.has_unknown());
        let now = Fingerprints::take(&inputs(&[&a, &b]));
        assert!(now.changed_since(&carried));
        assert!(!now.clone().carried_to(&inputs(&[&a])).has_unknown());
    }

    #[test]
    fn events_concern_inputs_by_name_and_kubernetes_entries() {
        let names: HashSet<OsString> = [OsString::from("moat.yaml")].into();
        assert!(concerns(Path::new("/etc/moat/moat.yaml"), &names));
        assert!(concerns(Path::new("/etc/moat/..data"), &names));
        assert!(concerns(
            Path::new("/etc/moat/..2026_12_02_10_00_00.123"),
            &names
        ));
        assert!(!concerns(Path::new("/etc/moat/access.log"), &names));
        assert!(!concerns(Path::new("/etc/moat/.moat.yaml.swp"), &names));
    }
}
