//! Stage 4, authorize: a valid credential may still not call this operation — the key's
//! `operations` allowlist (final: 403) — or lack the scopes this scheme requires (the next
//! alternative may still pass). Scopes are checked per scheme, against that credential's
//! own scopes, never a union across credentials.

use super::Identity;
use crate::spec::Operation;

/// Why a valid credential is not enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The key's `operations` allowlist does not name this operation.
    OperationNotAllowed,
    /// The scopes this scheme requires that the credential lacks.
    MissingScopes(Vec<String>),
}

/// Whether `identity` may call `operation` with the scopes `required` of its scheme.
pub fn authorize(
    identity: &Identity,
    required: &[String],
    operation: Option<&Operation>,
) -> Result<(), Denied> {
    if let (Some(allowed), Some(operation)) = (identity.allowed_operations.as_deref(), operation)
        && !names_operation(allowed, operation)
    {
        return Err(Denied::OperationNotAllowed);
    }
    let missing: Vec<String> = required
        .iter()
        .filter(|scope| !identity.scopes.contains(scope))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Denied::MissingScopes(missing))
    }
}

/// Whether an `operations` allowlist names `operation`: by its id, or as `METHOD /template`.
fn names_operation(allowed: &[String], operation: &Operation) -> bool {
    let long_name = operation.long_name();
    allowed
        .iter()
        .any(|o| **o == *operation.id || *o == long_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(scopes: &[&str], operations: Option<&[&str]>) -> Identity {
        Identity {
            subject: None,
            key_id: Some("k".into()),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            allowed_operations: operations.map(|o| o.iter().map(|s| s.to_string()).collect()),
            bearer: false,
        }
    }

    #[test]
    fn scopes_are_checked_against_the_credentials_own_scopes() {
        let predict = vec!["predict".to_owned()];
        assert_eq!(
            authorize(&identity(&["predict", "read"], None), &predict, None),
            Ok(())
        );
        assert_eq!(
            authorize(&identity(&["read"], None), &predict, None),
            Err(Denied::MissingScopes(predict.clone()))
        );
        assert_eq!(authorize(&identity(&[], None), &[], None), Ok(()));
    }

    #[test]
    fn an_allowlist_without_the_operation_denies_before_scopes_are_looked_at() {
        let operation = Operation::for_tests("predict", "POST", "/v1/models/{m}:predict");
        let listed = identity(&["predict"], Some(&["predict"]));
        assert_eq!(authorize(&listed, &[], Some(&operation)), Ok(()));
        let by_template = identity(&[], Some(&["POST /v1/models/{m}:predict"]));
        assert_eq!(authorize(&by_template, &[], Some(&operation)), Ok(()));
        let other = identity(&[], Some(&["list_models"]));
        assert_eq!(
            authorize(&other, &["predict".into()], Some(&operation)),
            Err(Denied::OperationNotAllowed)
        );
        // Without a spec there is no operation to deny.
        assert_eq!(authorize(&other, &[], None), Ok(()));
    }
}
