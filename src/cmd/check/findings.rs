//! What `moat check` found: each error and warning with a stable code, its file, line and
//! JSON pointer where known, and a one-line message. The loading code reports problems as
//! text; the codes are given here, by what that text says, so the rest of moat keeps one
//! way of reporting and `--format json` still gets a code a CI job can match on.

use serde::Serialize;

use super::locate::{Files, Location};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    #[serde(skip)]
    pub severity: Severity,
    pub code: &'static str,
    pub file: String,
    pub line: Option<usize>,
    pub pointer: Option<String>,
    pub message: String,
    /// The problem as the loading code wrote it, with its source excerpt: the text report.
    #[serde(skip)]
    pub text: String,
}

impl Finding {
    /// A problem of the loading code, located and given its code.
    pub fn problem(severity: Severity, problem: &str, files: &Files) -> Finding {
        let (location, file_code) = files.locate(problem);
        let code = message_code(problem)
            .or(file_code)
            .unwrap_or_else(|| prefix_code(problem));
        Finding::at(severity, code, location, problem)
    }

    /// A finding of `moat check`'s own, about `location`.
    pub fn at(severity: Severity, code: &'static str, at: Location, text: &str) -> Finding {
        Finding {
            severity,
            code,
            file: at.file,
            line: at.line,
            pointer: at.pointer,
            message: one_line(text),
            text: text.to_owned(),
        }
    }
}

/// The first line of a problem, without the location its fields already hold.
fn one_line(problem: &str) -> String {
    let first = problem.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let rest = first.strip_prefix("line ").and_then(|rest| {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let rest = &rest[digits..];
        let rest = match rest.strip_prefix(" column ") {
            Some(column) => column.trim_start_matches(|c: char| c.is_ascii_digit()),
            None => rest,
        };
        rest.strip_prefix(": ")
    });
    rest.unwrap_or(first).to_owned()
}

/// Codes told by what the problem says, whatever file it is in: (words, code), the
/// first whose words all occur wins.
const BY_MESSAGE: &[(&[&str], &str)] = &[
    (&["environment variable `", "is not set"], "unset_variable"),
    (&["is missing its closing `}`"], "unclosed_variable"),
    (&["_FILE`: "], "secret_file_unreadable"),
    (&["world-writable"], "world_writable_file"),
    (&["not a regular file"], "not_a_regular_file"),
    (&["unknown field"], "unknown_field"),
    (&["unknown variant"], "unknown_value"),
    (&["missing field"], "missing_field"),
    (&["duplicate mapping key"], "duplicate_key"),
    (&["is not a duration"], "invalid_duration"),
    (&["invalid type"], "invalid_type"),
    (&["must be greater than 0"], "must_be_positive"),
    (&["must be longer than 0s"], "must_be_positive"),
    (&["must differ from `listen`"], "admin_listen_shared"),
    (&["`openapi` needs"], "openapi_source"),
    (&["`openapi.url`"], "openapi_source"),
    (
        &["policy.operations needs an `openapi`"],
        "policy_needs_spec",
    ),
    (&["no operation has this operationId"], "unknown_operation"),
    (&["security scheme `", "is not bound"], "unbound_scheme"),
    (
        &["is set by both env.dotenv and env.encrypted_dotenv"],
        "env_conflict",
    ),
    (
        &["`secret` must be at least 32 bytes"],
        "jwt_secret_too_short",
    ),
];

/// The code of a problem whose words say what it is.
fn message_code(problem: &str) -> Option<&'static str> {
    BY_MESSAGE
        .iter()
        .find(|(words, _)| words.iter().all(|w| problem.contains(w)))
        .map(|(_, code)| *code)
}

/// Codes of the warnings the loading code logs, by what they say; `warning` for the rest.
const LOGGED: &[(&str, &str)] = &[
    ("inject_max_tokens", "deprecated_setting"),
    (
        "is set, but `env.encrypted_dotenv` names no file",
        "unused_age_identity",
    ),
    ("`jwks_url` is not fetched", "jwks_not_fetched"),
    ("readable by other users", "file_readable_by_others"),
];

/// The code of a warning the loading code logged.
pub fn logged_code(message: &str) -> &'static str {
    LOGGED
        .iter()
        .find(|(words, _)| message.contains(words))
        .map_or("warning", |(_, code)| *code)
}

/// Codes told by the setting a problem starts with.
const BY_PREFIX: &[(&str, &str)] = &[
    ("openapi.overlays", "overlay_invalid"),
    ("openapi", "spec_invalid"),
    ("policy.max_tokens_fields", "invalid_value"),
    ("policy", "policy_invalid"),
    ("auth.schemes", "scheme_invalid"),
    ("tls", "tls_invalid"),
    ("env.dotenv_keys", "encrypted_env_invalid"),
    ("env.encrypted_dotenv", "encrypted_env_invalid"),
    ("env.dotenv", "dotenv_invalid"),
    ("limits.store", "limit_store_invalid"),
    ("limits", "invalid_value"),
    ("upstream", "upstream_invalid"),
    ("error: ", "invalid_yaml"),
];

/// The code of a problem by the setting it starts with; `config_invalid` for the rest.
fn prefix_code(problem: &str) -> &'static str {
    let bare = problem.trim_start_matches('`');
    BY_PREFIX
        .iter()
        .find(|(prefix, _)| bare.starts_with(prefix))
        .map_or("config_invalid", |(_, code)| *code)
}

/// Every code `moat check` gives, for the documentation and its test.
#[cfg(test)]
pub fn error_codes() -> Vec<&'static str> {
    let mut codes: Vec<&str> = BY_MESSAGE.iter().map(|(_, code)| *code).collect();
    codes.extend(BY_PREFIX.iter().map(|(_, code)| *code));
    codes.extend([
        "key_store_invalid",
        "jwt_keys_invalid",
        "dotenv_invalid",
        "config_invalid",
    ]);
    codes.sort_unstable();
    codes.dedup();
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_gets_its_code_and_a_message_without_its_location() {
        assert_eq!(
            message_code("line 27: environment variable `X` is not set (nor `X_FILE`)"),
            Some("unset_variable")
        );
        assert_eq!(
            prefix_code("`limits.max_body_bytes` must be a size"),
            "invalid_value"
        );
        assert_eq!(
            prefix_code("openapi: spec.yaml#/paths: bad"),
            "spec_invalid"
        );
        assert_eq!(prefix_code("something new"), "config_invalid");
        assert_eq!(
            one_line("error: line 3 column 1: duplicate key\n --> x"),
            "duplicate key"
        );
        assert_eq!(
            one_line("line 25: unknown field `a`\n  25 | a: 1"),
            "unknown field `a`"
        );
        assert_eq!(one_line("auth.schemes.x: bad"), "auth.schemes.x: bad");
    }

    #[test]
    fn codes_are_snake_case() {
        for code in error_codes() {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
    }
}
