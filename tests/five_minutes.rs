//! The README's "Install" and "Five minutes", run as written: `tests/five-minutes.sh` in an
//! empty directory, with a fresh copy of the repository (what `git clone` gives: no
//! `target/`, no virtualenv) installed by `cargo install --locked --path . --root DIR` and
//! only that binary on PATH — `moat --version`, the real FastAPI/scikit-learn model, `moat
//! init` from its URL, `moat check`, a key and a test token, `moat serve`, and a curl of
//! each outcome.
//!
//! One difference from what a user types: the install adds `--debug` and builds into
//! `target/five-minutes/` (kept between runs), because a release build takes 10–20 minutes
//! on two cores; the source, the lockfile and the command are otherwise the user's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string()
}

/// What a fresh clone holds: every file of the repository but the build output, the test
/// tools and git's own directory.
fn fresh_copy(from: &Path, to: &Path) {
    const LEFT_OUT: &[&str] = &["target", ".venv", ".tools", ".git", "node_modules"];
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if LEFT_OUT.iter().any(|left| name == *left) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            fresh_copy(&entry.path(), &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn the_install_and_the_five_minute_guide_work_as_written() {
    let Some(python) = support::model_python() else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("moat");
    fresh_copy(&root, &source);
    let work = scratch.path().join("my-model");
    std::fs::create_dir(&work).unwrap();
    // PATH without the test build's directory: the script's `moat` is the installed one.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let cargo_dir = Path::new(&cargo).parent().map(Path::to_path_buf);
    let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(cargo_dir)
        .filter(|dir| !dir.starts_with(root.join("target")))
        .collect::<Vec<_>>();
    let mut child = Command::new("bash")
        .arg(root.join("tests/five-minutes.sh"))
        .current_dir(&work)
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("MOAT_SRC", &source)
        .env("INSTALL_ROOT", scratch.path().join("installed"))
        .env("CARGO_INSTALL_FLAGS", "--debug")
        .env("CARGO_TARGET_DIR", root.join("target/five-minutes"))
        .env("MODEL_PYTHON", python)
        .env("MODEL_DIR", root.join("tests/model-server"))
        .env("MODEL_PORT", free_port())
        .env("MOAT_PORT", free_port())
        .env("ADMIN_PORT", free_port())
        .env("MOAT_LOG", "info")
        .env_remove("MOAT_CONFIG")
        .env_remove("MOAT_KEY_STORE")
        .env_remove("MOAT_KEY_PEPPER")
        .env_remove("MOAT_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    // The install builds moat (and, the first time, its dependencies) in debug mode.
    let deadline = Instant::now() + Duration::from_secs(900);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("five minutes: ok"), "{text}");
}
