//! What a policy loads with but likely did not mean, as warnings for `moat check`: an
//! operation that looks administrative (see `classify`) yet every credential — or anyone —
//! may call, as `policy.default: [{bearer: []}, {api_key: []}]` leaves every operation the
//! policy does not name. A config that binds no scheme at all uses moat to validate only,
//! and its public operations are not warned about: all of them are public by choice.

use super::classify::administrative;
use super::{Requirement, Route};
use crate::spec::Operation;

/// A warning for each operation that looks administrative and needs no scope; public ones
/// only when `authenticating` (some scheme is bound).
pub(super) fn open_admin_operations(
    operations: &[&Operation],
    routes: &[Route],
    authenticating: bool,
) -> Vec<String> {
    operations
        .iter()
        .zip(routes)
        .filter(|(_, route)| authenticating || !route.requirement.is_public())
        .filter_map(|(operation, route)| {
            let who = open_to(&route.requirement)?;
            let why = administrative(operation)?;
            let key = operation.id.replace('\\', "\\\\").replace('"', "\\\"");
            Some(format!(
                "{} {} ({}) looks administrative ({why}) but {who}: require a scope, e.g. \
                 `policy.operations: {{\"{key}\": {}}}`",
                operation.method,
                operation.template,
                operation.id,
                admin_hint(&route.requirement),
            ))
        })
        .collect()
}

/// `requirement` with every scheme asking for `admin`, in the config's flow syntax; a
/// public one gets the usual scheme names.
fn admin_hint(requirement: &Requirement) -> String {
    let alternatives: Vec<String> = requirement
        .alternatives()
        .iter()
        .filter(|alternative| !alternative.is_empty())
        .map(|alternative| {
            let schemes: Vec<String> = alternative
                .iter()
                .map(|(scheme, _)| format!("{scheme}: [admin]"))
                .collect();
            format!("{{{}}}", schemes.join(", "))
        })
        .collect();
    if alternatives.is_empty() {
        return "[{bearer: [admin]}, {api_key: [admin]}]".to_owned();
    }
    format!("[{}]", alternatives.join(", "))
}

/// Who may call an operation that needs `requirement` without any scope: anyone (public),
/// every holder of a credential, or `None` when every alternative asks for a scope.
fn open_to(requirement: &Requirement) -> Option<String> {
    if requirement.is_public() {
        return Some("it is public: anyone may call it".to_owned());
    }
    let unscoped = requirement
        .alternatives()
        .iter()
        .find(|alternative| alternative.iter().all(|(_, scopes)| scopes.is_empty()))?;
    Some(format!(
        "any valid credential may call it ({} needs no scope)",
        super::describe_alternative(unscoped)
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn requirement(alternatives: &[&[(&str, &[&str])]]) -> Requirement {
        Requirement(
            alternatives
                .iter()
                .map(|alternative| {
                    alternative
                        .iter()
                        .map(|(scheme, scopes)| {
                            let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
                            (Arc::from(*scheme), scopes)
                        })
                        .collect()
                })
                .collect(),
        )
    }

    #[test]
    fn an_alternative_without_scopes_or_a_public_route_is_open() {
        let open = requirement(&[&[("bearer", &[])], &[("api_key", &[])]]);
        assert_eq!(
            open_to(&open).as_deref(),
            Some("any valid credential may call it (bearer[] needs no scope)")
        );
        assert!(open_to(&requirement(&[])).unwrap().contains("public"));
        let scoped = requirement(&[&[("bearer", &["admin"])], &[("api_key", &["admin"])]]);
        assert_eq!(open_to(&scoped), None);
        let half = requirement(&[&[("bearer", &["admin"])], &[("api_key", &[])]]);
        assert!(open_to(&half).unwrap().contains("api_key[]"));
    }
}
