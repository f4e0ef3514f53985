//! `moat demo`, the README's run command: it starts, and every curl line it prints gets the
//! status it announces (run with the real curl).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn every_printed_curl_line_gets_the_status_it_announces() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is missing; .ci/run installs it"
        );
        eprintln!("skipped: curl is not installed");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("MOAT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start moat demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut banner = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the demo printed its guide in time");
        if line.contains("Ctrl-C stops the demo") {
            break;
        }
        banner.push(line);
    }
    let mut examples = Vec::new();
    for pair in banner.windows(2) {
        if let Some(rest) = pair[0].strip_prefix("# expect ") {
            let status = rest[..3].to_owned();
            examples.push((status, rest.to_owned(), pair[1].clone()));
        }
    }
    assert!(examples.len() >= 12, "{banner:#?}");
    let mut statuses = std::collections::BTreeSet::new();
    for (status, what, command) in &examples {
        assert!(
            command.starts_with("curl ") || command.starts_with("for "),
            "{command}"
        );
        // A loop prints each call's status itself; one call gets `-w` appended.
        let script = if command.starts_with("for ") {
            command.clone()
        } else {
            format!("{command} -o /dev/null -w '%{{http_code}}'")
        };
        let output = Command::new("sh").arg("-c").arg(script).output().unwrap();
        let got = String::from_utf8_lossy(&output.stdout).into_owned();
        if command.starts_with("for ") {
            let codes: Vec<&str> = got.split_whitespace().collect();
            assert!(
                codes.contains(&status.as_str()),
                "{what}: {codes:?}\n{command}"
            );
        } else {
            assert_eq!(&got, status, "{what}\n{command}");
        }
        statuses.insert(status.clone());
    }
    for kind in ["200", "400", "401", "403", "404", "405", "415", "429"] {
        assert!(statuses.contains(kind), "no example of {kind}");
    }
    // The status page the banner points to counted every call above (but the two to the
    // admin listener itself).
    let status_line = banner
        .iter()
        .find(|line| line.contains("/status.json"))
        .unwrap()
        .clone();
    let output = Command::new("sh")
        .arg("-c")
        .arg(&status_line)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let requests = status["totals"]["requests"].as_u64().unwrap();
    assert!(requests >= examples.len() as u64 - 2, "{status}");
    assert!(
        status["totals"]["refused"].as_u64().unwrap() >= 8,
        "{status}"
    );
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "the demo exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}
