//! What the config text names outside itself: `${VAR}` / `${VAR:-default}` references
//! (Docker Compose syntax), resolved from the environment, the dotenv files (`env_files`)
//! or `VAR_FILE` (the Docker and Kubernetes secrets convention); and the line of each
//! `policy.operations` key, for problems that name one.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Finds every `${NAME…}` and `$NAME` in the text and looks each up: the variable itself,
/// else the file named by `NAME_FILE` (Docker and Kubernetes secrets). A reference without a
/// default to a variable that is unset is an error naming the line, never an empty string.
pub(super) fn resolve_variables(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Variables {
    let mut variables = Variables {
        properties: HashMap::new(),
        secret_files: Vec::new(),
        problems: Vec::new(),
    };
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for reference in variable_references(line) {
            variables.resolve(&reference, index + 1, env);
        }
    }
    variables
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
                if let Some(key) = mapping_key(trimmed) {
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

/// The key of a block mapping line, quoted or not.
fn mapping_key(line: &str) -> Option<&str> {
    match line.chars().next() {
        Some(quote @ ('"' | '\'')) => line[1..].split(quote).next(),
        _ => line.split(':').next(),
    }
}

/// True for a problem about a value `moat check` made up.
pub fn mentions_placeholder(problem: &str) -> bool {
    problem.contains(PLACEHOLDER)
}

/// `problem` with each placeholder written as the `${NAME}` it stands in for: what
/// `moat check --offline` says of a check a placeholder kept from running.
pub fn without_placeholders(problem: &str) -> String {
    let mut out = String::with_capacity(problem.len());
    let mut rest = problem;
    while let Some(at) = rest.find(PLACEHOLDER) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PLACEHOLDER.len()..];
        let name_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_end];
        let padding = format!("-{}", "x".repeat(32));
        out.push_str(&format!("${{{name}}}"));
        rest = after[name_end..]
            .strip_prefix(padding.as_str())
            .unwrap_or(&after[name_end..]);
    }
    out.push_str(rest);
    out
}

/// Long enough to pass length rules (a 32-byte `secret`), never a usable value.
fn placeholder(name: &str) -> String {
    format!("{PLACEHOLDER}{name}-{}", "x".repeat(32))
}

/// The problem of an unset `${NAME}`: where values come from, and — only for names that do
/// not look like secrets — the default syntax; a secret must never end up as a literal.
fn unset_variable(line: usize, name: &str) -> String {
    let default = if looks_secret(name) {
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

/// Words in a variable's name that say it holds a secret.
const SECRET_WORDS: [&str; 7] = [
    "SECRET",
    "PASSWORD",
    "TOKEN",
    "KEY",
    "PEPPER",
    "CREDENTIAL",
    "PRIVATE",
];

fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| name.contains(word))
}

/// What `${VAR}` references resolved to (placeholders for the unresolved ones), the
/// `VAR_FILE` files that were read, and every reference that could not be resolved.
pub(super) struct Variables {
    pub properties: HashMap<String, String>,
    pub secret_files: Vec<PathBuf>,
    pub problems: Vec<String>,
}

impl Variables {
    /// One reference, on line `line`: its value; else, unless it has a default, a problem
    /// and a placeholder that lets the rest of the config be checked.
    fn resolve(
        &mut self,
        reference: &Reference<'_>,
        line: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) {
        let name = reference.name;
        if reference.unclosed {
            self.problems.push(format!(
                "line {line}: `${{{name}` is missing its closing `}}`"
            ));
            return;
        }
        if self.properties.contains_key(name) {
            return;
        }
        let problem = match lookup(name, env) {
            Ok(Some(value)) => {
                self.found(name, value, env);
                return;
            }
            Ok(None) if reference.has_default => return,
            Ok(None) => unset_variable(line, name),
            Err(problem) => format!("line {line}: {problem}"),
        };
        self.problems.push(problem);
        self.properties.insert(name.to_owned(), placeholder(name));
    }

    /// `name`'s value, and the `name_FILE` file it came from if not from the variable.
    fn found(&mut self, name: &str, value: String, env: &dyn Fn(&str) -> Option<String>) {
        self.properties.insert(name.to_owned(), value);
        if env(name).is_none() {
            self.secret_files
                .extend(env(&format!("{name}_FILE")).map(PathBuf::from));
        }
    }
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
    trim_line_end(&mut value);
    Ok(Some(value))
}

/// Secret files are usually written with a trailing newline that is not part of the value.
fn trim_line_end(value: &mut String) {
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
}

pub(super) struct Reference<'a> {
    pub name: &'a str,
    pub has_default: bool,
    /// `${NAME` with no `}` after it on the line.
    unclosed: bool,
}

impl<'a> Reference<'a> {
    /// The name at `line[start..end]`: braced (`${NAME}`, `${NAME:-default}`, perhaps
    /// unclosed) or bare (`$NAME`).
    fn at(line: &'a str, start: usize, end: usize, braced: bool) -> Reference<'a> {
        Reference {
            name: &line[start..end],
            has_default: braced && line.as_bytes().get(end) != Some(&b'}'),
            unclosed: braced && !line[end..].contains('}'),
        }
    }
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
        let braced = match bytes.get(i + 1) {
            Some(b'$') => {
                i += 2;
                continue;
            }
            None => break,
            Some(next) => *next == b'{',
        };
        let start = i + 1 + usize::from(braced);
        let end = name_end(bytes, start);
        if end > start {
            found.push(Reference::at(line, start, end, braced));
        }
        i = end.max(start);
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
