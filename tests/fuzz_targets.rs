//! Every fuzz target of `moat::fuzz` on stable, as part of the test command: each file of
//! its checked-in corpus (`fuzz/corpus/TARGET/`, seeds and every crash a campaign found),
//! then random inputs — bytes, and corpus files with bytes flipped, cut or repeated — for a
//! bounded number of cases. A target asserts its parser's invariants; a panic is a finding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::{Path, PathBuf};

use moat::fuzz::TARGETS;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn every_target_has_a_corpus_and_passes_it() {
    for target in TARGETS {
        let files = corpus(target.name);
        assert!(!files.is_empty(), "fuzz/corpus/{} is empty", target.name);
        for (path, bytes) in files {
            let outcome = std::panic::catch_unwind(|| (target.run)(&bytes));
            assert!(
                outcome.is_ok(),
                "{} failed on {}",
                target.name,
                path.display()
            );
        }
    }
}

/// A corpus file changed the way a fuzzer changes it.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, kind) in edits {
                let at = if bytes.is_empty() {
                    0
                } else {
                    at.index(bytes.len())
                };
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    2 => bytes.truncate(at),
                    _ => {
                        let tail = bytes[at..].to_vec();
                        bytes.extend_from_slice(&tail);
                    }
                }
            }
            bytes
        })
}

#[test]
fn every_target_survives_random_and_mutated_inputs() {
    for target in TARGETS {
        let seeds: Vec<Vec<u8>> = corpus(target.name).into_iter().map(|(_, b)| b).collect();
        let inputs = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            "\\PC{0,128}".prop_map(String::into_bytes),
            mutated(seeds),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&inputs, |bytes| {
            (target.run)(&bytes);
            Ok(())
        });
        if let Err(failure) = result {
            panic!("fuzz target {}: {failure}", target.name);
        }
    }
}
