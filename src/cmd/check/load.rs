//! Loading for `moat check`: as `serve` loads, but on past every problem so all are
//! reported at once; and with `--offline`, lenient where CI has nothing to give: an unset
//! variable stands in as a placeholder and is a warning, an encrypted env file without its
//! key is a warning, and what needs the network is skipped with a warning.

use std::path::Path;
use std::sync::Arc;

use super::advice;
use super::capture::{Caught, Logged};
use super::findings::{Finding, Severity, logged_code};
use super::locate::{Files, Location};
use super::spec_source::{self, Fetching, SpecSource};
use crate::config::{Config, LimitStore, mentions_placeholder, without_placeholders};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Everything `moat check` learnt: what loaded, and every finding.
pub struct Checked {
    /// `None` when the config file does not parse.
    pub config: Option<Config>,
    /// `None` when a part failed to build (the findings say which).
    pub snapshot: Option<Snapshot>,
    pub spec: SpecSource,
    pub findings: Vec<Finding>,
}

impl Checked {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }
}

/// Loads the config at `config_path` and everything it names, catching what the loading
/// code logs as warnings.
pub fn load(config_path: &Path, fetching: Fetching) -> Checked {
    if fetching.offline {
        crate::fetch::go_offline();
    }
    let caught = Caught::default();
    let (mut checked, files) =
        tracing::subscriber::with_default(caught.subscriber(), || load_all(config_path, fetching));
    for logged in caught.take() {
        checked.findings.push(logged_finding(&logged, &files));
    }
    checked
}

fn load_all(config_path: &Path, fetching: Fetching) -> (Checked, Files) {
    let (config, problems) = Config::load_leniently(config_path);
    let files = Files::new(config_path, config.as_ref());
    // A placeholder can stand in only where the config parsed with it in place.
    let lenient = fetching.offline && config.is_some();
    let mut findings: Vec<Finding> = problems
        .iter()
        .map(|problem| config_finding(problem, lenient, &files))
        .collect();
    let Some(mut config) = config else {
        let spec = SpecSource::None;
        let checked = Checked {
            config: None,
            snapshot: None,
            spec,
            findings,
        };
        return (checked, files);
    };
    let spec = spec_source::prepare(&mut config, config_path, fetching, &files, &mut findings);
    let placeholders = fetching.offline.then(|| placeholder_lines(&findings));
    let snapshot = build(&config, placeholders.as_deref(), &files, &mut findings);
    findings.extend(advice::warnings(&config, snapshot.as_ref(), &files));
    let config = Some(config);
    (
        Checked {
            config,
            snapshot,
            spec,
            findings,
        },
        files,
    )
}

/// The snapshot of `config`, or `None` with a finding for each problem. Offline, when only
/// placeholders kept it from building and one of them is the Redis URL (a secret: it may
/// hold a password), it is built again with the limits counted in memory, so the schemes
/// and routes are still checked and listed.
fn build(
    config: &Config,
    placeholders: Option<&[usize]>,
    files: &Files,
    findings: &mut Vec<Finding>,
) -> Option<Snapshot> {
    let metrics = Arc::new(Metrics::new());
    let problems = match Snapshot::from_config(config.clone(), &metrics, None) {
        Ok(snapshot) => return Some(snapshot),
        Err(problems) => problems,
    };
    let found: Vec<Finding> = problems
        .iter()
        .flat_map(|problem| part_findings(problem, placeholders, files))
        .collect();
    let only_placeholders = found.iter().all(|f| f.severity == Severity::Warning);
    findings.extend(found);
    let redis = matches!(config.limits.store, LimitStore::Redis(_));
    if !(placeholders.is_some() && only_placeholders && redis) {
        return None;
    }
    let mut in_memory = config.clone();
    in_memory.limits.store = LimitStore::Memory;
    Snapshot::from_config(in_memory, &metrics, None).ok()
}

/// A problem of the config file or of the variables and env files it reads.
fn config_finding(problem: &str, lenient: bool, files: &Files) -> Finding {
    let Some(unset) = lenient.then(|| unset_variable(problem)).flatten() else {
        if lenient && encrypted_env_locked(problem) {
            let (at, _) = files.locate(problem);
            return Finding::at(
                Severity::Warning,
                "encrypted_env_locked",
                at,
                &format!(
                    "{problem} — offline: its variables are not checked; those the config uses are placeholders"
                ),
            );
        }
        return Finding::problem(Severity::Error, problem, files);
    };
    let (at, _) = files.locate(problem);
    let used = at
        .line
        .and_then(|line| files.key_path_at(line))
        .map_or_else(String::new, |key| format!(" for `{key}`"));
    let message = format!(
        "`{unset}` is not set: checked with a placeholder{used}; `moat serve` needs it (from \
         the environment, `{unset}_FILE`, env.dotenv or env.encrypted_dotenv)"
    );
    Finding::at(Severity::Warning, "unset_variable", at, &message)
}

/// The name of the variable an unset-variable problem is about.
fn unset_variable(problem: &str) -> Option<&str> {
    let rest = problem.split_once("environment variable `")?.1;
    rest.contains("is not set")
        .then(|| rest.split('`').next())?
}

/// True when an encrypted env file could not be decrypted only because its key is not
/// there (no age identity; no dotenvx private key anywhere) — never for a damaged file or
/// a wrong key.
fn encrypted_env_locked(problem: &str) -> bool {
    if !problem.starts_with("env.encrypted_dotenv") {
        return false;
    }
    if problem.contains("no age identity") {
        return true;
    }
    let Some((_, tried)) = problem.split_once("no private key for ") else {
        return false;
    };
    let tried = tried
        .split_once("tried ")
        .and_then(|(_, rest)| rest.split_once("; set "))
        .map(|(tried, _)| tried);
    tried.is_some_and(|tried| tried.split(", ").all(|t| t.ends_with("(unset)")))
}

/// The config lines where an unset variable was given a placeholder.
fn placeholder_lines(findings: &[Finding]) -> Vec<usize> {
    let placeholders = findings
        .iter()
        .filter(|f| f.code == "unset_variable" && f.severity == Severity::Warning);
    placeholders.filter_map(|f| f.line).collect()
}

/// A problem of a part built from the config (spec, schemes, routes, TLS), unless a
/// placeholder explains it — it names one, or the setting on a line that holds one (a
/// secret's own text is never quoted). Offline (`placeholders` are the lines that hold
/// one), that check is a warning that it did not run; online, the unset variable was
/// reported.
fn part_findings(problem: &str, placeholders: Option<&[usize]>, files: &Files) -> Vec<Finding> {
    let finding = Finding::problem(Severity::Error, &without_placeholders(problem), files);
    let on_placeholder = |lines: &[usize]| {
        mentions_placeholder(problem) || finding.line.is_some_and(|line| lines.contains(&line))
    };
    if mentions_placeholder(problem) || placeholders.is_some_and(on_placeholder) {
        let message = format!("not checked, a variable it uses is unset: {}", finding.text);
        let at = Location {
            file: finding.file,
            line: finding.line,
            pointer: finding.pointer,
        };
        let warning = Finding::at(Severity::Warning, "placeholder_unchecked", at, &message);
        return placeholders.map(|_| warning).into_iter().collect();
    }
    match finding.code {
        "key_store_invalid" => one_per_key(problem, &finding.file)
            .iter()
            .map(|problem| Finding::problem(Severity::Error, problem, files))
            .collect(),
        _ => vec![finding],
    }
}

/// A key store's problems, which its scheme reports joined in one (`SCHEME: FILE: a;
/// FILE: b`), one by one: a CI job can then point at each key.
fn one_per_key(problem: &str, file: &str) -> Vec<String> {
    let head = format!("{file}: ");
    let Some(at) = problem.find(&head) else {
        return vec![problem.to_owned()];
    };
    let (scheme, rest) = problem.split_at(at);
    rest.split(&format!("; {head}"))
        .map(|part| {
            let part = part.strip_prefix(&head).unwrap_or(part);
            format!("{scheme}{head}{part}")
        })
        .collect()
}

/// A warning the loading code logged.
fn logged_finding(logged: &Logged, files: &Files) -> Finding {
    let (mut at, _) = files.locate(&logged.message);
    if let Some(file) = logged.field("file") {
        at.file = file.to_owned();
        at.line = None;
    } else if let (None, Some(url)) = (at.line, logged.field("url")) {
        at.line = files.line_of(url);
    }
    Finding::at(
        Severity::Warning,
        logged_code(&logged.message),
        at,
        &logged.text(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_stores_problems_are_one_finding_each() {
        let joined = "auth.schemes.k: keys.yaml: key `a`: bad; keys.yaml: key id `a` appears twice";
        assert_eq!(
            one_per_key(joined, "keys.yaml"),
            [
                "auth.schemes.k: keys.yaml: key `a`: bad",
                "auth.schemes.k: keys.yaml: key id `a` appears twice"
            ]
        );
        assert_eq!(one_per_key("other", "keys.yaml"), ["other"]);
    }

    #[test]
    fn only_a_missing_key_makes_an_encrypted_env_file_a_warning() {
        let env = "env.encrypted_dotenv (.env): dotenvx file: no private key for DOTENV_PUBLIC_KEY ab: tried";
        assert!(encrypted_env_locked(&format!(
            "{env} $DOTENV_PRIVATE_KEY (unset); set X"
        )));
        assert!(!encrypted_env_locked(&format!(
            "{env} $DOTENV_PRIVATE_KEY; set X"
        )));
        assert!(encrypted_env_locked(
            "env.encrypted_dotenv (.env.age): age file: no age identity: set MOAT_AGE_IDENTITY"
        ));
        assert!(!encrypted_env_locked(
            "env.encrypted_dotenv (.env.age): age file: the ciphertext is damaged"
        ));
        assert_eq!(
            unset_variable("line 3: environment variable `A_B` is not set (nor `A_B_FILE`)"),
            Some("A_B")
        );
    }
}
