//! Where an OpenAPI document comes from: a file (JSON or YAML, with relative-file `$ref`s
//! loaded alongside) or the model's own URL, fetched at start with backoff. Every document
//! ends up as raw `serde_json::Value` under a URI, so nothing a typed model would drop is
//! lost before the schemas are compiled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The loaded documents: the root and every file it references, by absolute URI.
#[derive(Clone)]
pub struct Documents {
    pub root: String,
    pub docs: BTreeMap<String, Value>,
}

impl Documents {
    pub fn root(&self) -> &Value {
        &self.docs[&self.root]
    }

    /// Looks up a `$ref` made from inside document `base`: returns the target's document URI
    /// and JSON pointer.
    pub fn locate(&self, base: &str, reference: &str) -> Result<(String, String), String> {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let uri = if file.is_empty() {
            base.to_owned()
        } else {
            join_uri(base, file)?
        };
        if !self.docs.contains_key(&uri) {
            return Err(format!(
                "`$ref: {reference}` points to a document that is not loaded"
            ));
        }
        Ok((uri, unescape_fragment(pointer)))
    }

    pub fn get(&self, uri: &str, pointer: &str) -> Option<&Value> {
        self.docs.get(uri)?.pointer(pointer)
    }
}

/// Reads the spec file and every document its `$ref`s name, relative to it.
pub fn from_file(path: &Path) -> Result<Documents, String> {
    let absolute = std::path::absolute(path)
        .map_err(|e| format!("{}: cannot resolve the path: {e}", path.display()))?;
    let root = file_uri(&absolute);
    let mut docs = BTreeMap::new();
    let mut pending = vec![absolute];
    while let Some(file) = pending.pop() {
        let uri = file_uri(&file);
        if docs.contains_key(&uri) {
            continue;
        }
        let bytes = crate::input::read(&file, crate::input::Kind::Spec)?;
        let value = parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        for reference in external_refs(&value) {
            pending.push(referenced_file(&file, &reference));
        }
        docs.insert(uri, value);
    }
    Ok(Documents { root, docs })
}

/// The file a `$ref` made from inside `file` names.
fn referenced_file(file: &Path, reference: &str) -> PathBuf {
    let target = file
        .parent()
        .unwrap_or(Path::new("/"))
        .join(reference.split('#').next().unwrap_or_default());
    normalize_path(&target)
}

/// Parses a document fetched from `url`; a document served by the model cannot name other
/// documents (moat never fetches a remote `$ref`).
pub fn from_bytes(url: &str, bytes: &[u8]) -> Result<Documents, String> {
    let value = parse(bytes).map_err(|e| format!("{url}: {e}"))?;
    if let Some(reference) = external_refs(&value).into_iter().next() {
        return Err(format!(
            "{url}: `$ref: {reference}` names another document; moat does not fetch remote \
             references — save the spec and its files locally and use `openapi.file`"
        ));
    }
    let mut docs = BTreeMap::new();
    docs.insert(url.to_owned(), value);
    Ok(Documents {
        root: url.to_owned(),
        docs,
    })
}

/// JSON when it looks like JSON, else YAML (a superset, but JSON errors read better).
pub(super) fn parse(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the document is not UTF-8".to_owned())?;
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"));
    }
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    // Real specs repeat keys now and then; the YAML rule (and every other tool) is that the
    // document is invalid, and a silent choice could drop a constraint.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| format!("invalid YAML: {e}"))
}

/// Every `$ref` naming another document (anything before its `#`).
fn external_refs(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref")
                    && !reference.starts_with('#')
                {
                    found.push(reference.clone());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn join_uri(base: &str, relative: &str) -> Result<String, String> {
    if relative.contains("://") {
        return Err(format!(
            "`$ref: {relative}` is a remote reference; moat only follows local files"
        ));
    }
    let Some(base_path) = base.strip_prefix("file://") else {
        return Err(format!(
            "`$ref: {relative}` names another document, which a fetched spec cannot do"
        ));
    };
    let dir = Path::new(base_path).parent().unwrap_or(Path::new("/"));
    Ok(file_uri(&normalize_path(&dir.join(relative))))
}

/// Resolves `.` and `..` lexically, so one file has one URI however it is named.
fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// A `$ref` fragment is a URI fragment: percent-decode it into a JSON pointer.
fn unescape_fragment(fragment: &str) -> String {
    if !fragment.contains('%') {
        return fragment.to_owned();
    }
    let bytes: Vec<u8> = form_urlencoded::parse(fragment.replace('+', "%2B").as_bytes())
        .next()
        .map(|(key, _)| key.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_else(|_| fragment.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_refs_are_loaded_and_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        std::fs::write(
            dir.path().join("api.yaml"),
            "openapi: 3.1.0\npaths: {}\ncomponents:\n  schemas:\n    A:\n      $ref: 'schemas/a.yaml#/A'\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("schemas/a.yaml"),
            "A:\n  $ref: '../common.json#/B'\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("common.json"),
            r#"{"B": {"type": "string"}}"#,
        )
        .unwrap();
        let docs = from_file(&dir.path().join("api.yaml")).expect("loads");
        assert_eq!(docs.docs.len(), 3);
        let (uri, pointer) = docs.locate(&docs.root, "schemas/a.yaml#/A").unwrap();
        assert!(uri.ends_with("/schemas/a.yaml"), "{uri}");
        let (uri, pointer) = docs
            .locate(&uri, "../common.json#/B")
            .map(|(u, p)| {
                assert_eq!(pointer, "/A");
                (u, p)
            })
            .unwrap();
        assert_eq!(docs.get(&uri, &pointer).unwrap()["type"], "string");
    }

    #[test]
    fn a_missing_referenced_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("api.yaml"),
            "openapi: 3.1.0\npaths: {}\nx:\n  $ref: 'missing.yaml#/A'\n",
        )
        .unwrap();
        let error = from_file(&dir.path().join("api.yaml")).err().unwrap();
        assert!(error.contains("missing.yaml"), "{error}");
    }

    #[test]
    fn a_fetched_spec_may_not_name_other_documents() {
        let error = from_bytes(
            "http://127.0.0.1:1/openapi.json",
            br#"{"a": {"$ref": "b.json#/x"}}"#,
        )
        .err()
        .unwrap();
        assert!(error.contains("openapi.file"), "{error}");
    }

    #[test]
    fn duplicate_yaml_keys_are_an_error() {
        assert!(parse(b"openapi: 3.1.0\nopenapi: 3.0.0\n").is_err());
    }

    #[test]
    fn fragments_are_percent_decoded() {
        assert_eq!(unescape_fragment("/paths/~1a%7Bb%7D"), "/paths/~1a{b}");
        assert_eq!(
            unescape_fragment("/components/schemas/A"),
            "/components/schemas/A"
        );
    }
}
