//! Reload follows exactly what moat reads and keeps the state of what did not change:
//! writes to other files beside the config reload nothing (and fetch no spec), a Kubernetes
//! `..data` swap and an editor's rename-over save reload once each, and after a reload an
//! exhausted client is still limited, a verified key is not hashed again, and a revoked key
//! is refused within seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Moat, Upstream, config, eventually, get, metric, moat_keys};

fn generation(moat: &Moat) -> u64 {
    metric(moat, "moat_config_generation")
}

fn spec_fetches(upstream: &Upstream) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|seen| seen.target == "/openapi.json")
        .count()
}

/// Waits long enough for any reload a change could cause (debounce, load, swap) to show.
fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

#[test]
fn writes_to_other_files_beside_the_config_reload_nothing_and_fetch_no_spec() {
    let upstream = Upstream::start();
    let text = config(
        &upstream.url(),
        &format!("openapi:\n  url: {}/openapi.json\n", upstream.url()),
    );
    let moat = Moat::start(&text);
    assert_eq!(spec_fetches(&upstream), 1);
    let dir = moat.config_path.parent().unwrap().to_owned();
    // An access log, an editor's swap file and a note, written as they would be.
    for n in 0..50 {
        let line = format!("{{\"n\":{n}}}\n");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("access.log"))
            .unwrap();
        std::io::Write::write_all(&mut log, line.as_bytes()).unwrap();
        std::fs::write(dir.join(".moat.yaml.swp"), &line).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(dir.join("NOTES.md"), "rotate keys on Monday\n").unwrap();
    // `touch` and a rewrite with the same bytes are not changes either.
    std::fs::write(&moat.config_path, &text).unwrap();
    settle();
    assert_eq!(generation(&moat), 0, "an unrelated write reloaded moat");
    assert_eq!(
        spec_fetches(&upstream),
        1,
        "an unrelated write fetched the spec"
    );
    assert!(
        !moat.lines().join("\n").contains("reload"),
        "{}",
        moat.lines().join("\n")
    );

    // A real edit still reloads, and a reload fetches the spec again.
    std::fs::write(&moat.config_path, format!("{text}drain_timeout: 31s\n")).unwrap();
    assert!(eventually(|| generation(&moat) == 1));
    assert!(eventually(|| spec_fetches(&upstream) == 2));
}

/// A Kubernetes ConfigMap/Secret mount: `moat.yaml` and `keys.yaml` are symlinks through
/// `..data`, which the kubelet points at a new timestamped directory on every update.
struct Mount<'a> {
    dir: &'a Path,
    version: u32,
}

impl Mount<'_> {
    /// A new version with `files`, swapped in as the kubelet does (rename over `..data`).
    fn update(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let version = format!("..2026_12_02_10_00_0{}.{}", self.version, self.version);
        let target = self.dir.join(&version);
        std::fs::create_dir(&target).unwrap();
        for (name, text) in files {
            std::fs::write(target.join(name), text).unwrap();
            let link = self.dir.join(name);
            if link.symlink_metadata().is_err() {
                symlink(format!("..data/{name}"), link).unwrap();
            }
        }
        let temporary = self.dir.join("..data_tmp");
        symlink(&version, &temporary).unwrap();
        std::fs::rename(&temporary, self.dir.join("..data")).unwrap();
    }
}

#[test]
fn a_kubernetes_swap_and_a_rename_over_save_each_reload_exactly_once() {
    let upstream = Upstream::start();
    let scratch = tempfile::tempdir().unwrap();
    let store_path = scratch.path().join("keys.yaml");
    let key = moat_keys(&store_path, &["new", "--id", "ops", "--scopes", "predict"]);
    let store = std::fs::read_to_string(&store_path).unwrap();
    let mount_dir = tempfile::tempdir().unwrap();
    let mut mount = Mount {
        dir: mount_dir.path(),
        version: 0,
    };
    let text = config(
        &upstream.url(),
        &format!(
            "auth:\n  schemes:\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n",
            mount_dir.path().join("keys.yaml").display()
        ),
    );
    mount.update(&[("moat.yaml", &text), ("keys.yaml", &store)]);
    let moat = Moat::start_at(&mount_dir.path().join("moat.yaml"), &[]);
    let call = |key: &str| get(moat.addr, "/x", &[&format!("X-API-Key: {key}")]).status;
    assert_eq!(call(&key), 200);

    // The same content swapped in again (the kubelet resyncs): nothing to reload.
    mount.update(&[("moat.yaml", &text), ("keys.yaml", &store)]);
    settle();
    assert_eq!(generation(&moat), 0, "a swap to identical content reloaded");

    // A revoke arrives through the mount: one reload.
    moat_keys(&store_path, &["revoke", "ops"]);
    let revoked = std::fs::read_to_string(&store_path).unwrap();
    mount.update(&[("moat.yaml", &text), ("keys.yaml", &revoked)]);
    assert!(
        eventually(|| call(&key) == 401),
        "the revoke did not arrive"
    );
    settle();
    assert_eq!(generation(&moat), 1, "one swap, several reloads");

    // An editor's save: a temporary file renamed over the config (here the real file, not
    // the symlink, as `sed -i` or vim's `backupcopy=no` does on a plain directory).
    let plain = tempfile::tempdir().unwrap();
    let config_path = plain.path().join("moat.yaml");
    std::fs::write(&config_path, config(&upstream.url(), "")).unwrap();
    let edited = Moat::start_at(&config_path, &[]);
    let temporary = plain.path().join(".moat.yaml.tmp");
    std::fs::write(&temporary, config(&upstream.url(), "drain_timeout: 31s\n")).unwrap();
    std::fs::rename(&temporary, &config_path).unwrap();
    assert!(eventually(|| generation(&edited) == 1));
    settle();
    assert_eq!(generation(&edited), 1, "one save, several reloads");
}

#[test]
fn a_reload_keeps_exhausted_buckets_and_verified_keys_and_a_revoke_still_bites() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(&store, &["new", "--id", "ops", "--scopes", "predict"]);
    let limited =
        std::fs::read_to_string(&store).unwrap() + "    rate_limit: {per_second: 1, burst: 10}\n";
    std::fs::write(&store, limited).unwrap();
    let text = support::keyed_config(&upstream, &store);
    let moat = Moat::start(&text);
    let call = || get(moat.addr, "/v1/models", &[&format!("X-API-Key: {key}")]).status;
    let statuses: Vec<u16> = (0..11).map(|_| call()).collect();
    assert_eq!(statuses[..10], [200; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    let hashed = metric(
        &moat,
        r#"moat_key_verifications_total{result="valid",cache="miss"}"#,
    );
    assert_eq!(hashed, 1);

    // An unrelated policy edit: a public health route.
    std::fs::write(
        &moat.config_path,
        text.replace(
            "policy:\n",
            "policy:\n  operations:\n    \"GET /health\": []\n",
        ),
    )
    .unwrap();
    assert!(eventually(|| generation(&moat) == 1));
    // Kept buckets refill at 1/s, so fewer than ten pass now; fresh ones would pass all ten.
    let after: Vec<u16> = (0..10).map(|_| call()).collect();
    assert!(
        after.contains(&429),
        "the reload gave an exhausted key a fresh burst: {after:?}"
    );
    assert_eq!(
        metric(
            &moat,
            r#"moat_key_verifications_total{result="valid",cache="miss"}"#
        ),
        hashed,
        "the reload made a cached key pay argon2 again"
    );

    // A revoke still takes effect within seconds.
    moat_keys(&store, &["revoke", "ops"]);
    let revoked_at = Instant::now();
    while call() != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "the revoked key still works after 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
