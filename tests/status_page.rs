//! The admin listener's status page, in a real browser (headless Chromium over WebDriver):
//! after accepted, refused and shadowed requests it shows the counts, the refusals by code
//! and the last ones with their callers, the would-be refusals of shadow mode apart, the
//! loaded snapshot and a failed reload — it refreshes by itself, under its own strict CSP,
//! and no credential, body or query value ever reaches it. And every metric the Grafana
//! dashboard in `examples/grafana/` queries exists on `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use support::browser::Browser;
use support::{Moat, Upstream, admin_get, config, fixture, get, moat_keys, post_json, send};

const SECRET: &str = "status-page-hmac-secret-0123456789abcdef";
/// What a client sent that must never be shown: in a body, in a query.
const BODY_SECRET: &str = "body-value-4f8a2c";
const QUERY_SECRET: &str = "query-value-9d1e7b";

struct World {
    upstream: Upstream,
    moat: Moat,
    scorer: String,
    reader: String,
    _dir: tempfile::TempDir,
}

/// The model fixture behind moat: `predict` needs scope `predict` (token or key), `health`
/// is public, `upload` runs in shadow mode; keys `scorer` (predict) and `reader` (none).
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let scorer = moat_keys(&store, &["new", "--id", "scorer", "--scopes", "predict"]);
    let reader = moat_keys(&store, &["new", "--id", "reader"]);
    let upstream = Upstream::start();
    let text = config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nauth:\n  schemes:\n    bearer: {{type: jwt, issuer: iss, audience: aud, algorithms: [HS256], secret: {SECRET}}}\n    api_key: {{type: api_key, store: {}}}\npolicy:\n  default: [{{bearer: []}}, {{api_key: []}}]\n  operations:\n    predict: [{{bearer: [predict]}}, {{api_key: [predict]}}]\n    health: []\n    upload: {{security: [], mode: shadow}}\n",
            fixture("model.yaml"),
            store.display()
        ),
    );
    let config_path = dir.path().join("moat.yaml");
    std::fs::write(&config_path, text).unwrap();
    let moat = Moat::start_at(&config_path, &[]);
    World {
        upstream,
        moat,
        scorer,
        reader,
        _dir: dir,
    }
}

fn token(sub: &str, scope: &str) -> String {
    let now = support::now();
    support::hs256(
        SECRET,
        &json!({"iss": "iss", "aud": "aud", "sub": sub, "scope": scope, "exp": now + 600}),
    )
}

const PREDICT: &str = "/v1/models/iris:predict";
const ROW: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;

fn predict(world: &World, headers: &[&str], body: &str) -> u16 {
    let mut all = vec!["X-Tenant: t-1"];
    all.extend_from_slice(headers);
    post_json(world.moat.addr, PREDICT, &all, body).status
}

/// One of every kind: 3 accepted, 7 refused at four stages, 1 forwarded in shadow mode.
fn traffic(world: &World) {
    let key = |k: &str| format!("X-API-Key: {k}");
    let bearer = |t: String| format!("Authorization: Bearer {t}");
    for _ in 0..3 {
        assert_eq!(predict(world, &[&key(&world.scorer)], ROW), 200);
    }
    let wrong_key = format!("moat_scorer_{}", "A".repeat(43));
    let cases: [(u16, Vec<String>, String); 5] = [
        (401, vec![], ROW.to_owned()),
        (401, vec![key(&wrong_key)], ROW.to_owned()),
        (403, vec![key(&world.reader)], ROW.to_owned()),
        (
            403,
            vec![bearer(token("carol", "models:read"))],
            ROW.to_owned(),
        ),
        (
            400,
            vec![
                key(&world.scorer),
                "X-Request-Id: trace-status-1".to_owned(),
            ],
            format!(r#"{{"instances": [[1, 2, 3]], "note": "{BODY_SECRET}"}}"#),
        ),
    ];
    for (status, headers, body) in cases {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        assert_eq!(predict(world, &headers, &body), status, "{headers:?}");
    }
    let target = format!("/v1/models?limit={QUERY_SECRET}");
    let listed = get(world.moat.addr, &target, &[&key(&world.scorer)]);
    assert_eq!(listed.status, 400);
    assert_eq!(get(world.moat.addr, "/nowhere", &[]).status, 404);
    let shadowed = send(
        world.moat.addr,
        "PUT",
        "/upload",
        &["Content-Type: text/plain"],
        b"x",
    );
    assert_eq!(shadowed.status, 200, "shadow mode forwards");
}

/// The rows of table `id` as arrays of cell texts.
const ROWS: &str = "return Array.from(document.querySelectorAll('#ID tbody tr'))
    .map(tr => Array.from(tr.cells).map(td => td.textContent));";

fn rows(browser: &Browser, id: &str) -> Vec<Vec<String>> {
    serde_json::from_value(browser.eval(&ROWS.replace("ID", id))).unwrap()
}

fn text_of(browser: &Browser, id: &str) -> String {
    let script = format!("return document.getElementById('{id}').textContent;");
    browser.eval(&script).as_str().unwrap().to_owned()
}

fn refreshes(browser: &Browser) -> u64 {
    browser
        .eval("return Number(document.getElementById('updated').dataset.refreshes);")
        .as_u64()
        .unwrap()
}

#[test]
fn the_status_page_shows_what_was_refused_and_why_and_refreshes_itself() {
    let Some(browser) = Browser::start(1280, 1700) else {
        return;
    };
    let world = world();
    traffic(&world);

    let page = admin_get(world.moat.admin, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"));
    // A page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) is refused;
    // Prometheus, scraping by name, is not.
    for path in ["/", "/status.json"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: attacker.example:9090\r\nConnection: close\r\n\r\n"
        );
        let rebound = support::raw(world.moat.admin, request.as_bytes());
        assert_eq!(rebound.status, 403, "{path}");
        assert!(String::from_utf8_lossy(&rebound.body).contains("DNS rebinding"));
    }
    assert_eq!(get(world.moat.admin, "/metrics", &[]).status, 200);

    browser.open(&format!("http://{}/", world.moat.admin));
    assert!(
        browser.wait_until(
            "return Number(document.getElementById('updated').dataset.refreshes) >= 1;"
        )
    );
    // The inline style applied under the policy too (its hash is allowed, nothing else is).
    let header =
        browser.eval("return getComputedStyle(document.querySelector('header')).backgroundColor;");
    assert_eq!(header, "rgb(16, 24, 40)");

    assert_eq!(text_of(&browser, "total-requests"), "11");
    assert_eq!(text_of(&browser, "total-refused"), "7");
    assert_eq!(text_of(&browser, "total-shadowed"), "1");
    assert_eq!(text_of(&browser, "upstream-state"), "reachable");

    // The chart has this minute's bars: requests, refusals and the shadowed one.
    let bars = browser.eval(
        "return ['req', 'ref', 'sha'].map(c => document.querySelectorAll('#chart rect.' + c).length);",
    );
    assert_eq!(bars, json!([1, 1, 1]), "one 10-second bar of each");

    // Operations: requests, refused, shadowed.
    let operations = rows(&browser, "operations");
    let counts = |name: &str| {
        let row = operations
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("{name} in {operations:?}"));
        (row[1].clone(), row[2].clone(), row[3].clone())
    };
    assert_eq!(counts("predict"), ("8".into(), "5".into(), "0".into()));
    assert_eq!(counts("list_models"), ("1".into(), "1".into(), "0".into()));
    assert_eq!(counts("unrouted"), ("1".into(), "1".into(), "0".into()));
    assert_eq!(counts("upload"), ("1".into(), "0".into(), "1".into()));

    // Refusals by stage and code: [stage, code, status, count].
    let codes: BTreeSet<Vec<String>> = rows(&browser, "refusal-codes").into_iter().collect();
    let code = |stage: &str, code: &str, status: &str, count: &str| {
        vec![stage.into(), code.into(), status.into(), count.into()]
    };
    let expected: BTreeSet<Vec<String>> = [
        code("authenticate", "credentials_missing", "401", "1"),
        code("authenticate", "invalid_api_key", "401", "1"),
        code("authorize", "insufficient_scope", "403", "2"),
        code("validate", "body_schema", "400", "1"),
        code("validate", "invalid_parameters", "400", "1"),
        code("route", "route_not_found", "404", "1"),
    ]
    .into();
    assert_eq!(codes, expected);

    // The last refusals, newest first: [time, request id, operation, status, stage, code,
    // caller]; a 403 names the verified caller it refused, a failed credential nobody.
    let recent = rows(&browser, "refusals");
    assert_eq!(recent.len(), 7);
    let listed: Vec<(&str, &str, &str)> = recent
        .iter()
        .map(|r| (r[2].as_str(), r[5].as_str(), r[6].as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("unrouted", "route_not_found", ""),
            ("list_models", "invalid_parameters", "key scorer"),
            ("predict", "body_schema", "key scorer"),
            ("predict", "insufficient_scope", "sub carol"),
            ("predict", "insufficient_scope", "key reader"),
            ("predict", "invalid_api_key", ""),
            ("predict", "credentials_missing", ""),
        ]
    );
    assert_eq!(recent[2][1], "trace-status-1", "the client's request id");
    // Why a validation refusal was refused: its pointers and messages, never the values.
    assert!(recent[1][7].starts_with("/limit: "), "{:?}", recent[1]);
    assert!(recent[2][7].contains("/instances/0: "), "{:?}", recent[2]);
    assert!(recent[2][7].contains("/note: "), "{:?}", recent[2]);
    assert_eq!(recent[3][7], "", "a 403 has no field errors");
    let shadow = rows(&browser, "shadow-refusals");
    assert_eq!(shadow.len(), 1);
    assert_eq!(
        (&shadow[0][2][..], &shadow[0][3][..], &shadow[0][5][..]),
        ("upload", "415", "unsupported_media_type")
    );
    assert_eq!(
        rows(&browser, "shadow-codes"),
        [code("validate", "unsupported_media_type", "415", "1")]
    );

    // The snapshot: generation, spec, key store.
    let snapshot = text_of(&browser, "snapshot");
    for part in [
        "generation0 (serving since",
        "policy modeenforce",
        "last reloadnone since start",
        "spectest model 1 (OpenAPI 3.0.3, 6 operations)",
        "key store api_keydigest ",
        "2 keys",
        "TLSoff (plain HTTP)",
    ] {
        assert!(snapshot.contains(part), "{part:?} in {snapshot:?}");
    }

    // No secret anywhere in the page or its data.
    let html = browser
        .eval("return document.documentElement.outerHTML;")
        .as_str()
        .unwrap()
        .to_owned();
    let json = String::from_utf8(admin_get(world.moat.admin, "/status.json").body).unwrap();
    let jwt = token("carol", "models:read");
    let jwt_signature = jwt.rsplit('.').next().unwrap();
    for secret in [
        world.scorer.as_str(),
        world.reader.as_str(),
        &world.scorer["moat_scorer_".len()..],
        SECRET,
        jwt_signature,
        BODY_SECRET,
        QUERY_SECRET,
    ] {
        assert!(!html.contains(secret), "the page shows a secret");
        assert!(!json.contains(secret), "status.json holds a secret");
    }

    // It refreshes by itself: two more refusals appear without a reload of the page.
    let before = refreshes(&browser);
    for _ in 0..2 {
        assert_eq!(predict(&world, &[], ROW), 401);
    }
    assert!(
        browser.wait_until("return document.getElementById('total-refused').textContent === '9';")
    );
    assert!(refreshes(&browser) > before);
    let recent = rows(&browser, "refusals");
    assert_eq!(recent.len(), 9);
    assert_eq!(recent[0][5], "credentials_missing", "newest first");

    // At 700 px nothing runs off the page (a wide table scrolls in its own box); on a wide
    // screen the page is centred.
    browser.resize(700, 1000);
    let overflow =
        "const root = document.documentElement; return root.scrollWidth - root.clientWidth;";
    assert!(browser.wait_until("return window.innerWidth <= 700;"));
    assert_eq!(
        browser.eval(overflow),
        json!(0),
        "the page is wider than 700 px"
    );
    browser.resize(1900, 1000);
    assert!(browser.wait_until("return window.innerWidth > 1600;"));
    let margins = browser.eval(
        "const r = document.querySelector('main').getBoundingClientRect(); \
         return [Math.round(r.left), Math.round(window.innerWidth - r.right)];",
    );
    let (left, right) = (margins[0].as_i64().unwrap(), margins[1].as_i64().unwrap());
    assert!(
        left > 100 && (left - right).abs() <= 20,
        "centred: {margins}"
    );

    // A reload that fails is shown with its problem; the old configuration keeps serving.
    let original = std::fs::read_to_string(&world.moat.config_path).unwrap();
    std::fs::write(&world.moat.config_path, format!("{original}listn: oops\n")).unwrap();
    assert!(
        browser.wait_until(
            "return document.getElementById('snapshot').textContent.includes('last failed reload');"
        ),
        "{}",
        world.moat.lines().join("\n")
    );
    let snapshot = text_of(&browser, "snapshot");
    assert!(snapshot.contains("last reloadfailure at"), "{snapshot}");
    assert!(snapshot.contains("listn"), "{snapshot}");
    assert_eq!(
        predict(&world, &[&format!("X-API-Key: {}", world.scorer)], ROW),
        200
    );
    std::fs::write(&world.moat.config_path, original).unwrap();
    assert!(browser.wait_until(
        "return document.getElementById('snapshot').textContent.includes('last reloadsuccess');"
    ));
    assert!(text_of(&browser, "snapshot").contains("generation1"));

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&target, &png).unwrap();
    // `MOAT_UPDATE_SCREENSHOT=1 cargo test --test status_page` refreshes the README's picture.
    if std::env::var_os("MOAT_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::write(docs, &png).unwrap();
    }
    assert!(world.upstream.count() >= 5);
}

/// Every `moat_…` series name a dashboard query reads.
fn queried_metrics(dashboard: &Value) -> BTreeSet<String> {
    let pattern = regex::Regex::new(r"\bmoat_[a-z0-9_]+").unwrap();
    let mut names = BTreeSet::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    names.extend(pattern.find_iter(expr).map(|m| m.as_str().to_owned()));
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

#[test]
fn every_metric_the_grafana_dashboard_queries_exists_on_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grafana/moat.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queried = queried_metrics(&dashboard);
    // What the issue asks the dashboard to show.
    for needed in [
        "moat_requests_total",
        "moat_operation_duration_seconds_bucket",
        "moat_rejections_total",
        "moat_shadow_rejections_total",
        "moat_key_verifications_total",
        "moat_config_reloads_total",
        "moat_upstream_duration_seconds_bucket",
    ] {
        assert!(
            queried.contains(needed),
            "the dashboard does not show {needed}"
        );
    }

    // Traffic that makes every series exist: accepted, refused, shadowed, a key checked,
    // a reload.
    let world = world();
    traffic(&world);
    world.moat.signal("HUP");
    assert!(support::eventually(|| {
        support::metric(&world.moat, "moat_config_reloads_total") > 0
    }));
    let exposition = String::from_utf8(get(world.moat.admin, "/metrics", &[]).body).unwrap();
    let exposed: BTreeSet<&str> = exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !exposed.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried by examples/grafana/moat.json but not on /metrics: {missing:?}"
    );
}

#[test]
fn the_compose_monitoring_scrapes_both_admin_listeners_and_provisions_the_dashboard() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let yaml = |path: &str| -> Value { serde_saphyr::from_str(&read(path)).unwrap() };
    let config = yaml("config/moat.yaml");
    let admin = config["admin_listen"].as_str().unwrap();
    assert!(
        admin.starts_with("0.0.0.0:"),
        "Prometheus reaches it over the project network"
    );
    let port = admin.rsplit(':').next().unwrap();
    let prometheus = yaml("monitoring/prometheus.yml");
    let targets: Vec<&str> = prometheus["scrape_configs"][0]["static_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["targets"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [format!("model:{port}"), format!("model-b:{port}")]
    );
    let provider = yaml("monitoring/grafana/dashboards/moat.yml");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let compose = read("compose.yaml");
    assert!(compose.contains(&format!("../grafana:{path}:ro")));
    assert!(
        compose.contains(&format!("{path}/moat.json")),
        "the home dashboard"
    );
    // The admin port leaves the namespace only to the host's loopback.
    for line in compose
        .lines()
        .filter(|line| line.contains(&format!(":{port}\"")))
    {
        assert!(line.trim().starts_with("- \"127.0.0.1:"), "{line}");
    }
}
