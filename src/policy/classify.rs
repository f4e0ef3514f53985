//! Telling, from an operation's method, path template and operationId alone, whether it
//! administers the model server (loads, unloads, reloads, reconfigures, shuts down) or only
//! reads and runs the model. `moat init` gives the first an `admin` scope and the second a
//! `read` one; `moat check` warns when the first is open to every credential. Guesses from
//! names can be wrong both ways, so the rule leans to "administrative": a false alarm costs
//! a policy line, a miss leaves a model server's management API open to every client.

use http::Method;

use crate::spec::Operation;

/// Words that name the management side of model servers: Triton's and MLServer's model
/// repository API (`/v2/repository/models/{m}/load`, `.../unload`), vLLM's
/// `/v1/load_lora_adapter`, Triton's shared-memory registration, config and shutdown
/// endpoints, and `admin` paths.
const ADMIN_WORDS: [&str; 12] = [
    "admin",
    "administration",
    "reload",
    "load",
    "unload",
    "repository",
    "repositories",
    "config",
    "configs",
    "configuration",
    "shutdown",
    "sharedmemory",
];

/// Words of calls that run the model without changing the server: KServe, Triton, TGI,
/// TorchServe, SageMaker, Ollama and the OpenAI protocol (`responses` included: vLLM serves
/// `/v1/responses`).
const INFERENCE_WORDS: [&str; 25] = [
    "predict",
    "predictions",
    "infer",
    "inference",
    "invocations",
    "explain",
    "explanations",
    "generate",
    "generation",
    "generations",
    "completion",
    "completions",
    "chat",
    "embed",
    "embedding",
    "embeddings",
    "classify",
    "score",
    "rerank",
    "tokenize",
    "detokenize",
    "transcriptions",
    "translations",
    "moderations",
    "responses",
];

/// What `moat init` makes an operation require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads or runs the model: `GET`/`HEAD`, and `POST`s named like inference.
    Read,
    /// Looks administrative, or changes something in a way no name explains.
    Admin,
}

/// Why `operation` looks administrative (for the operator to judge), or `None`: a method
/// that replaces or deletes (`PUT`, `PATCH`, `DELETE`), or an administrative word in its
/// path or operationId.
pub fn administrative(operation: &Operation) -> Option<String> {
    let method = &operation.method;
    if [Method::PUT, Method::PATCH, Method::DELETE].contains(method) {
        return Some(format!("{method} changes the server"));
    }
    let found = |words: &[String]| admin_word(words).map(str::to_owned);
    if let Some(word) = found(&template_words(&operation.template)) {
        return Some(format!("`{word}` in its path"));
    }
    found(&words(&operation.id)).map(|word| format!("`{word}` in its operationId"))
}

/// The scope family `moat init` gives `operation`: administrative ones and writes no name
/// explains need `admin`; reads and inference calls need `read`.
pub fn access(operation: &Operation) -> Access {
    if administrative(operation).is_some() {
        return Access::Admin;
    }
    let inference = || {
        template_words(&operation.template)
            .into_iter()
            .chain(words(&operation.id))
            .any(|word| INFERENCE_WORDS.contains(&word.as_str()))
    };
    match operation.method {
        Method::GET | Method::HEAD => Access::Read,
        Method::POST if inference() => Access::Read,
        _ => Access::Admin,
    }
}

/// The first administrative word among `words`; `shared` then `memory` counts as
/// `sharedmemory`, and so does a word containing it (Triton's `cudasharedmemory`).
fn admin_word(words: &[String]) -> Option<&'static str> {
    for (index, word) in words.iter().enumerate() {
        if let Some(found) = ADMIN_WORDS.iter().find(|admin| *admin == word) {
            return Some(found);
        }
        let split = word == "shared" && words.get(index + 1).is_some_and(|w| w == "memory");
        if split || word.contains("sharedmemory") {
            return Some("shared memory");
        }
    }
    None
}

/// The words of a path template, its parameter names left out (`{config_id}` names a
/// value, not what the operation does).
fn template_words(template: &str) -> Vec<String> {
    let mut literal = String::with_capacity(template.len());
    let mut depth = 0usize;
    for c in template.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => literal.push(c),
            _ => literal.push(' '),
        }
    }
    words(&literal)
}

/// Lower-cased words, split at anything not a letter or digit and where camelCase turns
/// upper (`getModelConfig` → get, model, config).
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    words.extend((!current.is_empty()).then_some(current));
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, template: &str, id: &str) -> Operation {
        Operation::for_tests(id, method, template)
    }

    #[test]
    fn management_paths_methods_and_ids_look_administrative() {
        let cases = [
            (
                "POST",
                "/v1/admin/reload",
                "reload_v1_admin_reload_post",
                "`admin` in its path",
            ),
            (
                "POST",
                "/v2/repository/models/{model_name}/load",
                "x",
                "`repository` in its path",
            ),
            ("POST", "/v2/models/{m}/unload", "x", "`unload` in its path"),
            ("POST", "/v1/load_lora_adapter", "x", "`load` in its path"),
            (
                "POST",
                "/v2/systemsharedmemory/region/{r}/register",
                "x",
                "`shared memory` in its path",
            ),
            (
                "POST",
                "/v2/shared_memory/register",
                "x",
                "`shared memory` in its path",
            ),
            ("GET", "/v2/models/{m}/config", "x", "`config` in its path"),
            ("POST", "/shutdown", "x", "`shutdown` in its path"),
            (
                "POST",
                "/v1/x",
                "reloadModel",
                "`reload` in its operationId",
            ),
            (
                "GET",
                "/v1/x",
                "getServerConfig",
                "`config` in its operationId",
            ),
            ("DELETE", "/v1/models/{m}", "x", "DELETE changes the server"),
            ("PUT", "/models/{m}", "x", "PUT changes the server"),
            ("PATCH", "/v1/models/{m}", "x", "PATCH changes the server"),
        ];
        for (method, template, id, why) in cases {
            let found = administrative(&op(method, template, id));
            assert_eq!(found.as_deref(), Some(why), "{method} {template} {id}");
            assert_eq!(access(&op(method, template, id)), Access::Admin);
        }
    }

    #[test]
    fn reads_and_inference_calls_do_not_and_need_read() {
        let cases = [
            ("GET", "/health", "health_health_get"),
            ("GET", "/v1/models/{config}", "get_model"),
            ("GET", "/downloads/{id}", "download"),
            ("HEAD", "/v1/models", "x"),
            (
                "POST",
                "/v1/models/{model_name}:predict",
                "predict_v1_models__model_name__predict_post",
            ),
            ("POST", "/v2/models/{m}/infer", "x"),
            ("POST", "/v1/chat/completions", "create_chat_completion"),
            ("POST", "/v1/embeddings", "x"),
            ("POST", "/invocations", "x"),
            ("POST", "/api/generate", "x"),
            ("POST", "/v1/responses", "create_response"),
            ("POST", "/v1/x", "uploadPayload"),
        ];
        for (method, template, id) in cases {
            let operation = op(method, template, id);
            assert_eq!(administrative(&operation), None, "{method} {template} {id}");
            let want = if id == "uploadPayload" {
                Access::Admin
            } else {
                Access::Read
            };
            assert_eq!(access(&operation), want, "{method} {template} {id}");
        }
    }

    #[test]
    fn words_split_at_separators_and_camel_case() {
        assert_eq!(words("getModelConfig"), ["get", "model", "config"]);
        assert_eq!(words("load_model-v2.x"), ["load", "model", "v2", "x"]);
        assert_eq!(template_words("/a/{reload}/b:c"), ["a", "b", "c"]);
        assert_eq!(words("v2Repository"), ["v2", "repository"]);
    }
}
