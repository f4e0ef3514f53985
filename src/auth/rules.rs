//! The rules bound verifiers must meet together, beyond each one's own config: where API
//! keys may be read, one id per key store, and no alternative needing two credentials from
//! the one `Authorization` header.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::keystore::KeyStore;
use super::{Auth, KeyLocation, Verifier};

/// A problem per API-key scheme that reads keys from a query or a cookie (for a policy
/// that does not accept that).
pub(super) fn keys_outside_headers(verifiers: &BTreeMap<Arc<str>, Verifier>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, verifier) in verifiers {
        if let Verifier::ApiKey(key) = verifier
            && !matches!(key.location, KeyLocation::Header(_))
        {
            let (place, _) = key.location.spec_terms();
            problems.push(format!(
                "auth.schemes.{name}: API keys in the {place} leak into access logs, proxies \
                 and browser history; read them from a header, or set \
                 `policy.allow_api_key_in_query_or_cookie: true` to accept that"
            ));
        }
    }
    problems
}

/// A key is named by its id alone wherever it is counted or reported — rate limits, quotas,
/// token budgets (in memory and in Redis), the access log, metrics — so one id in two
/// different stores would make one key spend the other's limits. Two schemes reading the
/// same store file share its keys, and that is fine.
pub(super) fn ids_in_two_stores(verifiers: &BTreeMap<Arc<str>, Verifier>) -> Vec<String> {
    let stores: Vec<_> = (verifiers.iter())
        .filter_map(|(scheme, verifier)| match verifier {
            // A Redis store names its keys in Redis: it is checked there by `moat keys`.
            Verifier::ApiKey(key) => {
                let path = key.store_source().file()?;
                let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
                Some((scheme, key, path, file))
            }
            Verifier::Jwt(_) => None,
        })
        .collect();
    // One store file (the usual case): no id can be in two, and its 100,000 ids need not
    // be sorted and mapped on every load to say so.
    let files: std::collections::BTreeSet<&PathBuf> = stores.iter().map(|s| &s.3).collect();
    if files.len() < 2 {
        return Vec::new();
    }
    let mut owners: BTreeMap<&str, (&str, &PathBuf)> = BTreeMap::new();
    let mut problems = Vec::new();
    for (scheme, key, path, file) in &stores {
        for id in sorted_ids(key.store()) {
            match owners.get(id) {
                Some((other, other_file)) if *other_file != file => {
                    problems.push(id_in_two_stores(id, (other, other_file), (scheme, path)));
                }
                Some(_) => {}
                None => {
                    owners.insert(id, (scheme, file));
                }
            }
        }
    }
    problems
}

fn sorted_ids(store: &KeyStore) -> Vec<&str> {
    let mut ids: Vec<&str> = store.records.keys().map(String::as_str).collect();
    ids.sort_unstable();
    ids
}

/// The problem of `id` in the stores of two schemes, each given as (scheme, store file).
fn id_in_two_stores(
    id: &str,
    (other, other_file): (&str, &Path),
    (scheme, path): (&str, &Path),
) -> String {
    format!(
        "key id `{id}` is in two key stores, auth.schemes.{other} ({}) and \
         auth.schemes.{scheme} ({}): limits, quotas, token budgets, the access log \
         and metrics name a key by its id, so one key would spend the other's; give \
         one of them another id (`moat keys rotate {id} --new-id NEW --store …`)",
        other_file.display(),
        path.display()
    )
}

impl Auth {
    /// An alternative that needs a bearer JWT and a key read from the bearer slot can never
    /// pass: one `Authorization` header carries one of them. A problem per such alternative.
    pub fn check_routes(&self, routes: &crate::policy::Routes) -> Vec<String> {
        let mut problems = Vec::new();
        for route in routes.all() {
            for alternative in route.requirement.alternatives() {
                if let Some(problem) = self.bearer_conflict(alternative)
                    && !problems.contains(&problem)
                {
                    problems.push(problem);
                }
            }
        }
        problems
    }

    /// The problem of one alternative that needs both a JWT and a bearer-slot key.
    fn bearer_conflict(&self, alternative: &[(Arc<str>, Vec<String>)]) -> Option<String> {
        let kind = |wanted_jwt: bool| {
            alternative
                .iter()
                .find(|(scheme, _)| match self.verifiers.get(scheme) {
                    Some(Verifier::Jwt(_)) => wanted_jwt,
                    Some(Verifier::ApiKey(key)) => !wanted_jwt && key.bearer,
                    None => false,
                })
        };
        let ((jwt, _), (key, _)) = (kind(true)?, kind(false)?);
        Some(format!(
            "the requirement `{}` needs the JWT `{jwt}` and the key `{key}` together, \
             but both are read from the one `Authorization: Bearer` header; put them \
             in two alternatives, or set `bearer: false` on `{key}` (clients then \
             send the key in its header)",
            crate::policy::describe_alternative(alternative)
        ))
    }
}
