//! The shape of the code, checked as code: the top-level modules of `src/` import one
//! another in one direction only (no `crate::` import closes a circle).
//! `cargo test --test architecture -- --nocapture` prints the layers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
