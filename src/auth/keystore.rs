//! The API-key store (`config/keys.yaml`, design §3): argon2id PHC hashes of whole keys with
//! their scopes and restrictions (`record`), loaded into an immutable map by id. Also the key
//! format (`key`) and the atomic writes `moat keys` makes (its edits: `store_edit`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Deserialize;

mod key;
mod record;
pub mod redis;

pub use self::key::{looks_like_key, new_key, parse_key, valid_id};
pub use self::record::{KeyRecord, Restriction};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    /// `keys:` with nothing after it is an empty list, as an empty file is an empty store.
    #[serde(default, deserialize_with = "null_is_empty")]
    keys: Records,
}

fn null_is_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Records, D::Error> {
    Ok(Option::<Records>::deserialize(deserializer)?.unwrap_or_default())
}

/// The records by id as they are read, each checked: the list streamed straight into the
/// map — read into a `Vec` first, 100,000 records were copied twice over as it grew, and
/// once more into their `Arc`s.
#[derive(Default)]
struct Records {
    by_id: HashMap<String, Arc<KeyRecord>>,
    problems: Vec<String>,
}

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(RecordList)
    }
}

struct RecordList;

impl<'de> serde::de::Visitor<'de> for RecordList {
    type Value = Records;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of key records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut list: A) -> Result<Records, A::Error> {
        let mut records = Records::default();
        records.by_id.reserve(list.size_hint().unwrap_or(0));
        while let Some(record) = list.next_element::<KeyRecord>()? {
            record.check(&mut records.problems);
            let id = record.id.to_string();
            if records.by_id.insert(id.clone(), Arc::new(record)).is_some() {
                records
                    .problems
                    .push(format!("key id `{id}` appears twice"));
            }
        }
        Ok(records)
    }
}

/// The loaded store: records by id, and which version of the file they came from.
#[derive(Debug)]
pub struct KeyStore {
    pub records: HashMap<String, Arc<KeyRecord>>,
    /// The first 16 hex digits of the file's SHA-256: equal on every replica that reads
    /// the same store, so an operator can show that all of them dropped a revoked key.
    pub digest: String,
    /// The file's size: a store may be at most `input::Kind::KeyStore`'s cap (64 MiB, some
    /// 350,000 records of the shape `moat keys new --scopes --owner` writes).
    pub bytes: usize,
    /// Unix ms of when this replica last read the file and found this content: set at the
    /// load, and again by each periodic re-read that finds the file unchanged.
    read_at: AtomicU64,
    /// The records of keys without moat's shape, by [`KeyRecord::legacy_tag`].
    pub legacy: HashMap<u32, Vec<Arc<KeyRecord>>>,
}

/// The legacy records by tag (one pass; empty in a store of moat keys only).
fn legacy_index(records: &HashMap<String, Arc<KeyRecord>>) -> HashMap<u32, Vec<Arc<KeyRecord>>> {
    let mut index: HashMap<u32, Vec<Arc<KeyRecord>>> = HashMap::new();
    for record in records.values() {
        if let Some(tag) = record.legacy_tag() {
            index.entry(tag).or_default().push(record.clone());
        }
    }
    index
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore {
            records: HashMap::new(),
            digest: digest(""),
            bytes: 0,
            read_at: AtomicU64::new(unix_ms(SystemTime::now())),
            legacy: HashMap::new(),
        }
    }
}

fn digest(text: &str) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(text.as_bytes());
    hex(&hash[..8])
}

impl KeyStore {
    /// A store read from elsewhere than a file (Redis): `digest` names its version.
    pub fn of_records(
        records: HashMap<String, Arc<KeyRecord>>,
        digest: String,
        bytes: usize,
    ) -> KeyStore {
        KeyStore {
            legacy: legacy_index(&records),
            records,
            digest,
            bytes,
            read_at: AtomicU64::new(unix_ms(SystemTime::now())),
        }
    }

    /// Since the file was last read and found to hold this store.
    pub fn age(&self) -> std::time::Duration {
        let read_at = self.read_at.load(Ordering::Relaxed);
        std::time::Duration::from_millis(unix_ms(SystemTime::now()).saturating_sub(read_at))
    }

    /// The file was read again and holds this store still.
    pub fn confirm(&self) {
        self.read_at
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// A store anyone can write is refused (they could add a key of their own). One that
    /// others can read is not warned about, unlike `.env` or a private key: it holds only
    /// argon2id hashes of keys `moat keys new` draws from 32 random bytes, which no reader can
    /// reverse, and a
    /// git checkout leaves it 0644 — a warning on every start and every `moat check` would
    /// teach people to ignore warnings.
    pub fn load(path: &Path) -> Result<KeyStore, Vec<String>> {
        crate::secrets::refuse_world_writable(path, "key store")
            .map_err(|problem| vec![problem])?;
        Self::read(path)
    }

    /// [`KeyStore::load`] for the periodic re-read.
    pub fn reload(path: &Path) -> Result<KeyStore, Vec<String>> {
        Self::load(path)
    }

    fn read(path: &Path) -> Result<KeyStore, Vec<String>> {
        let text = crate::input::read_to_string(path, crate::input::Kind::KeyStore)
            .map_err(|problem| vec![problem])?;
        Self::parse(&text).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect()
        })
    }

    pub fn parse(text: &str) -> Result<KeyStore, Vec<String>> {
        // A store written as JSON (a JSON document is YAML too) is read by serde_json: ten
        // times faster than the YAML parser on a 100,000-record store. A duplicate member
        // is an error there as well (serde's derive refuses a field given twice).
        let file: Option<StoreFile> = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| vec![e.to_string()])?
        } else {
            // An empty or comment-only file is an empty store (a fresh `keys.yaml`).
            serde_saphyr::from_str_with_options(text, yaml_options())
                .map_err(|e| vec![e.to_string()])?
        };
        let Records { by_id, problems } = file.map(|file| file.keys).unwrap_or_default();
        if problems.is_empty() {
            Ok(KeyStore::of_records(by_id, digest(text), text.len()))
        } else {
            Err(problems)
        }
    }
}

/// YAML as the store is read: only `true` and `false` are booleans, and a key given twice
/// is an error. The parser's node and event budgets (250,000 and 1,000,000 by default,
/// sized for config files) would stop a store at ~25,000 keys; a store streams into its
/// records without a tree, so what bounds its memory is the file's cap (64 MiB, see
/// `input`), and the budgets are raised to what a file of that size can hold — the
/// alias and depth budgets, which guard against expansion, keep their defaults.
pub(super) fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    let cap = usize::try_from(crate::input::Kind::KeyStore.cap()).unwrap_or(usize::MAX);
    let mut budget = serde_saphyr::Budget::default();
    // A node takes at least two bytes (`a\n`, `- `), an event no more than a node's two.
    budget.max_nodes = cap / 2;
    budget.max_events = cap;
    options.budget = Some(budget);
    options
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, mode 0600,
/// renamed over the old one, so a reader never sees half a store.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = temporary_beside(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    std::fs::rename(&temporary, path)
}

/// `.<name>.<pid>.tmp` in the directory of `path`: the same file system, so the rename is
/// atomic.
fn temporary_beside(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("keys.yaml");
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// Lower-case hex, as digests and legacy SHA-256s are written.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch: when the store was read, kept in an `AtomicU64`.
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn an_empty_file_a_comment_and_a_bare_keys_line_are_empty_stores() {
        for text in [
            "",
            "\n",
            "# no keys yet\n",
            "keys:\n",
            "keys: []\n",
            "keys: [] # none\n",
        ] {
            let store = KeyStore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            assert!(store.records.is_empty(), "{text:?}");
        }
        assert!(KeyStore::parse("[]\n").is_err(), "a list is not a store");
    }

    #[test]
    fn a_store_written_as_json_reads_as_its_yaml_twin_and_refuses_a_member_twice() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let yaml = format!(
            "keys:\n  - id: a\n    hash: \"{hash}\"\n    scopes: [predict]\n    expires_at: 2099-01-01T00:00:00Z\n"
        );
        let json = format!(
            r#"{{"keys": [{{"id": "a", "hash": "{hash}", "scopes": ["predict"], "expires_at": "2099-01-01T00:00:00Z"}}]}}"#
        );
        let (yaml, json_store) = (
            KeyStore::parse(&yaml).unwrap(),
            KeyStore::parse(&json).unwrap(),
        );
        assert_eq!(yaml.records["a"], json_store.records["a"]);
        let twice = json.replace(r#""id": "a","#, r#""id": "a", "id": "b","#);
        let problems = KeyStore::parse(&twice).unwrap_err();
        assert!(problems[0].contains("duplicate field `id`"), "{problems:?}");
        assert!(KeyStore::parse(r#"{"keys": [], "extra": 1}"#).is_err());
    }

    #[test]
    fn a_legacy_record_holds_a_sha256_or_a_tag_beside_its_argon2id_hash_never_both() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let argon = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let store = KeyStore::parse(&format!(
            "keys:\n  - id: a\n    legacy_sha256: {sha}\n  - id: b\n    hash: \"{argon}\"\n    legacy_tag: \"9f86d081\"\n  - id: c\n    hash: \"{argon}\"\n"
        ))
        .unwrap();
        assert_eq!(store.legacy[&0x9f86_d081].len(), 2, "a and b share the tag");
        for bad in [
            format!("keys:\n  - id: a\n    legacy_sha256: {}\n", &sha[..60]),
            format!(
                "keys:\n  - id: a\n    legacy_sha256: {}\n",
                sha.to_uppercase()
            ),
            format!("keys:\n  - id: a\n    hash: \"{argon}\"\n    legacy_sha256: {sha}\n"),
            format!("keys:\n  - id: a\n    hash: \"{argon}\"\n    legacy_tag: xyz\n"),
            "keys:\n  - id: a\n".to_owned(),
        ] {
            assert!(KeyStore::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_have_one_shape() {
        let key = new_key("batch-scorer");
        assert_eq!(parse_key(&key), Some("batch-scorer"));
        assert_eq!(key.len(), "moat_batch-scorer_".len() + 43);
        for bad in [
            "moat_batch-scorer_short",
            "moat_Batch_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "moat__aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "mote_x_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "moat_x_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=",
            "",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
        // base64url secrets may contain '_': the id ends at the first one.
        let secret = URL_SAFE_NO_PAD.encode([0xff; 32]);
        assert!(secret.starts_with("__"));
        assert_eq!(parse_key(&format!("moat_k1_{secret}")), Some("k1"));
    }

    #[test]
    fn a_store_with_problems_reports_them_all() {
        let text = "keys:\n  - id: Bad_Id\n    hash: plain\n  - id: ok\n    hash: plain\n";
        let problems = KeyStore::parse(text).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(KeyStore::parse("keys:\n  - id: a\n    hash: x\n    colour: red\n").is_err());
    }

    #[test]
    fn a_world_writable_store_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        std::fs::write(&path, "keys: []\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let problems = KeyStore::load(&path).unwrap_err();
        assert!(problems[0].contains("world-writable"), "{problems:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            KeyStore::load(&path).is_ok(),
            "0644 is a warning, not a refusal"
        );
    }

    #[test]
    fn restrictions_are_checked() {
        let text = "keys:\n  - id: a\n    hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$WJrzZDMvBKXnSS3ZaKm7JYNwA4fSoVdhdX0ykbdZwQ8\"\n    expires_at: 2030-01-01T00:00:00Z\n    not_before: 2020-01-01T00:00:00Z\n    allowed_cidrs: [10.0.0.0/8, \"::1/128\"]\n";
        let store = KeyStore::parse(text).expect("loads");
        let record = &store.records["a"];
        let at = humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(record.admits("10.1.2.3".parse().unwrap(), at), Ok(()));
        assert_eq!(record.admits("::1".parse().unwrap(), at), Ok(()));
        assert_eq!(
            record.admits("192.0.2.1".parse().unwrap(), at),
            Err(Restriction::Address)
        );
        let later = humantime::parse_rfc3339("2031-01-01T00:00:00Z").unwrap();
        assert_eq!(
            record.admits("10.0.0.1".parse().unwrap(), later),
            Err(Restriction::Expired)
        );
        let earlier = humantime::parse_rfc3339("2019-01-01T00:00:00Z").unwrap();
        assert_eq!(
            record.admits("10.0.0.1".parse().unwrap(), earlier),
            Err(Restriction::NotYetValid)
        );
        assert!(
            !format!("{record:?}").contains("argon2"),
            "Debug shows the hash"
        );
    }
}
