//! The README's "Five minutes" guide, run as written: `tests/five-minutes.sh` in a copy of
//! the shipped `config/`, with the real FastAPI/scikit-learn model and the real `moat` on
//! PATH — spec from the model, secrets in `.env`, `moat check`, a key minted into the
//! shipped store, a test token, `moat serve`, and a curl of each outcome.
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

#[test]
fn the_five_minute_guide_works_as_written() {
    let Some(python) = support::model_python() else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = support::shipped_config();
    let bin = Path::new(env!("CARGO_BIN_EXE_moat")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg(root.join("tests/five-minutes.sh"))
        .current_dir(work.path())
        .env("PATH", path)
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
    let deadline = Instant::now() + Duration::from_secs(120);
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
