//! The command line's reports: `moat check` gathers every problem of every file at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use support::{config, run_moat, text};

#[test]
fn check_reports_every_problem_in_every_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.1.0\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get:\n      responses: {'200': {description: ok}}\n      parameters:\n        - {name: q, in: query, schema: {type: strin}}\n        - {name: r, in: query, schema: {type: string, pattern: '(?<=a)b'}}\n",
    )
    .unwrap();
    let path = dir.path().join("moat.yaml");
    let extra = format!(
        "openapi:\n  file: {}\nauth:\n  schemes:\n    bearer:\n      type: jwt\n      issuer: x\n      audience: y\n      algorithms: [HS256]\n      secret: short\n    api_key:\n      type: api_key\n      store: {}\n",
        spec.display(),
        dir.path().join("missing-keys.yaml").display()
    );
    std::fs::write(&path, config("http://127.0.0.1:1", &extra)).unwrap();
    let output = run_moat(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = text(&output);
    for expected in [
        "4 problems",
        "spec.yaml#/paths/~1a/get/parameters/0/schema",
        "spec.yaml#/paths/~1a/get/parameters/1/schema",
        "auth.schemes.api_key: ",
        "missing-keys.yaml",
        "auth.schemes.bearer: `secret` must be at least 32 bytes",
    ] {
        assert!(
            report.contains(expected),
            "`{expected}` missing from:\n{report}"
        );
    }
}

#[test]
fn check_reports_every_unset_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    std::fs::write(
        &path,
        "listen: ${MOAT_T_ONE}\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: ${MOAT_T_TWO}\n",
    )
    .unwrap();
    let output = run_moat(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = text(&output);
    assert!(
        report.contains("line 1: environment variable `MOAT_T_ONE`"),
        "{report}"
    );
    assert!(
        report.contains("line 4: environment variable `MOAT_T_TWO`"),
        "{report}"
    );
}

/// `moat explain` against the model spec, with a bearer (HS256) and an API key scheme.
struct Explain {
    dir: tempfile::TempDir,
    key: String,
}

const HMAC: &str = "explain-secret-0123456789abcdef0123456789";

impl Explain {
    fn new() -> Explain {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("keys.yaml");
        let key = support::moat_keys(&store, &["new", "--id", "ops", "--scopes", "models:read"]);
        let extra = format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    bearer: {{type: jwt, issuer: iss, audience: aud, algorithms: [HS256], secret: {HMAC}}}\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{bearer: []}}, {{api_key: []}}]\n  operations:\n    predict: [{{bearer: [predict]}}, {{api_key: [predict]}}]\n    health: []\n",
            support::fixture("model.yaml"),
            store.display()
        );
        // Nothing listens upstream: explain must never need it.
        let upstream = format!("http://{}", support::closed_port());
        std::fs::write(dir.path().join("moat.yaml"), config(&upstream, &extra)).unwrap();
        Explain { dir, key }
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let config = self.dir.path().join("moat.yaml");
        let mut all = vec!["explain", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let output = run_moat(&all, &[]);
        (output.status.code(), text(&output))
    }
}

fn token(scope: &str) -> String {
    let claims = serde_json::json!({"iss": "iss", "aud": "aud", "sub": "alice", "exp": support::now() + 600, "scope": scope});
    support::hs256(HMAC, &claims)
}

const PREDICT: &str = "/v1/models/iris:predict";
const BODY: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;

#[test]
fn explain_walks_every_stage_of_an_accepted_request() {
    let explain = Explain::new();
    let bearer = format!("Authorization: Bearer {}", token("predict"));
    let (code, report) = explain.run(&[
        "POST",
        PREDICT,
        "-H",
        &bearer,
        "-H",
        "X-Tenant: t-1",
        "--data",
        BODY,
    ]);
    assert_eq!(code, Some(0), "{report}");
    for expected in [
        "1 frame          pass  canonical path /v1/models/iris:predict",
        "2 route          pass  operation `predict`",
        "bearer: valid token, subject `alice`, scopes [predict]",
        "6 validate       pass",
        "would be forwarded",
    ] {
        assert!(report.contains(expected), "`{expected}` missing:\n{report}");
    }
    assert!(
        !report.contains(&token("predict")[20..]),
        "the token was echoed"
    );
    let (code, report) = explain.run(&["GET", "/health"]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("public: no credentials required"),
        "{report}"
    );
}

#[test]
fn explain_says_why_each_kind_of_request_is_refused() {
    let explain = Explain::new();
    let wrong_key = format!("X-API-Key: moat_ops_{}", "A".repeat(43));
    let good_key = format!("X-API-Key: {}", explain.key);
    let no_scope = format!("Authorization: Bearer {}", token("models:read"));
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            vec!["GET", "/v1/../v1/models"],
            &["1 frame          FAIL  400 invalid_path"],
        ),
        (
            vec!["GET", "/docs"],
            &["2 route          FAIL  404 route_not_found"],
        ),
        (
            vec!["POST", PREDICT, "--data", BODY],
            &[
                "3 authenticate   FAIL  401 credentials_missing",
                "bearer: no bearer token; next alternative",
                "api_key: no API key; next alternative",
            ],
        ),
        (
            vec!["POST", PREDICT, "-H", &wrong_key, "--data", BODY],
            &[
                "3 authenticate   FAIL  401 invalid_api_key",
                "api_key: key refused: wrong secret",
            ],
        ),
        (
            vec!["POST", PREDICT, "-H", &good_key, "--data", BODY],
            &[
                "4 authorize      FAIL  403 insufficient_scope",
                "api_key: missing scopes [predict]",
            ],
        ),
        (
            vec!["POST", PREDICT, "-H", &no_scope, "--data", BODY],
            &[
                "4 authorize      FAIL  403 insufficient_scope",
                "bearer: missing scopes [predict]",
            ],
        ),
        (
            vec![
                "POST",
                PREDICT,
                "-H",
                "Authorization: Bearer not.a.token",
                "--data",
                BODY,
            ],
            &[
                "3 authenticate   FAIL  401 invalid_token",
                "bearer: token refused",
            ],
        ),
    ];
    for (args, expected) in cases {
        let (code, report) = explain.run(&args);
        assert_eq!(code, Some(1), "{args:?}\n{report}");
        for line in expected {
            assert!(
                report.contains(line),
                "{args:?}: `{line}` missing:\n{report}"
            );
        }
        assert!(report.contains("verdict: refused"), "{report}");
        assert!(!report.contains(&"A".repeat(43)) && !report.contains(&explain.key));
    }
    // Validation failures each with their JSON pointer.
    let bearer = format!("Authorization: Bearer {}", token("predict"));
    let (code, report) = explain.run(&[
        "POST",
        PREDICT,
        "-H",
        &bearer,
        "-H",
        "X-Tenant: t-1",
        "--data",
        r#"{"instances": [[5.1, 3.5, 1.4]], "surprise": true}"#,
    ]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("6 validate       FAIL  400 body_schema"),
        "{report}"
    );
    assert!(report.contains("body /instances/0:"), "{report}");
    // A request explain cannot even build is a usage error.
    let (code, _) = explain.run(&["GET", "/x", "-H", "no colon"]);
    assert_eq!(code, Some(2));
}

/// A key in the query is removed before validation, in explain as in serve: with
/// `reject_unknown_query` it must not count as an unknown parameter.
#[test]
fn explain_strips_a_query_key_before_validating_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = support::moat_keys(&store, &["new", "--id", "ops"]);
    let extra = format!(
        "openapi:\n  file: {}\n  reject_unknown_query: true\nauth:\n  schemes:\n    api_key: {{type: api_key, query: api_key, store: {}}}\npolicy:\n  default: [{{api_key: []}}]\n  allow_api_key_in_query_or_cookie: true\n",
        support::fixture("model.yaml"),
        store.display()
    );
    let path = dir.path().join("moat.yaml");
    let upstream = format!("http://{}", support::closed_port());
    std::fs::write(&path, config(&upstream, &extra)).unwrap();
    let target = format!("/v1/models?api_key={key}");
    let output = run_moat(
        &[
            "explain",
            "--config",
            path.to_str().unwrap(),
            "GET",
            &target,
        ],
        &[],
    );
    let report = text(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(report.contains("api_key: valid key `ops`"), "{report}");
    assert!(!report.contains(&key), "the key was echoed:\n{report}");
    let (code, report) = {
        let output = run_moat(
            &[
                "explain",
                "--config",
                path.to_str().unwrap(),
                "GET",
                &format!("{target}&surprise=1"),
            ],
            &[],
        );
        (output.status.code(), text(&output))
    };
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("query /surprise") || report.contains("surprise"),
        "{report}"
    );
}
