//! The security policy in the vocabulary every stage shares: a compiled [`Requirement`]
//! (alternatives of schemes with their scopes), and one [`Route`] per operation — its
//! requirement and mode — resolved once at load, in the order design §2 gives:
//! `policy.operations` (by operationId or `METHOD /template`), else the spec's own
//! `security`, else `policy.default`, else public. Every scheme a requirement names must be
//! bound in `auth.schemes`, or the load fails: an unbound scheme would make its alternative
//! read as public.

pub mod classify;
mod resolve;
mod unknown;
mod warnings;

use std::fmt;
use std::sync::Arc;

use self::resolve::Resolver;
pub use crate::config::{Alternative, Mode};
use crate::config::{Config, LlmSetting, ResponsePolicy};
use crate::grpc::Services;
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
    /// Never routed: a gRPC method that changes the model server, which `policy.operations`
    /// does not name (see `spec::Rpc::administrative`).
    pub closed: bool,
    /// What its answers are held to (`responses:`, resolved for this operation).
    pub responses: ResponsePolicy,
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

/// One route per spec operation (by its index), then one per gRPC method, and the one for
/// requests without a spec.
#[derive(Debug)]
pub struct Routes {
    operations: Vec<Route>,
    /// Where the gRPC methods' routes begin in `operations`.
    grpc_start: usize,
    /// The route of every request when no spec is configured.
    no_spec: Route,
    /// What loads but is likely not meant (see `warnings`), for `moat check`.
    warnings: Vec<String>,
}

impl Routes {
    /// The route of the spec's operation `index`.
    pub fn operation(&self, index: usize) -> &Route {
        &self.operations[index]
    }

    /// The route of the gRPC method `index` (see `grpc::Services`).
    pub fn grpc(&self, index: usize) -> &Route {
        &self.operations[self.grpc_start + index]
    }

    /// Every route: the spec's operations, the gRPC methods, then the one without a spec.
    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.operations.iter().chain(std::iter::once(&self.no_spec))
    }

    /// The route when no spec is configured: `policy.default` for every path.
    pub fn without_spec(&self) -> &Route {
        &self.no_spec
    }

    /// What the policy loads with but likely did not mean: administrative-looking
    /// operations every credential may call.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Resolves every operation's requirement and mode; reports every problem at once.
    pub fn resolve(
        config: &Config,
        spec: Option<&Spec>,
        grpc: Option<&Services>,
    ) -> Result<Routes, Vec<String>> {
        let mut resolver = Resolver::new(config);
        let no_spec = resolver.no_spec_route();
        let spec_operations = spec.map_or(&[][..], |spec| &spec.operations);
        let grpc_operations = grpc.map_or(&[][..], |grpc| &grpc.operations);
        let all: Vec<&Operation> = spec_operations.iter().chain(grpc_operations).collect();
        let (operations, mut problems) = match spec.is_some() || grpc.is_some() {
            true => resolver.operations(&all),
            false => (Vec::new(), resolver.without_spec()),
        };
        problems.extend(resolver.unbound_problems());
        if problems.is_empty() {
            let authenticating = !config.auth.schemes.is_empty();
            let warnings = warnings::open_admin_operations(&all, &operations, authenticating);
            Ok(Routes {
                operations,
                grpc_start: spec_operations.len(),
                no_spec,
                warnings,
            })
        } else {
            Err(problems)
        }
    }
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
