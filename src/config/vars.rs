//! What the config text names outside itself: `${VAR}` / `${VAR:-default}` references
//! (Docker Compose syntax), resolved from the environment, the dotenv files or `VAR_FILE`
//! (the Docker and Kubernetes secrets convention); the dotenv and encrypted dotenv files
//! themselves; and the line of each `policy.operations` key, for problems that name one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;

/// Just the `env` section, read before variables are expanded (they may come from it).
#[derive(Deserialize)]
struct EnvPrelude {
    #[serde(default)]
    env: Option<EnvPreludeSection>,
}

#[derive(Deserialize)]
struct EnvPreludeSection {
    dotenv: Option<PathBuf>,
    encrypted_dotenv: Option<PathBuf>,
    dotenv_keys: Option<PathBuf>,
}

/// What `env.encrypted_dotenv` held, for `moat check`: its format and variable names.
#[derive(Debug, Clone)]
pub struct EncryptedEnvSummary {
    pub format: crate::secrets::Format,
    pub names: Vec<String>,
}

/// What the env files gave: their variables, the encrypted file's summary, and each file's
/// problem. A file that fails leaves its variables unset — they are reported where the
/// config uses them — and the rest of the config is still read, so its other files are
/// known (and watched: fixing the broken one reloads).
pub(super) struct EnvFiles {
    pub variables: HashMap<String, String>,
    pub encrypted: Option<EncryptedEnvSummary>,
    pub problems: Vec<String>,
}

/// The variables of `env.dotenv` and `env.encrypted_dotenv`, if the config names them. A
/// variable set by both is an error: which one was meant is not for moat to guess.
pub(super) fn read_env_files(text: &str) -> Result<EnvFiles, String> {
    let prelude: EnvPrelude = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut read = EnvFiles {
        variables: HashMap::new(),
        encrypted: None,
        problems: Vec::new(),
    };
    let Some(env) = prelude.env else {
        return Ok(read);
    };
    if let Some(path) = &env.dotenv {
        let parsed = crate::input::read(path, crate::input::Kind::EnvFile)
            .map_err(|e| format!("env.dotenv: {e}"))
            .and_then(|text| {
                crate::secrets::parse_dotenv(&text, &format!("env.dotenv ({})", path.display()))
            });
        match parsed {
            Ok(variables) => read.variables = variables,
            Err(problem) => read.problems.push(problem),
        }
    }
    if let Some(path) = &env.encrypted_dotenv {
        match encrypted_variables(path, env.dotenv_keys.as_deref(), &read.variables) {
            Ok((variables, summary)) => {
                read.variables.extend(variables);
                read.encrypted = Some(summary);
            }
            Err(problem) => read.problems.push(problem),
        }
    }
    Ok(read)
}

/// The variables of the encrypted dotenv file, none of them already set by `plain`.
fn encrypted_variables(
    path: &std::path::Path,
    keys: Option<&std::path::Path>,
    plain: &HashMap<String, String>,
) -> Result<(HashMap<String, String>, EncryptedEnvSummary), String> {
    let mut variables = HashMap::new();
    let file = crate::secrets::read_encrypted_dotenv(path, keys)?;
    let mut names = Vec::with_capacity(file.variables.len());
    for (name, value) in file.variables {
        if plain.contains_key(&name) {
            return Err(format!(
                "`{name}` is set by both env.dotenv and env.encrypted_dotenv ({}); keep it in one",
                path.display()
            ));
        }
        names.push(name.clone());
        variables.insert(name, value.as_str().to_owned());
    }
    let summary = EncryptedEnvSummary {
        format: file.format,
        names,
    };
    Ok((variables, summary))
}

/// Finds every `${NAME…}` and `$NAME` in the text and looks each up: the variable itself,
/// else the file named by `NAME_FILE` (Docker and Kubernetes secrets). A reference without a
/// default to a variable that is unset is an error naming the line, never an empty string.
pub(super) fn resolve_variables(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Variables {
    let mut properties = HashMap::new();
    let mut secret_files = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for reference in variable_references(line) {
            if reference.unclosed {
                problems.push(format!(
                    "line {}: `${{{}` is missing its closing `}}`",
                    index + 1,
                    reference.name
                ));
                continue;
            }
            if properties.contains_key(reference.name) {
                continue;
            }
            match lookup(reference.name, env) {
                Ok(Some(value)) => {
                    properties.insert(reference.name.to_owned(), value);
                    if env(reference.name).is_none() {
                        secret_files
                            .extend(env(&format!("{}_FILE", reference.name)).map(PathBuf::from));
                    }
                }
                Ok(None) if reference.has_default => {}
                Ok(None) => {
                    problems.push(unset_variable(index + 1, reference.name));
                    properties.insert(reference.name.to_owned(), placeholder(reference.name));
                }
                Err(problem) => {
                    problems.push(format!("line {}: {problem}", index + 1));
                    properties.insert(reference.name.to_owned(), placeholder(reference.name));
                }
            }
        }
    }
    Variables {
        properties,
        secret_files,
        problems,
    }
}

/// Marks a value `moat check` made up for an unset variable, so it can go on checking the
/// other files; problems that mention it are about the made-up value and are dropped.
const PLACEHOLDER: &str = "moat-check-unset-";

/// The line of each key under `policy:` → `operations:` (block style; flow style gets none).
pub(super) fn operation_lines(text: &str) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    let mut in_policy = false;
    let mut operations_indent = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            in_policy = trimmed.starts_with("policy:");
            operations_indent = None;
            continue;
        }
        match operations_indent {
            Some(parent) if indent > parent => {
                let key = match trimmed.chars().next() {
                    Some(quote @ ('"' | '\'')) => trimmed[1..].split(quote).next(),
                    _ => trimmed.split(':').next(),
                };
                if let Some(key) = key {
                    lines.entry(key.trim().to_owned()).or_insert(index + 1);
                }
            }
            _ => {
                operations_indent =
                    (in_policy && trimmed.starts_with("operations:")).then_some(indent);
            }
        }
    }
    lines
}

/// True for a problem about a value `moat check` made up.
pub fn mentions_placeholder(problem: &str) -> bool {
    problem.contains(PLACEHOLDER)
}

/// Long enough to pass length rules (a 32-byte `secret`), never a usable value.
fn placeholder(name: &str) -> String {
    format!("{PLACEHOLDER}{name}-{}", "x".repeat(32))
}

/// The problem of an unset `${NAME}`: where values come from, and — only for names that do
/// not look like secrets — the default syntax; a secret must never end up as a literal.
fn unset_variable(line: usize, name: &str) -> String {
    let secret = [
        "SECRET",
        "PASSWORD",
        "TOKEN",
        "KEY",
        "PEPPER",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|word| name.to_ascii_uppercase().contains(word));
    let default = if secret {
        String::new()
    } else {
        format!(", or give a default with `${{{name}:-default}}`")
    };
    format!(
        "line {line}: environment variable `{name}` is not set (nor `{name}_FILE`); set it in \
         the environment or in the file `env.dotenv` / `env.encrypted_dotenv` names, or set \
         `{name}_FILE` to a file holding it (a Docker or Kubernetes secret){default}"
    )
}

/// What `${VAR}` references resolved to (placeholders for the unresolved ones), the
/// `VAR_FILE` files that were read, and every reference that could not be resolved.
pub(super) struct Variables {
    pub properties: HashMap<String, String>,
    pub secret_files: Vec<PathBuf>,
    pub problems: Vec<String>,
}

/// `name` from the process environment, else the file named by `name_FILE` — the rule
/// `${VAR}` expansion follows, for other readers of secrets (`moat keys`' pepper) to share.
pub fn env_or_file(name: &str) -> Result<Option<String>, String> {
    lookup(name, &|name| std::env::var(name).ok())
}

fn lookup(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if let Some(value) = env(name) {
        return Ok(Some(value));
    }
    let file_var = format!("{name}_FILE");
    let Some(file) = env(&file_var) else {
        return Ok(None);
    };
    let mut value = crate::input::read_to_string(file.as_ref(), crate::input::Kind::Secret)
        .map_err(|e| format!("`{file_var}`: {e}"))?;
    // Secret files are usually written with a trailing newline that is not part of the value.
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(Some(value))
}

pub(super) struct Reference<'a> {
    pub name: &'a str,
    pub has_default: bool,
    /// `${NAME` with no `}` after it on the line.
    unclosed: bool,
}

/// The variable references in one line, in Compose syntax (`$$` is a literal `$`).
pub(super) fn variable_references(line: &str) -> Vec<Reference<'_>> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let start = i + 2;
                let end = name_end(bytes, start);
                if end > start {
                    found.push(Reference {
                        name: &line[start..end],
                        has_default: bytes.get(end) != Some(&b'}'),
                        unclosed: !line[end..].contains('}'),
                    });
                }
                i = end.max(start);
            }
            Some(_) => {
                let start = i + 1;
                let end = name_end(bytes, start);
                if end > start {
                    found.push(Reference {
                        name: &line[start..end],
                        has_default: false,
                        unclosed: false,
                    });
                }
                i = end.max(start);
            }
            None => i += 1,
        }
    }
    found
}

fn name_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len()
        && (bytes[end] == b'_'
            || bytes[end].is_ascii_alphabetic()
            || (end > start && bytes[end].is_ascii_digit()))
    {
        end += 1;
    }
    end
}
