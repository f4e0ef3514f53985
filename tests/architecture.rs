//! The shape of the code, checked as code: the top-level modules of `src/` import one
//! another in one direction only (no `crate::` import closes a circle).
//! `cargo test --test architecture -- --nocapture` prints the layers.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its non-test text (a trailing `#[cfg(test)]` module
/// and `tests.rs` files are test code).
fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = match text.find("#[cfg(test)]\nmod tests") {
                    Some(at) => text[..at].to_owned(),
                    None => text,
                };
                files.push((path.strip_prefix(&root).unwrap().to_owned(), code));
            }
        }
    }
    files.sort();
    files
}

/// The top-level module a file of `src/` belongs to (`auth/jwt/keys.rs` → `auth`).
fn module_of(path: &Path) -> String {
    let first = path
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules `code` names through `crate::` paths, grouped imports included.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// module → the modules it imports (itself and `lib`/`main` left out).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources() {
        let module = module_of(&path);
        if module == "lib" || module == "main" {
            continue;
        }
        let entry = graph.entry(module.clone()).or_default();
        for import in imports(&code) {
            if import != module {
                entry.insert(import);
            }
        }
    }
    graph
}

/// The modules in layers, lowest first, or the modules left in circles.
fn layers(graph: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<Vec<String>>, Vec<String>> {
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut layers = Vec::new();
    while placed.len() < graph.len() {
        let layer: Vec<String> = graph
            .iter()
            .filter(|(module, _)| !placed.contains(*module))
            .filter(|(_, imports)| {
                imports
                    .iter()
                    .all(|i| placed.contains(i) || !graph.contains_key(i))
            })
            .map(|(module, _)| module.clone())
            .collect();
        if layer.is_empty() {
            return Err(graph
                .keys()
                .filter(|m| !placed.contains(*m))
                .cloned()
                .collect());
        }
        placed.extend(layer.iter().cloned());
        layers.push(layer);
    }
    Ok(layers)
}

#[test]
fn the_top_level_modules_import_one_way() {
    let graph = graph();
    match layers(&graph) {
        Ok(layers) => {
            for (floor, layer) in layers.iter().enumerate() {
                eprintln!("layer {floor}: {}", layer.join(", "));
            }
        }
        Err(circled) => {
            let edges: Vec<String> = circled
                .iter()
                .flat_map(|m| {
                    graph[m]
                        .iter()
                        .filter(|i| circled.contains(i))
                        .map(move |i| format!("{m} -> {i}"))
                })
                .collect();
            panic!(
                "these modules import one another in a circle: {}\n{}",
                circled.join(", "),
                edges.join("\n")
            );
        }
    }
}
/// Each function's length in lines (`fn` to its closing brace), over non-test code.
fn function_lengths() -> Vec<(String, usize)> {
    let mut lengths = Vec::new();
    for (path, code) in sources() {
        let lines: Vec<&str> = code.lines().collect();
        let mut index = 0;
        while index < lines.len() {
            let line = lines[index].trim_start();
            let is_fn = (line.starts_with("fn ")
                || line.starts_with("pub fn ")
                || line.starts_with("pub(crate) fn ")
                || line.starts_with("pub(super) fn ")
                || line.starts_with("async fn ")
                || line.starts_with("pub async fn ")
                || line.starts_with("pub(crate) async fn ")
                || line.starts_with("const fn ")
                || line.starts_with("pub const fn "))
                && !line.ends_with(';');
            if !is_fn {
                index += 1;
                continue;
            }
            let mut depth = 0i64;
            let mut opened = false;
            let mut end = index;
            for (offset, body) in lines[index..].iter().enumerate() {
                // A brace in a character literal (`b'{'`) opens nothing.
                let body = body.replace("'{'", "").replace("'}'", "");
                for c in body.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if opened && depth <= 0 {
                    end = index + offset;
                    break;
                }
                if !opened && body.trim_end().ends_with(';') {
                    end = index + offset;
                    break;
                }
            }
            let name = line.split('(').next().unwrap_or(line).to_owned();
            lengths.push((format!("{}: {name}", path.display()), end - index + 1));
            index += 1;
        }
    }
    lengths
}

#[test]
fn files_and_functions_stay_small() {
    let mut long_files = Vec::new();
    for (path, code) in sources() {
        let lines = code.lines().count();
        if lines > 300 {
            long_files.push(format!("{} ({lines})", path.display()));
        }
    }
    let mut lengths = function_lengths();
    lengths.sort_by_key(|(_, length)| *length);
    let count = lengths.len();
    let median = lengths[count / 2].1;
    let p90 = lengths[count * 9 / 10].1;
    let over_50: Vec<String> = lengths
        .iter()
        .filter(|(_, length)| *length > 50)
        .map(|(name, length)| format!("{name} ({length})"))
        .collect();
    eprintln!(
        "{count} functions: median {median} lines, p90 {p90}, {} over 50 ({:.1} %)",
        over_50.len(),
        100.0 * over_50.len() as f64 / count as f64
    );
    eprintln!("files over 300 non-test lines: {}", long_files.len());
    assert!(
        long_files.is_empty(),
        "non-test files over 300 lines: {long_files:?}"
    );
    assert!(median <= 10 && p90 <= 30, "median {median}, p90 {p90}");
    assert!(over_50.is_empty(), "functions over 50 lines: {over_50:?}");
}
