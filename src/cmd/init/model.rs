//! What `moat init` learns of the model from its OpenAPI document: the operations, each
//! with the scope it will need and how the policy names it, whether it speaks the OpenAI
//! protocol, and the scheme names the document already uses. The document is compiled as
//! `serve` compiles it, so a spec `serve` would refuse is refused here, before any file is
//! written.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy::LlmProfile;
use crate::policy::classify::{Access, access, administrative};
use crate::spec::{self, Operation, Spec, source};

/// How long `moat init` waits for a model that is still starting to serve its document.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the document comes from.
pub(super) enum Source {
    /// Fetched from the model: the URL, and the model's origin (`http://host:port`).
    Url {
        url: String,
        origin: String,
    },
    File(PathBuf),
}

impl Source {
    /// An `http://` URL, or else a file; `https://` is refused as `openapi.url` refuses it.
    pub(super) fn parse(from: &str) -> Result<Source, String> {
        let lower = from.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(format!(
                "{from}: moat fetches the spec from the model next to it over plain http://; \
                 save the document and pass the file instead"
            ));
        }
        if !lower.starts_with("http://") {
            return Ok(Source::File(PathBuf::from(from)));
        }
        let uri: http::Uri = from
            .parse()
            .map_err(|e| format!("`{from}` is not a URL: {e}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{from}` names no host"))?;
        Ok(Source::Url {
            url: from.to_owned(),
            origin: format!("http://{authority}"),
        })
    }
}

/// One operation as the generated policy lists it.
pub(super) struct Entry {
    /// The operationId, or `METHOD /template` where that is missing or shared.
    pub key: String,
    pub method: String,
    pub template: String,
    pub access: Access,
    /// Why it looks administrative, when it does.
    pub why: Option<String>,
}

/// The model as its document describes it.
pub(super) struct Model {
    pub title: Option<String>,
    pub entries: Vec<Entry>,
    /// Some operation is an OpenAI-protocol call (its clients send keys as bearers).
    pub llm: bool,
    /// The scheme names of `components.securitySchemes`.
    pub declared: BTreeSet<String>,
    /// The document to copy into the config directory; `None` when fetched, or when its
    /// `$ref`s name other files (then the config names it where it is).
    pub copy: Option<SpecCopy>,
}

/// A spec file's own bytes, and whether they are JSON (`openapi.json`) or YAML.
pub(super) struct SpecCopy {
    pub bytes: Vec<u8>,
    pub json: bool,
}

/// Reads (or fetches) and compiles the document.
pub(super) fn load(source: &Source) -> Result<Model, String> {
    let (docs, copy) = match source {
        Source::Url { url, .. } => {
            eprintln!("moat init: fetching {url} (waiting up to {FETCH_TIMEOUT:?} for the model)");
            let bytes = crate::fetch::fetch(url, FETCH_TIMEOUT, crate::input::Kind::Spec)
                .map_err(|e| format!("{e}; is the model running?"))?;
            (source::from_bytes(url, &bytes)?, None)
        }
        Source::File(path) => read_file(path)?,
    };
    let spec = spec::load(docs).map_err(|problems| {
        format!(
            "the spec cannot be enforced as it is:\n  {}",
            problems.join("\n  ")
        )
    })?;
    Ok(describe(&spec, copy))
}

/// A spec file's documents, and its bytes to copy when it is the only one.
fn read_file(path: &Path) -> Result<(source::Documents, Option<SpecCopy>), String> {
    let docs = source::from_file(path)?;
    if docs.docs.len() > 1 {
        return Ok((docs, None));
    }
    let bytes = crate::input::read(path, crate::input::Kind::Spec)?;
    let json = bytes.trim_ascii_start().starts_with(b"{");
    Ok((docs, Some(SpecCopy { bytes, json })))
}

fn describe(spec: &Spec, copy: Option<SpecCopy>) -> Model {
    let keys = policy_keys(&spec.operations);
    let entries = spec
        .operations
        .iter()
        .zip(keys)
        .map(|(operation, key)| Entry {
            key,
            method: operation.method.to_string(),
            template: operation.template.clone(),
            access: access(operation),
            why: administrative(operation),
        })
        .collect();
    Model {
        title: spec.title.clone(),
        entries,
        llm: spec
            .operations
            .iter()
            .any(|o| LlmProfile::resolve(None, o).is_some()),
        declared: spec.security_schemes.keys().cloned().collect(),
        copy,
    }
}

/// How `policy.operations` names each operation: its operationId when that is its own,
/// else `METHOD /template` (an id shared by two operations would set both).
fn policy_keys(operations: &[Operation]) -> Vec<String> {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for operation in operations {
        *uses.entry(&operation.id).or_default() += 1;
    }
    operations
        .iter()
        .map(|operation| match uses.get(&*operation.id) {
            Some(1) => operation.id.to_string(),
            _ => operation.long_name(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_the_model_origin_and_anything_else_is_a_file() {
        match Source::parse("http://127.0.0.1:8000/api/openapi.json").unwrap() {
            Source::Url { origin, .. } => assert_eq!(origin, "http://127.0.0.1:8000"),
            Source::File(_) => panic!("a URL"),
        }
        assert!(matches!(
            Source::parse("specs/openapi.yaml"),
            Ok(Source::File(_))
        ));
        assert!(Source::parse("https://model.example/openapi.json").is_err());
    }

    #[test]
    fn a_shared_or_missing_operation_id_is_named_by_method_and_template() {
        let operations = [
            Operation::for_tests("predict", "POST", "/a"),
            Operation::for_tests("predict", "POST", "/b"),
            Operation::for_tests("GET /c", "GET", "/c"),
            Operation::for_tests("health", "GET", "/health"),
        ];
        assert_eq!(
            policy_keys(&operations),
            ["POST /a", "POST /b", "GET /c", "health"]
        );
    }
}
