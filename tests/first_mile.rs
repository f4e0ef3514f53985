//! The first mile of the command line: what a new user meets before moat serves anything —
//! `--version`, completions and man pages, `moat env keygen` into a fresh directory, a
//! missing dotenv file, the key listing, and `moat demo` failing cleanly on a busy port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report

mod support;

use support::{run_moat, text};

#[test]
fn version_names_the_commit_the_build_date_and_the_features() {
    let long = run_moat(&["--version"], &[]);
    assert!(long.status.success(), "{}", text(&long));
    let report = String::from_utf8(long.stdout).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], format!("moat {}", env!("CARGO_PKG_VERSION")));
    let commit = lines[1].strip_prefix("commit:").unwrap().trim();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{report}"
    );
    let date = lines[2].strip_prefix("built:").unwrap().trim();
    assert!(
        date.ends_with(" (UTC)") && date.len() == "2026-12-07 (UTC)".len(),
        "{report}"
    );
    let features = lines[3].strip_prefix("features:").unwrap().trim();
    assert_eq!(
        features == "age" || features.contains("age,"),
        cfg!(feature = "age")
    );
    // `moat version` says the same; `-V` says it on one line.
    let subcommand = run_moat(&["version"], &[]);
    assert_eq!(String::from_utf8(subcommand.stdout).unwrap(), report);
    let short = String::from_utf8(run_moat(&["-V"], &[]).stdout).unwrap();
    assert_eq!(short.lines().count(), 1, "{short}");
    assert!(short.contains(commit), "{short}");
}

#[test]
fn completions_list_the_subcommands_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = run_moat(&["completions", shell], &[]);
        assert!(output.status.success(), "{shell}: {}", text(&output));
        let script = String::from_utf8(output.stdout).unwrap();
        for subcommand in ["serve", "check", "keys", "demo", "completions"] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
    let refused = run_moat(&["completions", "tcsh"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
}

#[test]
fn man_prints_a_roff_page_and_writes_one_per_subcommand() {
    let output = run_moat(&["man"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.starts_with(".TH moat 1 "), "{page}");
    assert!(
        page.contains(".SH NAME") && page.contains("serve"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let written = run_moat(&["man", "--out-dir", dir.path().to_str().unwrap()], &[]);
    assert!(written.status.success(), "{}", text(&written));
    for name in ["moat.1", "moat-serve.1", "moat-keys-new.1"] {
        let page = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(page.starts_with(".TH "), "{name}: {page}");
    }
}
