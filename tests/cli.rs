//! The command line's reports: `moat check` gathers every problem of every file at once.

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
