//! The JSON-Schema-Test-Suite run through moat's own schema path: each schema is loaded as
//! a document, normalised and compiled exactly as a request schema from a spec would be,
//! and every test instance is checked. Reports pass counts; every test of a keyword moat
//! supports must pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

use std::collections::BTreeMap;
use std::path::Path;

use moat::spec::compile::Compiler;
use moat::spec::normalize::Normalizer;
use moat::spec::source::Documents;
use serde_json::Value;

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jsts");

/// Files whose subject moat deliberately does differently, with the reason.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    ("refRemote.json", "moat never fetches a remote $ref"),
    (
        "vocabulary.json",
        "custom meta-schemas and vocabularies are not part of OpenAPI",
    ),
    (
        "dynamicRef.json",
        "$dynamicRef is resolved statically (to the one matching $dynamicAnchor)",
    ),
    (
        "format.json",
        "moat asserts formats (2020-12 makes them annotations): a format check is a check",
    ),
];

#[derive(Default, Debug)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    /// Groups whose schema moat refuses to load (an unknown keyword, say): fail closed.
    refused: Vec<String>,
}

fn run_group(group: &Value, name: &str, tally: &mut Tally) {
    let mut docs = Documents {
        root: "urn:jsts".into(),
        docs: BTreeMap::from([("urn:jsts".to_owned(), group["schema"].clone())]),
    };
    let mut normalizer = Normalizer::new(&mut docs);
    normalizer.schema_at("urn:jsts", "");
    if !normalizer.problems.is_empty() {
        tally
            .refused
            .push(format!("{name}: {}", normalizer.problems.join("; ")));
        return;
    }
    let compiled = Compiler::new(&docs).and_then(|c| c.compile("urn:jsts", ""));
    let schema = match compiled {
        Ok(schema) => schema,
        Err(error) => {
            tally.refused.push(format!("{name}: {error}"));
            return;
        }
    };
    for test in group["tests"].as_array().into_iter().flatten() {
        let expected = test["valid"].as_bool().unwrap_or(false);
        if schema.is_valid(&test["data"]) == expected {
            tally.passed += 1;
        } else {
            tally
                .failed
                .push(format!("{name} / {}", test["description"]));
        }
    }
}

fn load(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn draft2020_12_required_tests_pass_for_every_supported_keyword() {
    let dir = Path::new(SUITE).join("tests/draft2020-12");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut tally = Tally::default();
    let mut skipped = 0;
    for file in files {
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        if NOT_SUPPORTED.iter().any(|(name, _)| *name == file_name) {
            skipped += 1;
            continue;
        }
        for (i, group) in load(&file).iter().enumerate() {
            run_group(
                group,
                &format!("{file_name}#{i} {}", group["description"]),
                &mut tally,
            );
        }
    }
    println!(
        "draft2020-12: {} passed, {} failed, {} groups refused at load, {skipped} files not supported",
        tally.passed,
        tally.failed.len(),
        tally.refused.len()
    );
    for refused in &tally.refused {
        println!("  refused: {refused}");
    }
    assert!(
        tally.failed.is_empty(),
        "failures:\n{}",
        tally.failed.join("\n")
    );
    assert!(
        tally.passed > 1000,
        "suspiciously few tests ran: {}",
        tally.passed
    );
}

#[test]
fn draft4_groups_written_in_openapi_30_keywords_pass() {
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(SUITE).join("oas30-compatible-draft4-index.json"))
            .unwrap(),
    )
    .unwrap();
    let mut tally = Tally::default();
    for entry in index["groups"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let index = entry["group_index"].as_u64().unwrap() as usize;
        let groups = load(&Path::new(SUITE).join(file));
        let mut group = groups[index].clone();
        // The draft-04 meta-schema URI means nothing to an OpenAPI document.
        if let Some(schema) = group["schema"].as_object_mut() {
            schema.remove("$schema");
        }
        run_group(
            &group,
            &format!("{file}#{index} {}", entry["description"]),
            &mut tally,
        );
    }
    println!(
        "draft4 (OAS 3.0 keywords): {} passed, {} failed, {} groups refused",
        tally.passed,
        tally.failed.len(),
        tally.refused.len()
    );
    assert!(
        tally.refused.is_empty(),
        "refused:\n{}",
        tally.refused.join("\n")
    );
    assert!(
        tally.failed.is_empty(),
        "failures:\n{}",
        tally.failed.join("\n")
    );
    assert!(
        tally.passed > 200,
        "suspiciously few tests ran: {}",
        tally.passed
    );
}
