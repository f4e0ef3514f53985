//! Resolving each operation's route: the requirement from the first of
//! `policy.operations`, the spec's `security` and `policy.default` that sets one, compiled
//! against the configured schemes; the mode and LLM profile from the operation's entry.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::unknown::unknown_operation;
use super::{Alternative, LlmProfile, Requirement, Route};
use crate::config::{Config, OperationPolicy, PolicyConfig, ResponsesConfig, SchemeConfig};
use crate::spec::Operation;

/// Resolves routes one after another, remembering which `policy.operations` keys named an
/// operation and which schemes are not bound.
pub(super) struct Resolver<'c> {
    policy: &'c PolicyConfig,
    responses: &'c ResponsesConfig,
    compiler: Compiler<'c>,
    /// `policy.default`, else public.
    default: Vec<Alternative>,
    used: HashSet<String>,
}

/// A `policy.operations` entry and the key it is under.
type Entry<'c> = (String, &'c OperationPolicy);

impl<'c> Resolver<'c> {
    pub(super) fn new(config: &'c Config) -> Self {
        Resolver {
            policy: &config.policy,
            responses: &config.responses,
            compiler: Compiler {
                schemes: &config.auth.schemes,
                unbound: BTreeMap::new(),
            },
            default: config.policy.default.clone().unwrap_or_default(),
            used: HashSet::new(),
        }
    }

    /// The route when no spec is configured: `policy.default` for every path.
    pub(super) fn no_spec_route(&mut self) -> Route {
        Route {
            requirement: self.compiler.compile(&self.default, "policy.default"),
            mode: self.policy.mode,
            llm: None,
            closed: false,
            responses: self.responses.resolve(None, false),
        }
    }

    /// Every operation's route, and a problem for each `policy.operations` key that named
    /// none of them.
    pub(super) fn operations(&mut self, operations: &[&Operation]) -> (Vec<Route>, Vec<String>) {
        let routes = operations.iter().map(|o| self.route(o)).collect();
        (routes, self.unknown_keys(operations))
    }

    /// Without a spec or gRPC services there are no operations for `policy.operations` to
    /// name.
    pub(super) fn without_spec(&self) -> Vec<String> {
        if self.policy.operations.is_empty() {
            return Vec::new();
        }
        vec![
            "policy.operations needs an `openapi` document or `grpc` services to name \
             operations"
                .to_owned(),
        ]
    }

    fn route(&mut self, operation: &Operation) -> Route {
        let entry = self.entry(operation);
        let (security, context) = self.security(operation, entry.as_ref());
        let policy = entry.map(|(_, policy)| policy);
        Route {
            requirement: self.compiler.compile(&security, &context),
            mode: policy
                .and_then(OperationPolicy::mode)
                .unwrap_or(self.policy.mode),
            llm: LlmProfile::resolve(policy.and_then(OperationPolicy::llm), operation),
            closed: policy.is_none() && operation.rpc.as_ref().is_some_and(|r| r.administrative),
            responses: self.responses.resolve(
                policy.and_then(OperationPolicy::responses),
                (operation.responses.as_ref()).is_some_and(|r| r.has_schema()),
            ),
        }
    }

    /// The `policy.operations` entry naming `operation`, by operationId first, then by
    /// `METHOD /template`.
    fn entry(&mut self, operation: &Operation) -> Option<Entry<'c>> {
        let entry = [operation.id.to_string(), operation.long_name()]
            .into_iter()
            .find_map(|key| self.policy.operations.get(&key).map(|p| (key, p)));
        if let Some((key, _)) = &entry {
            self.used.insert(key.clone());
        }
        entry
    }

    /// The operation's requirement, and where it comes from (for problems).
    fn security(
        &self,
        operation: &Operation,
        entry: Option<&Entry<'c>>,
    ) -> (Vec<Alternative>, String) {
        let set = entry.and_then(|(key, policy)| Some((key, policy.security()?)));
        match (set, &operation.security) {
            (Some((key, security)), _) => (security.to_vec(), format!("policy.operations.{key}")),
            (None, Some(security)) => (
                security.clone(),
                format!("spec security of `{}`", operation.id),
            ),
            (None, None) => (self.default.clone(), "policy.default".to_owned()),
        }
    }

    /// A problem for each `policy.operations` key that named no operation.
    fn unknown_keys(&self, operations: &[&Operation]) -> Vec<String> {
        self.policy
            .operations
            .keys()
            .filter(|key| !self.used.contains(*key))
            .map(|key| unknown_operation(key, self.policy.operation_lines.get(key), operations))
            .collect()
    }

    pub(super) fn unbound_problems(self) -> Vec<String> {
        self.compiler.unbound_problems()
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
        let alternatives = security
            .iter()
            .map(|alternative| self.alternative(alternative, context))
            .collect();
        Requirement(alternatives)
    }

    /// One alternative's bound schemes, bearer schemes first.
    fn alternative(
        &mut self,
        alternative: &Alternative,
        context: &str,
    ) -> Vec<(Arc<str>, Vec<String>)> {
        let bearer = |scheme: &str| matches!(self.schemes.get(scheme), Some(SchemeConfig::Jwt(_)));
        let mut ordered: Vec<_> = alternative.iter().collect();
        ordered.sort_by_key(|(scheme, _)| !bearer(scheme));
        ordered
            .into_iter()
            .filter_map(|(scheme, scopes)| self.bound(scheme, scopes, context))
            .collect()
    }

    /// The scheme with its scopes when `auth.schemes` binds it; else `None`, and the scheme
    /// noted as unbound where `context` uses it.
    fn bound(
        &mut self,
        scheme: &str,
        scopes: &[String],
        context: &str,
    ) -> Option<(Arc<str>, Vec<String>)> {
        if self.schemes.contains_key(scheme) {
            return Some((Arc::from(scheme), scopes.to_vec()));
        }
        let users = self.unbound.entry(scheme.to_owned()).or_default();
        users.push(context.to_owned());
        None
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
