//! Where a problem is: its file, line and JSON pointer, read off the problem's text (which
//! names them in a few fixed ways: `line N`, `FILE#/pointer`, the path of a file the config
//! names), and else the line of the setting it names by its dotted key in the config.

use std::path::{Path, PathBuf};

use crate::config::{Config, SchemeConfig};

/// The file, line and JSON pointer a finding is about, as far as known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
    pub pointer: Option<String>,
}

/// The config file, its text, and every file it names with the code of a problem in it.
pub struct Files {
    config: String,
    text: Option<String>,
    named: Vec<(String, &'static str)>,
}

impl Files {
    pub fn new(config_path: &Path, config: Option<&Config>) -> Files {
        let text = crate::input::read_to_string(config_path, crate::input::Kind::Config).ok();
        Files {
            config: config_path.display().to_string(),
            text,
            named: config.map(named_files).unwrap_or_default(),
        }
    }

    /// The dotted key path of the setting on `line` of the config (`auth.schemes.x.secret`).
    pub fn key_path_at(&self, line: usize) -> Option<String> {
        key_path_at(self.text.as_deref()?, line)
    }

    /// The config file, at the line of the setting with dotted key `key` if it has one.
    pub fn setting(&self, key: &str) -> Location {
        Location {
            file: self.config.clone(),
            line: self.text.as_deref().and_then(|text| key_line(text, key)),
            pointer: None,
        }
    }

    /// The first line of the config, comments aside, that holds `text` (a URL).
    pub fn line_of(&self, text: &str) -> Option<usize> {
        let config = self.text.as_deref()?;
        let mut lines = (1..).zip(config.lines());
        lines
            .find(|(_, line)| !line.trim_start().starts_with('#') && line.contains(text))
            .map(|(number, _)| number)
    }

    /// Where `problem` is, and the code of problems in the named file it is about (`None`
    /// when it is about the config itself).
    pub fn locate(&self, problem: &str) -> (Location, Option<&'static str>) {
        let named = self
            .named
            .iter()
            .filter_map(|(file, code)| problem.find(file.as_str()).map(|at| (at, file, *code)))
            .min_by_key(|(at, file, _)| (*at, usize::MAX - file.len()));
        let (file, code, rest) = match named {
            Some((at, file, code)) => (file.clone(), Some(code), &problem[at..]),
            None => (self.config.clone(), None, problem),
        };
        let mut location = Location {
            line: line_number(rest),
            pointer: pointer(rest),
            file,
        };
        if code.is_none() && location.line.is_none() {
            location.line = self.setting_line(problem);
        }
        (location, code)
    }

    /// The line of the setting a config problem names: its leading dotted key (with the
    /// first backquoted name after it), or a backquoted dotted key.
    fn setting_line(&self, problem: &str) -> Option<usize> {
        let text = self.text.as_deref()?;
        let lead: String = problem
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
            .collect();
        let quoted = problem.split('`').nth(1).unwrap_or_default();
        [format!("{lead}.{quoted}"), lead, quoted.to_owned()]
            .iter()
            .filter(|key| !key.is_empty() && !key.ends_with('.'))
            .find_map(|key| key_line(text, key))
    }
}

/// Every file the config names, with the code of a problem found in it.
fn named_files(config: &Config) -> Vec<(String, &'static str)> {
    let mut named = Vec::new();
    let mut add = |code: &'static str, paths: &[Option<&PathBuf>]| {
        named.extend(
            paths
                .iter()
                .flatten()
                .map(|p| (p.display().to_string(), code)),
        );
    };
    if let Some(openapi) = &config.openapi {
        add("spec_invalid", &[openapi.file.as_ref()]);
        let overlays: Vec<_> = openapi.overlays.iter().map(Some).collect();
        add("overlay_invalid", &overlays);
    }
    for scheme in config.auth.schemes.values() {
        match scheme {
            SchemeConfig::ApiKey(key) => add("key_store_invalid", &[key.store.file()]),
            SchemeConfig::Jwt(jwt) => add(
                "jwt_keys_invalid",
                &[jwt.public_key_file.as_ref(), jwt.jwks_file.as_ref()],
            ),
        }
    }
    if let Some(tls) = &config.tls {
        let files = [Some(&tls.cert_file), Some(&tls.key_file)];
        add("tls_invalid", &files);
        add("tls_invalid", &[tls.client_ca_file.as_ref()]);
    }
    let env = &config.env;
    add("dotenv_invalid", &[env.dotenv.as_ref()]);
    let encrypted = [env.encrypted_dotenv.as_ref(), env.dotenv_keys.as_ref()];
    add("encrypted_env_invalid", &encrypted);
    named.extend(named_urls(config));
    // An empty path would be found in every problem.
    named.retain(|(file, _)| !file.is_empty());
    named
}

/// The URLs the config names: a problem naming one is about what it serves.
fn named_urls(config: &Config) -> Vec<(String, &'static str)> {
    let spec = config.openapi.as_ref().and_then(|o| o.url.clone());
    let mut urls: Vec<_> = spec.map(|url| (url, "spec_invalid")).into_iter().collect();
    for scheme in config.auth.schemes.values() {
        if let SchemeConfig::Jwt(jwt) = scheme {
            urls.extend(jwt.jwks_url.clone().map(|url| (url, "jwt_keys_invalid")));
        }
    }
    urls
}

/// The number after the first `line ` in `text`.
fn line_number(text: &str) -> Option<usize> {
    text.match_indices("line ").find_map(|(at, word)| {
        let digits: String = text[at + word.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// The JSON pointer after the first `#/` in `text`, up to a `: `, a space or a `)`.
fn pointer(text: &str) -> Option<String> {
    let at = text.find("#/")?;
    let rest = &text[at + 1..];
    let end = [
        rest.find(": "),
        rest.find(char::is_whitespace),
        rest.find(')'),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches([',', ':']).to_owned())
}

/// Each block-mapping key line of `text` with the keys above it, until `visit` says stop.
fn walk(text: &str, mut visit: impl FnMut(usize, &[(usize, String)]) -> bool) {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with(['#', '-']) {
            continue;
        }
        let Some(key) = mapping_key(trimmed) else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        while stack.last().is_some_and(|(above, _)| *above >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_owned()));
        if visit(index + 1, &stack) {
            return;
        }
    }
}

/// The key of a `key: value` or `key:` line, quoted or not.
fn mapping_key(line: &str) -> Option<&str> {
    if let Some(quote @ ('"' | '\'')) = line.chars().next() {
        let end = line[1..].find(quote)? + 1;
        return line[end + 1..].starts_with(':').then(|| &line[1..end]);
    }
    let end = line
        .find(": ")
        .or_else(|| line.strip_suffix(':').map(str::len))?;
    Some(line[..end].trim_end()).filter(|key| !key.is_empty() && !key.contains(['{', '[']))
}

fn joined(stack: &[(usize, String)]) -> String {
    let keys: Vec<&str> = stack.iter().map(|(_, key)| key.as_str()).collect();
    keys.join(".")
}

/// The line of the block-mapping key at dotted `path` (`auth.schemes.bearer`).
pub fn key_line(text: &str, path: &str) -> Option<usize> {
    let mut found = None;
    walk(text, |line, stack| {
        if joined(stack) == path {
            found = Some(line);
        }
        found.is_some()
    });
    found
}

/// The dotted key path of the setting on `line`, or of the last key above it.
pub fn key_path_at(text: &str, line: usize) -> Option<String> {
    let mut found = None;
    walk(text, |at, stack| {
        if at <= line {
            found = Some(joined(stack));
        }
        at >= line
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "listen: x\n# auth:\nauth:\n  schemes:\n    bearer:\n      type: jwt\n      secret: \"${S}\"\n    \"api key\":\n      store: k.yaml\npolicy:\n  default: [{bearer: []}]\n";

    #[test]
    fn a_dotted_key_finds_its_line_and_a_line_its_key() {
        assert_eq!(key_line(TEXT, "auth.schemes.bearer.secret"), Some(7));
        assert_eq!(key_line(TEXT, "auth.schemes.api key.store"), Some(9));
        assert_eq!(key_line(TEXT, "policy.default"), Some(11));
        assert_eq!(key_line(TEXT, "auth.schemes.nothing"), None);
        assert_eq!(
            key_path_at(TEXT, 7).as_deref(),
            Some("auth.schemes.bearer.secret")
        );
        assert_eq!(key_path_at(TEXT, 1).as_deref(), Some("listen"));
    }

    #[test]
    fn lines_and_pointers_are_read_off_the_problem() {
        assert_eq!(line_number("error: line 3 column 1: duplicate"), Some(3));
        assert_eq!(line_number("x (line 54): no operation"), Some(54));
        assert_eq!(line_number("no line here"), None);
        assert_eq!(
            pointer("openapi: /t/spec.yaml#/paths/~1a/get: bad").as_deref(),
            Some("/paths/~1a/get")
        );
    }

    #[test]
    fn a_problem_naming_a_setting_gets_its_line() {
        let files = Files {
            config: "moat.yaml".into(),
            text: Some(TEXT.into()),
            named: vec![("k.yaml".into(), "key_store_invalid")],
        };
        let (at, code) = files.locate("auth.schemes.bearer: `secret` must be at least 32 bytes");
        assert_eq!(
            (at.file.as_str(), at.line, code),
            ("moat.yaml", Some(7), None)
        );
        let (at, code) = files.locate("auth.schemes.api key: k.yaml: error: line 2 column 3: x");
        assert_eq!((at.file.as_str(), at.line), ("k.yaml", Some(2)));
        assert_eq!(code, Some("key_store_invalid"));
    }
}
