//! The security policy in the vocabulary every stage shares: a compiled [`Requirement`]
//! (alternatives of schemes with their scopes), and one [`Route`] per operation — its
//! requirement and mode — resolved once at load, in the order design §2 gives:
//! `policy.operations` (by operationId or `METHOD /template`), else the spec's own
//! `security`, else `policy.default`, else public. Every scheme a requirement names must be
//! bound in `auth.schemes`, or the load fails: an unbound scheme would make its alternative
//! read as public.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

pub use crate::config::{Alternative, Mode};
use crate::config::{Config, LlmSetting, SchemeConfig};
use crate::spec::Operation;
use crate::spec::Spec;

/// Alternatives (OR), each a list of (scheme, required scopes) that must all pass (AND);
/// within one, bearer schemes come first, so a request without a valid token never costs
/// an argon2 hash. No alternatives, or an empty one, is public.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement(Vec<Vec<(Arc<str>, Vec<String>)>>);

impl Requirement {
    pub fn is_public(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(Vec::is_empty)
    }

    pub fn alternatives(&self) -> &[Vec<(Arc<str>, Vec<String>)>] {
        &self.0
    }
}

/// `bearer[predict] OR api_key[predict]`, or `public`: as `moat check` prints it.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_public() {
            return f.write_str("public");
        }
        let alternatives: Vec<String> = self.0.iter().map(|a| describe_alternative(a)).collect();
        f.write_str(&alternatives.join(" OR "))
    }
}

/// `bearer[predict] AND api_key[]`: one alternative as `moat check` and `moat explain`
/// print it.
pub fn describe_alternative(alternative: &[(Arc<str>, Vec<String>)]) -> String {
    alternative
        .iter()
        .map(|(scheme, scopes)| format!("{scheme}[{}]", scopes.join(" ")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// What one operation (or, without a spec, every request) needs to pass stages 3–6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub requirement: Requirement,
    /// The long-form policy's `mode`, else `policy.mode`.
    pub mode: Mode,
    /// Metered as an OpenAI-protocol LLM call (see `llm`): set by `llm: openai`, or
    /// detected from the path.
    pub llm: Option<LlmProfile>,
}

/// An operation metered as an OpenAI-protocol LLM call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmProfile {
    /// Found from the path, not named by `llm: openai` (for `moat check`).
    pub detected: bool,
}

/// The paths OpenAI-compatible servers serve the metered calls at (after any prefix:
/// `/v1/chat/completions`, KServe's `/openai/v1/chat/completions`, OpenAI's own spec
/// `/chat/completions` under a `/v1` server).
const DETECTED: [&str; 3] = ["/chat/completions", "/completions", "/embeddings"];

impl LlmProfile {
    /// `llm: openai` meters the operation, `llm: none` does not; unset, a POST at one of
    /// the usual paths is metered.
    pub fn resolve(setting: Option<LlmSetting>, operation: &Operation) -> Option<LlmProfile> {
        match setting {
            Some(LlmSetting::Openai) => Some(LlmProfile { detected: false }),
            Some(LlmSetting::None) => None,
            None => (operation.method == http::Method::POST
                && DETECTED
                    .iter()
                    .any(|path| operation.template.ends_with(path)))
            .then_some(LlmProfile { detected: true }),
        }
    }
}

/// One route per spec operation (by its index), and the one for requests without a spec.
#[derive(Debug)]
pub struct Routes {
    operations: Vec<Route>,
    unrouted: Route,
}

impl Routes {
    /// The route of the spec's operation `index`.
    pub fn operation(&self, index: usize) -> &Route {
        &self.operations[index]
    }

    /// Every route: the spec's operations, then the one without a spec.
    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.operations
            .iter()
            .chain(std::iter::once(&self.unrouted))
    }

    /// The route when no spec is configured: `policy.default` for every path.
    pub fn unrouted(&self) -> &Route {
        &self.unrouted
    }

    /// Resolves every operation's requirement and mode; reports every problem at once.
    pub fn resolve(config: &Config, spec: Option<&Spec>) -> Result<Routes, Vec<String>> {
        let policy = &config.policy;
        let mut compiler = Compiler {
            schemes: &config.auth.schemes,
            unbound: BTreeMap::new(),
        };
        let mut problems = Vec::new();
        let default = policy.default.clone().unwrap_or_default();
        let unrouted = Route {
            requirement: compiler.compile(&default, "policy.default"),
            mode: policy.mode,
            llm: None,
        };
        let mut operations = Vec::new();
        let mut used = HashSet::new();
        if let Some(spec) = spec {
            for operation in &spec.operations {
                let long_name = operation.long_name();
                let overlay = [operation.id.to_string(), long_name]
                    .into_iter()
                    .find_map(|key| policy.operations.get(&key).map(|p| (key, p)));
                if let Some((key, _)) = &overlay {
                    used.insert(key.clone());
                }
                let set = overlay
                    .as_ref()
                    .and_then(|(key, policy)| Some((key, policy.security()?)));
                let (security, context) = match (set, &operation.security) {
                    (Some((key, security)), _) => {
                        (security.to_vec(), format!("policy.operations.{key}"))
                    }
                    (None, Some(security)) => (
                        security.clone(),
                        format!("spec security of `{}`", operation.id),
                    ),
                    (None, None) => (default.clone(), "policy.default".to_owned()),
                };
                let setting = overlay.as_ref().and_then(|(_, policy)| policy.llm());
                operations.push(Route {
                    requirement: compiler.compile(&security, &context),
                    mode: overlay
                        .and_then(|(_, policy)| policy.mode())
                        .unwrap_or(policy.mode),
                    llm: LlmProfile::resolve(setting, operation),
                });
            }
            for key in policy.operations.keys() {
                if !used.contains(key) {
                    problems.push(unknown_operation(
                        key,
                        policy.operation_lines.get(key),
                        spec,
                    ));
                }
            }
        } else if !policy.operations.is_empty() {
            problems.push(
                "policy.operations needs an `openapi` document to name operations".to_owned(),
            );
        }
        problems.extend(compiler.unbound_problems());
        if problems.is_empty() {
            Ok(Routes {
                operations,
                unrouted,
            })
        } else {
            Err(problems)
        }
    }
}

/// Compiles `security` lists against the configured schemes, collecting unbound names.
struct Compiler<'c> {
    schemes: &'c BTreeMap<String, SchemeConfig>,
    /// Scheme name → the places that use it.
    unbound: BTreeMap<String, Vec<String>>,
}

impl Compiler<'_> {
    fn compile(&mut self, security: &[Alternative], context: &str) -> Requirement {
        let bearer = |scheme: &str| matches!(self.schemes.get(scheme), Some(SchemeConfig::Jwt(_)));
        let alternatives = security
            .iter()
            .map(|alternative| {
                let mut ordered: Vec<_> = alternative.iter().collect();
                ordered.sort_by_key(|(scheme, _)| !bearer(scheme));
                ordered
                    .into_iter()
                    .filter_map(|(scheme, scopes)| {
                        if self.schemes.contains_key(scheme) {
                            Some((Arc::from(scheme.as_str()), scopes.clone()))
                        } else {
                            self.unbound
                                .entry(scheme.clone())
                                .or_default()
                                .push(context.to_owned());
                            None
                        }
                    })
                    .collect()
            })
            .collect();
        Requirement(alternatives)
    }

    /// An unbound scheme is dropped from its alternative above; the load must then fail.
    fn unbound_problems(self) -> Vec<String> {
        self.unbound
            .into_iter()
            .map(|(scheme, users)| {
                let shown: Vec<&str> = users.iter().take(3).map(String::as_str).collect();
                let more = match users.len() {
                    0..=3 => String::new(),
                    n => format!(" and {} more", n - 3),
                };
                format!(
                    "security scheme `{scheme}` is not bound in `auth.schemes` (used by {}{more}); \
                     add a verifier for it",
                    shown.join(", ")
                )
            })
            .collect()
    }
}

/// A `policy.operations` key that names no operation: where it is, what it may have meant
/// (a near operationId, or the spec's template when only parameter names differ), and the
/// operations there are.
fn unknown_operation(key: &str, line: Option<&usize>, spec: &Spec) -> String {
    let at = line
        .map(|line| format!(" (line {line})"))
        .unwrap_or_default();
    let shape = |name: &str| {
        let mut out = String::new();
        let mut in_param = false;
        for c in name.chars() {
            match c {
                '{' => in_param = true,
                '}' => {
                    in_param = false;
                    out.push_str("{}");
                }
                _ if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    };
    let same_shape = spec
        .operations
        .iter()
        .map(crate::spec::Operation::long_name)
        .find(|long| shape(long) == shape(key));
    let hint = match same_shape {
        Some(long) => format!(
            "; the spec names this path's parameters differently: write `\"{long}\"` (the \
             template must use the spec's own parameter names)"
        ),
        None => spec
            .operations
            .iter()
            .flat_map(|o| [o.id.to_string(), o.long_name()])
            .map(|name| (strsim::damerau_levenshtein(key, &name), name))
            .filter(|(distance, name)| *distance <= 3.max(name.len() / 4))
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, name)| format!("; did you mean `{name}`?"))
            .unwrap_or_default(),
    };
    let ids: Vec<&str> = spec.operations.iter().map(|o| &*o.id).take(12).collect();
    let more = spec.operations.len().saturating_sub(ids.len());
    let more = if more > 0 {
        format!(" and {more} more (`moat check` lists them)")
    } else {
        String::new()
    };
    format!(
        "policy.operations.{key}{at}: no operation has this operationId or `METHOD /template`{hint} \
         (the spec's operationIds: {}{more})",
        ids.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_paths_are_detected_and_llm_none_turns_detection_off() {
        let chat = Operation::for_tests("chat", "POST", "/v1/chat/completions");
        assert_eq!(
            LlmProfile::resolve(None, &chat),
            Some(LlmProfile { detected: true })
        );
        assert_eq!(LlmProfile::resolve(Some(LlmSetting::None), &chat), None);
        let predict = Operation::for_tests("predict", "POST", "/predict");
        assert_eq!(LlmProfile::resolve(None, &predict), None);
        assert_eq!(
            LlmProfile::resolve(Some(LlmSetting::Openai), &predict),
            Some(LlmProfile { detected: false })
        );
        let get = Operation::for_tests("models", "GET", "/v1/embeddings");
        assert_eq!(LlmProfile::resolve(None, &get), None);
    }
}
