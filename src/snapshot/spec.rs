//! The spec as a snapshot holds it: read from its file or fetched from the model, the
//! overlays applied, then compiled on a thread of its own.

use crate::config::OpenApiConfig;
use crate::spec::{self, Spec, source};

pub(super) fn load_spec(openapi: &OpenApiConfig) -> Result<Spec, Vec<String>> {
    compile_apart(read_spec(openapi)?).map_err(|problems| {
        problems
            .into_iter()
            .map(|problem| format!("openapi: {problem}"))
            .collect()
    })
}

/// The spec's documents as read (or fetched), before any overlay.
pub fn read_spec_documents(openapi: &OpenApiConfig) -> Result<source::Documents, Vec<String>> {
    let docs = match (&openapi.file, &openapi.url) {
        (Some(file), _) => source::from_file(file),
        (None, Some(url)) => match &openapi.prefetched {
            Some(prefetched) => source::from_bytes(url, &prefetched.0),
            None => crate::fetch::fetch(url, openapi.fetch_timeout, crate::input::Kind::Spec)
                .and_then(|bytes| source::from_bytes(url, &bytes)),
        },
        (None, None) => Err("`openapi` needs `file` or `url`".to_owned()),
    };
    docs.map_err(|e| vec![format!("openapi: {e}")])
}

/// The spec's documents as configured: read (or fetched) and with the overlays applied.
pub fn read_spec(openapi: &OpenApiConfig) -> Result<source::Documents, Vec<String>> {
    let mut docs = read_spec_documents(openapi)?;
    // Overlays address the spec's own document; files its `$ref`s name are not targets.
    let root = docs
        .docs
        .get_mut(&docs.root)
        .ok_or_else(|| vec!["openapi: the spec document is missing".to_owned()])?;
    spec::overlay::apply_files(root, &openapi.overlays)
        .map_err(|e| vec![format!("openapi.overlays: {e}")])?;
    Ok(docs)
}

/// Compiles on a thread of its own, so the compiled schemas land in another glibc arena
/// than the parsed documents they were compiled from. Interleaved in one heap, the freed
/// documents left holes smaller than a page among the schemas that no trim can return
/// (openai.yaml: 11 MB resident but free); apart, the documents' arena empties whole.
fn compile_apart(docs: source::Documents) -> Result<Spec, Vec<String>> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("moat-compile".into())
            // As deep as the main thread's: compiling follows nested schemas recursively.
            .stack_size(8 << 20)
            .spawn_scoped(scope, || spec::load(docs))
            .map_err(|e| vec![format!("cannot start the compiling thread: {e}")])?
            .join()
            .unwrap_or_else(|_| Err(vec!["compiling the spec panicked".to_owned()]))
    })
}
