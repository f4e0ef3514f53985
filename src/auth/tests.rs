//! The alternatives logic of stages 3–4 against real verifiers (an HS256 secret, a key store
//! with real argon2id hashes): absent moves on, present-but-invalid is final, scopes are
//! checked per scheme, and identities are never merged across alternatives.

use std::sync::Arc;

use http::HeaderMap;
use serde_json::json;

use super::{Auth, Caller, Principal};
use crate::auth::api_key::hash_key;
use crate::auth::keystore::new_key;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::Routes;
use crate::reject::Rejection;
use crate::trail::Trail;

const SECRET: &str = "0123456789abcdef0123456789abcdef-auth";

struct World {
    auth: Auth,
    config: Config,
    /// A key with scope `predict`, owner `team`.
    key: String,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = new_key("ops");
    std::fs::write(
        &store,
        format!(
            "keys:\n  - id: ops\n    hash: \"{}\"\n    scopes: [predict]\n    owner: team\n",
            hash_key(&key, None).unwrap()
        ),
    )
    .unwrap();
    let text = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{url: http://127.0.0.1:9}}\nauth:\n  schemes:\n    bearer: {{type: jwt, issuer: iss, audience: aud, algorithms: [HS256], secret: {SECRET}}}\n    api_key: {{type: api_key, store: {}}}\n",
        store.display()
    );
    let config = Config::parse(&text, &|_| None).unwrap();
    let auth = Auth::load(&config, None, &Arc::new(Metrics::new()), None).unwrap();
    World {
        auth,
        config,
        key,
        _dir: dir,
    }
}

fn token(scope: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"iss": "iss", "aud": "aud", "sub": "alice", "exp": exp, "scope": scope});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Checks `headers` against the requirement `policy.default: <requirement>` would give.
async fn check(
    world: &World,
    requirement: &str,
    headers: &[(&str, String)],
) -> Result<Option<Principal>, Rejection> {
    let mut config = world.config.clone();
    let parsed: Config = Config::parse(
        &format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{url: http://127.0.0.1:9}}\npolicy:\n  default: {requirement}\n"
        ),
        &|_| None,
    )
    .unwrap();
    config.policy.default = parsed.policy.default;
    let routes = Routes::resolve(&config, None, None).unwrap();
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let caller = Caller {
        headers: &map,
        query: None,
        client: "127.0.0.1".parse().unwrap(),
        operation: None,
        request_id: "req",
    };
    world
        .auth
        .check(
            &routes.without_spec().requirement,
            &caller,
            &mut Trail::default(),
        )
        .await
}

fn bearer(scope: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", token(scope)))
}

#[tokio::test]
async fn an_absent_credential_moves_on_to_the_next_alternative() {
    let world = world();
    let key = ("x-api-key", world.key.clone());
    let principal = check(&world, "[{bearer: []}, {api_key: []}]", &[key])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(principal.key_id.as_deref(), Some("ops"));
    assert_eq!(
        principal.subject.as_deref(),
        Some("team"),
        "the owner as subject"
    );
    assert_eq!(
        check(&world, "[{bearer: []}, {api_key: []}]", &[]).await,
        Err(Rejection::CredentialsMissing)
    );
}

#[tokio::test]
async fn a_present_credential_that_fails_is_final() {
    let world = world();
    let garbled = ("authorization", "Bearer not.a.token".to_owned());
    let key = ("x-api-key", world.key.clone());
    assert_eq!(
        check(
            &world,
            "[{bearer: []}, {api_key: []}]",
            &[garbled, key.clone()]
        )
        .await,
        Err(Rejection::InvalidToken),
        "a valid key in a later alternative must not rescue a bad token"
    );
    let wrong = (
        "x-api-key",
        format!("{}x", &world.key[..world.key.len() - 1]),
    );
    assert_eq!(
        check(
            &world,
            "[{api_key: []}, {bearer: []}]",
            &[wrong, bearer("")]
        )
        .await,
        Err(Rejection::InvalidApiKey)
    );
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one table of cases, each a sentence
async fn scopes_are_checked_per_scheme_and_identities_are_never_merged_across_alternatives() {
    let world = world();
    let key = ("x-api-key", world.key.clone());
    // Both credentials in one alternative: the token itself must carry `predict`; the
    // key's `predict` does not lend it.
    assert!(matches!(
        check(
            &world,
            "[{bearer: [predict], api_key: []}]",
            &[bearer("read"), key.clone()]
        )
        .await,
        Err(Rejection::InsufficientScope { bearer: true, .. })
    ));
    // Two alternatives each lacking its scope: 403, not a union of the two.
    assert!(matches!(
        check(
            &world,
            "[{bearer: [predict]}, {api_key: [admin]}]",
            &[bearer("read"), key.clone()]
        )
        .await,
        Err(Rejection::InsufficientScope { .. })
    ));
    // The second alternative passes on its own when the first lacks its scope.
    let principal = check(
        &world,
        "[{bearer: [predict]}, {api_key: [predict]}]",
        &[bearer("read"), key.clone()],
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(principal.key_id.as_deref(), Some("ops"));
    assert_eq!(
        principal.subject.as_deref(),
        Some("team"),
        "nothing taken from the token"
    );
    assert_eq!(principal.scopes[..], ["predict"]);
    // The first alternative that passes wins; the other credential is not merged in.
    let principal = check(
        &world,
        "[{bearer: []}, {api_key: []}]",
        &[bearer("read"), key.clone()],
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (principal.subject.as_deref(), principal.key_id.as_deref()),
        (Some("alice"), None)
    );
    // Within one alternative (AND), the identities join: the token's subject, the key's id.
    let principal = check(
        &world,
        "[{bearer: [], api_key: []}]",
        &[bearer("read"), key],
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (principal.subject.as_deref(), principal.key_id.as_deref()),
        (Some("alice"), Some("ops"))
    );
    assert_eq!(principal.scopes[..], ["read", "predict"]);
}

#[tokio::test]
async fn a_public_requirement_needs_nothing_and_two_authorization_headers_are_refused() {
    let world = world();
    assert_eq!(check(&world, "[]", &[]).await, Ok(None));
    assert_eq!(
        check(&world, "[{bearer: []}]", &[bearer(""), bearer("")]).await,
        Err(Rejection::InvalidToken)
    );
}
