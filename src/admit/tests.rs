//! Pipeline tests without sockets: requests built in memory, run through `admit` against a
//! real snapshot (the model fixture spec, a key store with real argon2id hashes, an HS256
//! secret), one sentence per row.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

use super::{Verdict, admit};
use crate::auth::api_key::hash_key;
use crate::auth::keystore::new_key;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::trail::Trail;

const SECRET: &str = "0123456789abcdef0123456789abcdef-admit";
const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const PREDICT: &str = "/v1/models/iris:predict";
const BODY: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;

struct World {
    snapshot: Snapshot,
    key: String,
    limited: String,
    list_only: String,
    _dir: tempfile::TempDir,
}

/// The model spec with `predict` needing scope `predict` (token or key), `health` public,
/// `upload` in shadow mode; keys: one good, one rate-limited (burst 1, 5 a day), one
/// list-only.
fn world(extra_policy: &str) -> World {
    world_with(extra_policy, "")
}

/// `key_place`: extra fields of the api_key scheme (`, query: api_key`).
fn world_with(extra_policy: &str, key_place: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let (key, limited, list_only) = (new_key("ops"), new_key("slow"), new_key("lister"));
    let hash = |k: &str| hash_key(k, None).unwrap();
    std::fs::write(
        &store,
        format!(
            "keys:\n  - id: ops\n    hash: \"{}\"\n    scopes: [predict]\n  - id: slow\n    hash: \"{}\"\n    scopes: [predict]\n    rate_limit: {{per_second: 1, burst: 1}}\n    quota: {{requests: 5, per: day}}\n  - id: lister\n    hash: \"{}\"\n    scopes: [predict]\n    operations: [list_models]\n",
            hash(&key),
            hash(&limited),
            hash(&list_only)
        ),
    )
    .unwrap();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/model.yaml");
    let text = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: {{url: http://127.0.0.1:9}}\nlimits: {{max_body_bytes: 4096}}\nopenapi: {{file: {spec}}}\nauth:\n  schemes:\n    bearer: {{type: jwt, issuer: iss, audience: aud, algorithms: [HS256], secret: {SECRET}}}\n    api_key: {{type: api_key, store: {}{key_place}}}\npolicy:\n  allow_api_key_in_query_or_cookie: true\n  default: [{{bearer: []}}, {{api_key: []}}]\n  operations:\n    predict: [{{bearer: [predict]}}, {{api_key: [predict]}}]\n    health: []\n    upload: {{security: [], mode: shadow}}\n{extra_policy}",
        store.display()
    );
    let config = Config::parse(&text, &|_| None).unwrap_or_else(|p| panic!("{p:?}"));
    let snapshot = Snapshot::from_config(config, &Arc::new(Metrics::new()), None)
        .unwrap_or_else(|p| panic!("{p:?}"));
    World {
        snapshot,
        key,
        limited,
        list_only,
        _dir: dir,
    }
}

fn token(scope: &str, exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"iss": "iss", "aud": "aud", "sub": "alice", "exp": now + exp_offset, "scope": scope});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Runs one request through `admit`: its code (`admitted`, `options`, or the refusal's).
async fn run(
    world: &World,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (String, Trail, Option<super::Admitted<Full<Bytes>>>) {
    let mut request = Request::builder().method(method).uri(target);
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header("host", "moat.test");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if !body.is_empty() {
        request = request.header("content-length", body.len());
    }
    let (parts, body) = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
        .into_parts();
    let mut trail = Trail::default();
    let verdict = admit(
        &world.snapshot.admission(),
        parts,
        body,
        CLIENT,
        "req-test",
        &mut trail,
    )
    .await;
    match verdict {
        Ok(Verdict::Forward(admitted)) => ("admitted".to_owned(), trail, Some(admitted)),
        Ok(Verdict::Options(_)) => ("options".to_owned(), trail, None),
        Ok(Verdict::Health(_)) => ("health".to_owned(), trail, None),
        Err(rejection) => (rejection.code().to_owned(), trail, None),
    }
}

/// (sentence, method, target, headers, body, expected code).
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    &'a str,
    &'a str,
);

const JSON: (&str, &str) = ("content-type", "application/json");
const TENANT: (&str, &str) = ("x-tenant", "t-1");

#[tokio::test]
#[allow(clippy::too_many_lines)] // one row per case
async fn each_stage_refuses_what_it_must_and_admits_the_rest() {
    let world = world("");
    let bearer = |scope: &str, exp: i64| format!("Bearer {}", token(scope, exp));
    let (good, no_scope, expired) = (
        bearer("predict", 600),
        bearer("read", 600),
        bearer("predict", -3600),
    );
    let key = world.key.as_str();
    let malformed = "moat_ops_short";
    let large = "x".repeat(5000);
    let cases: Vec<Case<'_>> = vec![
        (
            "a dot segment is refused before routing",
            "GET",
            "/v1/../health",
            vec![],
            "",
            "invalid_path",
        ),
        (
            "an undeclared path is not found",
            "GET",
            "/docs",
            vec![],
            "",
            "route_not_found",
        ),
        (
            "a declared path with another method is 405",
            "DELETE",
            "/health",
            vec![],
            "",
            "method_not_allowed",
        ),
        (
            "OPTIONS on a declared path is answered by moat",
            "OPTIONS",
            "/health",
            vec![],
            "",
            "options",
        ),
        (
            "a public operation needs no credentials",
            "GET",
            "/health",
            vec![],
            "",
            "admitted",
        ),
        (
            "no credentials for a protected operation",
            "POST",
            PREDICT,
            vec![JSON, TENANT],
            BODY,
            "credentials_missing",
        ),
        (
            "a garbled bearer token is final",
            "POST",
            PREDICT,
            vec![
                ("authorization", "Bearer x.y.z"),
                ("x-api-key", key),
                JSON,
                TENANT,
            ],
            BODY,
            "invalid_token",
        ),
        (
            "an expired token",
            "POST",
            PREDICT,
            vec![("authorization", &expired), JSON, TENANT],
            BODY,
            "token_expired",
        ),
        (
            "a valid token without the scope",
            "POST",
            PREDICT,
            vec![("authorization", &no_scope), JSON, TENANT],
            BODY,
            "insufficient_scope",
        ),
        (
            "a valid token with the scope",
            "POST",
            PREDICT,
            vec![("authorization", &good), JSON, TENANT],
            BODY,
            "admitted",
        ),
        (
            "a malformed key is refused unhashed",
            "POST",
            PREDICT,
            vec![("x-api-key", malformed), JSON, TENANT],
            BODY,
            "invalid_api_key",
        ),
        (
            "a valid key with the scope",
            "POST",
            PREDICT,
            vec![("x-api-key", key), JSON, TENANT],
            BODY,
            "admitted",
        ),
        (
            "a key outside its operations allowlist",
            "POST",
            PREDICT,
            vec![("x-api-key", world.list_only.as_str()), JSON, TENANT],
            BODY,
            "operation_not_allowed",
        ),
        (
            "a header parameter that fails its pattern",
            "POST",
            PREDICT,
            vec![("x-api-key", key), JSON, ("x-tenant", "nope")],
            BODY,
            "invalid_parameters",
        ),
        (
            "a query parameter out of range",
            "GET",
            "/v1/models?limit=0",
            vec![("x-api-key", key)],
            "",
            "invalid_parameters",
        ),
        (
            "a body of another media type",
            "POST",
            PREDICT,
            vec![("x-api-key", key), ("content-type", "text/plain"), TENANT],
            BODY,
            "unsupported_media_type",
        ),
        (
            "JSON with a duplicate key",
            "POST",
            PREDICT,
            vec![("x-api-key", key), JSON, TENANT],
            r#"{"instances": [], "instances": []}"#,
            "invalid_json",
        ),
        (
            "a body that fails its schema",
            "POST",
            PREDICT,
            vec![("x-api-key", key), JSON, TENANT],
            r#"{"instances": "x"}"#,
            "body_schema",
        ),
        (
            "a required body that is missing",
            "POST",
            PREDICT,
            vec![("x-api-key", key), JSON, TENANT],
            "",
            "body_required",
        ),
        (
            "a body over max_body_bytes",
            "POST",
            PREDICT,
            vec![("x-api-key", key), JSON, TENANT],
            &large,
            "body_too_large",
        ),
        (
            "a body where the operation takes none",
            "GET",
            "/health",
            vec![],
            "{}",
            "unexpected_body",
        ),
        (
            "shadow mode lets a bad body through",
            "PUT",
            "/upload",
            vec![("content-type", "text/plain")],
            "x",
            "admitted",
        ),
    ];
    for (sentence, method, target, headers, body, expected) in cases {
        let (code, _, _) = run(&world, method, target, &headers, body).await;
        assert_eq!(code, expected, "{sentence}");
    }
}

#[tokio::test]
async fn the_trail_and_the_admitted_request_say_what_was_decided() {
    let world = world("");
    let (code, trail, admitted) = run(
        &world,
        "POST",
        PREDICT,
        &[("x-api-key", &world.key), JSON, TENANT],
        BODY,
    )
    .await;
    assert_eq!(code, "admitted");
    assert_eq!(trail.operation.as_deref(), Some("predict"));
    assert_eq!(
        trail.route.as_deref(),
        Some("/v1/models/{model_name}:predict")
    );
    assert_eq!(trail.key_id.as_deref(), Some("ops"));
    assert!(
        trail.notes().is_empty(),
        "notes are built only when explaining"
    );
    let admitted = admitted.unwrap();
    assert_eq!(
        admitted.principal().and_then(|p| p.key_id.as_deref()),
        Some("ops")
    );

    // A key in the query leaves the URI the request is forwarded with.
    let query_world = world_with("", ", query: api_key");
    let target = format!("/v1/models?api_key={}&limit=5", query_world.key);
    let (code, _, admitted) = run(&query_world, "GET", &target, &[], "").await;
    assert_eq!(code, "admitted");
    assert_eq!(admitted.unwrap().uri().query(), Some("limit=5"));

    // Shadow mode: forwarded, and the failure is on the trail.
    let (_, trail, _) = run(
        &world,
        "PUT",
        "/upload",
        &[("content-type", "text/plain")],
        "x",
    )
    .await;
    assert_eq!(
        trail.shadowed.iter().map(|r| r.code()).collect::<Vec<_>>(),
        ["unsupported_media_type"]
    );
}

#[tokio::test]
async fn a_403_names_the_verified_caller_it_refused() {
    let world = world("");
    let token = format!("Bearer {}", token("models:read", 600));
    let (code, trail, _) = run(
        &world,
        "POST",
        PREDICT,
        &[("authorization", &token), JSON, TENANT],
        BODY,
    )
    .await;
    assert_eq!(code, "insufficient_scope");
    assert_eq!(trail.subject.as_deref(), Some("alice"));
    let (code, trail, _) = run(
        &world,
        "POST",
        PREDICT,
        &[("x-api-key", &world.list_only), JSON, TENANT],
        BODY,
    )
    .await;
    assert_eq!(code, "operation_not_allowed");
    assert_eq!(trail.key_id.as_deref(), Some("lister"));
    // A credential that fails verification names nobody: its claims are not believed.
    let (code, trail, _) = run(
        &world,
        "POST",
        PREDICT,
        &[("authorization", "Bearer not.a.token"), JSON, TENANT],
        BODY,
    )
    .await;
    assert_eq!(code, "invalid_token");
    assert!(trail.subject.is_none() && trail.key_id.is_none());
}

#[tokio::test]
async fn a_keys_rate_limit_is_spent_across_requests() {
    let world = world("");
    let headers = [("x-api-key", world.limited.as_str()), JSON, TENANT];
    let (verdict, trail, _) = run(&world, "POST", PREDICT, &headers, BODY).await;
    assert_eq!(verdict, "admitted");
    // Its quota counted the request, for the RateLimit-* fields of the response.
    let quota = trail.quota.unwrap();
    assert_eq!((quota.limit, quota.remaining, quota.window), (5, 4, 86_400));
    // Over the bucket: refused, and the quota is not spent by it.
    assert_eq!(
        run(&world, "POST", PREDICT, &headers, BODY).await.0,
        "rate_limited"
    );
    // Another key is not affected.
    assert_eq!(
        run(
            &world,
            "POST",
            PREDICT,
            &[("x-api-key", &world.key), JSON, TENANT],
            BODY
        )
        .await
        .0,
        "admitted"
    );
}

#[tokio::test]
async fn the_client_limit_is_taken_before_credentials() {
    let world = world("  client_rate_limit: {per_second: 1, burst: 1}\n");
    assert_eq!(run(&world, "GET", "/health", &[], "").await.0, "admitted");
    // Over the client limit, even a request with a garbled token never reaches stage 3.
    let garbled = [("authorization", "Bearer x.y.z"), JSON, TENANT];
    assert_eq!(
        run(&world, "POST", PREDICT, &garbled, BODY).await.0,
        "rate_limited"
    );
}
