//! The `env` section's files, read before the config is expanded (its `${VAR}`s may come
//! from them): `env.dotenv` and `env.encrypted_dotenv`, each failure a problem of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
#[derive(Default)]
pub(super) struct EnvFiles {
    pub variables: HashMap<String, String>,
    pub encrypted: Option<EncryptedEnvSummary>,
    pub problems: Vec<String>,
}

/// The variables of `env.dotenv` and `env.encrypted_dotenv`, if the config names them. A
/// variable set by both is an error: which one was meant is not for moat to guess.
pub(super) fn read_env_files(text: &str) -> Result<EnvFiles, String> {
    let prelude: EnvPrelude = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let mut read = EnvFiles::default();
    let Some(env) = prelude.env else {
        return Ok(read);
    };
    if let Some(path) = &env.dotenv {
        match missing(text, "dotenv", path).map_or_else(|| read_dotenv(path), Err) {
            Ok(variables) => read.variables = variables,
            Err(problem) => read.problems.push(problem),
        }
    }
    if let Some(path) = &env.encrypted_dotenv {
        if let Some(problem) = missing(text, "encrypted_dotenv", path) {
            read.problems.push(problem);
            return Ok(read);
        }
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

/// The problem of an env file that does not exist: which file (where a relative path
/// leads), which line of the config names it, and the two ways out. Fail closed: the
/// variables it would set may be secrets (a pepper, a JWT secret) whose absence opens a
/// door, so `serve` does not start without them.
fn missing(text: &str, key: &str, path: &Path) -> Option<String> {
    if path.try_exists().unwrap_or(true) {
        return None;
    }
    let line = key_line(text, key).map_or_else(String::new, |n| format!("line {n}: "));
    let looked_at = std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_owned());
    let make = if key == "dotenv" {
        "create it (`KEY=value` lines, mode 0600: `touch FILE && chmod 600 FILE`)"
    } else {
        "make it with `moat env encrypt -r RECIPIENT PLAIN.env -o FILE`"
    };
    Some(format!(
        "{line}env.{key}: the file {} does not exist (looked for {}); {}, or remove the \
         `{key}:` line. moat does not start without it: the variables it would set may be \
         secrets",
        path.display(),
        looked_at.display(),
        make.replace("FILE", &path.display().to_string()),
    ))
}

/// The line (1-based) of the first `KEY:` in the config text outside comments, `KEY` a
/// whole name (`dotenv:` is not found in `encrypted_dotenv:`).
fn key_line(text: &str, key: &str) -> Option<usize> {
    let needle = format!("{key}:");
    text.lines().enumerate().find_map(|(index, line)| {
        let code = line.split('#').next().unwrap_or("");
        code.match_indices(&needle)
            .any(|(at, _)| {
                !code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
            .then_some(index + 1)
    })
}

fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = crate::input::read(path, crate::input::Kind::EnvFile)
        .map_err(|e| format!("env.dotenv: {e}"))?;
    crate::secrets::parse_dotenv(&text, &format!("env.dotenv ({})", path.display()))
}

/// The variables of the encrypted dotenv file, none of them already set by `plain`.
fn encrypted_variables(
    path: &Path,
    keys: Option<&Path>,
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
