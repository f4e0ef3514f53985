//! `moat init`, as a new user runs it: from the real FastAPI/scikit-learn model's URL to a
//! config that `moat check` accepts and `moat serve` enforces (a `read` key predicts, and is
//! refused the model's admin operation), and from a saved OpenAI-compatible spec to the
//! expected scopes, private secrets and a second run that overwrites nothing. Also the
//! `moat check` warning about administrative operations every credential may call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{Moat, PyServer, get, post_json, send, text};

/// `moat ARGS` in `dir`, with none of the variables a shell might carry that would change
/// what it reads.
fn moat_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(args)
        .current_dir(dir)
        .env_remove("MOAT_CONFIG")
        .env_remove("MOAT_KEY_STORE")
        .env_remove("MOAT_KEY_PEPPER")
        .env_remove("MOAT_JWT_SECRET")
        .env_remove("MOAT_AGE_IDENTITY")
        .env_remove("MOAT_AGE_IDENTITY_FILE")
        .output()
        .expect("run moat")
}

/// Waits for a Python server's port to accept connections (uvicorn importing scikit-learn
/// takes seconds).
fn wait_for(server: &PyServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", server.port)).is_err() {
        assert!(Instant::now() < deadline, "{} never answered", server.url());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_from_the_model_url_makes_a_config_that_checks_serves_and_keeps_admin_for_admins() {
    let Some(model) = PyServer::start("tests/model-server") else {
        return;
    };
    wait_for(&model);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("config");
    let url = format!("{}/openapi.json", model.url());
    let init = moat_in(
        work.path(),
        &["init", "--from", &url, "--dir", dir.to_str().unwrap()],
    );
    assert!(init.status.success(), "{}", text(&init));
    let config = dir.join("moat.yaml");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains(&format!("url: \"{url}\"")), "{written}");
    assert!(
        written.contains(&format!("url: \"{}\"", model.url())),
        "{written}"
    );
    assert!(
        !dir.join("openapi.json").exists(),
        "a URL is fetched, not copied"
    );

    let config_arg = config.to_str().unwrap();
    let check = moat_in(work.path(), &["check", "--config", config_arg]);
    assert!(check.status.success(), "{}", text(&check));
    let report = text(&check);
    assert!(report.contains("(6 operations)"), "{report}");
    assert!(!report.contains("warning"), "{report}");

    let new_key = |id: &str, scope: &str| {
        let args = [
            "keys", "new", "--config", config_arg, "--id", id, "--scopes", scope,
        ];
        let output = moat_in(work.path(), &args);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let client = new_key("client", "read");
    let operator = new_key("operator", "admin");

    let moat = Moat::start_at(
        &config,
        &[
            ("MOAT_LISTEN", "127.0.0.1:0"),
            ("MOAT_ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    let with = |key: &str| format!("X-API-Key: {key}");
    let body = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;
    let predicted = post_json(
        moat.addr,
        "/v1/models/iris:predict",
        &[&with(&client)],
        body,
    );
    assert_eq!(
        predicted.status,
        200,
        "{}",
        String::from_utf8_lossy(&predicted.body)
    );
    assert_eq!(predicted.json()["predictions"][0]["label"], "setosa");
    assert_eq!(get(moat.addr, "/v1/models", &[&with(&client)]).status, 200);

    let reload = |headers: &[&str]| send(moat.addr, "POST", "/v1/admin/reload", headers, b"");
    let refused = reload(&[&with(&client)]);
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(refused.json()["code"], "insufficient_scope");
    assert_eq!(reload(&[]).status, 401);
    let reloaded = reload(&[&with(&operator)]);
    assert_eq!(
        reloaded.status,
        200,
        "{}",
        String::from_utf8_lossy(&reloaded.body)
    );
    assert_eq!(reloaded.json()["reloaded"][0], "iris");
}

/// The OpenAI-compatible server's own document, with the LoRA endpoint vLLM adds when
/// runtime adapter loading is on — the administrative operation such servers have.
fn openai_spec() -> Option<serde_json::Value> {
    let server = PyServer::start("tests/openai-server")?;
    wait_for(&server);
    let addr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let mut spec = get(addr, "/openapi.json", &[]).json();
    spec["paths"]["/v1/load_lora_adapter"] = serde_json::json!({"post": {
        "operationId": "load_lora_adapter_v1_load_lora_adapter_post",
        "responses": {"200": {"description": "loaded"}}
    }});
    Some(spec)
}

#[test]
fn init_from_a_saved_openai_spec_writes_scopes_private_secrets_and_never_overwrites() {
    let Some(spec) = openai_spec() else { return };
    let work = tempfile::tempdir().unwrap();
    let saved = serde_json::to_vec_pretty(&spec).unwrap();
    std::fs::write(work.path().join("openai.json"), &saved).unwrap();
    let init = moat_in(
        work.path(),
        &["init", "--from", "openai.json", "--dir", "conf"],
    );
    assert!(init.status.success(), "{}", text(&init));
    let dir = work.path().join("conf");
    assert_eq!(std::fs::read(dir.join("openapi.json")).unwrap(), saved);
    assert_eq!(mode(&dir.join(".env")), 0o600);
    assert_eq!(mode(&dir.join("keys.yaml")), 0o600);
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert!(
        env.contains("MOAT_JWT_SECRET=") && env.contains("MOAT_KEY_PEPPER="),
        "{env}"
    );

    let written = std::fs::read_to_string(dir.join("moat.yaml")).unwrap();
    let yaml: serde_json::Value = serde_saphyr::from_str(&written).unwrap();
    let operations = yaml["policy"]["operations"].as_object().unwrap();
    let scope = |id: &str| operations[id][1]["api_key"][0].as_str().unwrap().to_owned();
    let mut ids: Vec<&str> = operations.keys().map(String::as_str).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "chat_completions_v1_chat_completions_post",
            "completions_v1_completions_post",
            "embeddings_v1_embeddings_post",
            "list_models_v1_models_get",
            "load_lora_adapter_v1_load_lora_adapter_post",
        ]
    );
    for id in &ids[..4] {
        assert_eq!(scope(id), "read", "{id}: {written}");
        assert_eq!(operations[*id][0]["bearer"][0], "read");
    }
    assert_eq!(
        scope("load_lora_adapter_v1_load_lora_adapter_post"),
        "admin"
    );
    assert_eq!(yaml["policy"]["default"][1]["api_key"][0], "admin");
    assert_eq!(yaml["openapi"]["file"], "conf/openapi.json");
    assert_eq!(
        yaml["auth"]["schemes"]["api_key"]["bearer"], true,
        "OpenAI clients"
    );

    let check = moat_in(work.path(), &["check", "--config", "conf/moat.yaml"]);
    assert!(check.status.success(), "{}", text(&check));

    // Again: refused, naming the files, and every file as it was.
    let before: Vec<Vec<u8>> = [".env", "keys.yaml", "moat.yaml", "openapi.json"]
        .iter()
        .map(|name| std::fs::read(dir.join(name)).unwrap())
        .collect();
    let again = moat_in(
        work.path(),
        &["init", "--from", "openai.json", "--dir", "conf"],
    );
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("conf/moat.yaml") && said.contains("never overwrites"),
        "{said}"
    );
    let after: Vec<Vec<u8>> = [".env", "keys.yaml", "moat.yaml", "openapi.json"]
        .iter()
        .map(|name| std::fs::read(dir.join(name)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn init_refuses_when_any_one_file_exists_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("config");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(".env"), "MOAT_KEY_PEPPER=only-copy\n").unwrap();
    let spec = support::fixture("model.yaml");
    let init = moat_in(work.path(), &["init", "--from", &spec]);
    assert_eq!(init.status.code(), Some(1));
    let said = String::from_utf8_lossy(&init.stderr);
    assert!(said.contains("config/.env already exists"), "{said}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing written beside the existing file");
    let env = std::fs::read_to_string(dir.join(".env")).unwrap();
    assert_eq!(env, "MOAT_KEY_PEPPER=only-copy\n");

    let url = moat_in(
        work.path(),
        &["init", "--from", "https://example.com/openapi.json"],
    );
    assert!(!url.status.success());
}

/// A spec with one administrative operation and one read, and a policy whose default lets
/// every key call both.
fn open_admin_config(dir: &Path, policy: &str) -> String {
    let spec = r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {
        "/v2/repository/models/{name}/load": {"post": {"operationId": "load_model",
            "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}}},
        "/v2/models": {"get": {"operationId": "list_models",
            "responses": {"200": {"description": "ok"}}}}}}"#;
    std::fs::write(dir.join("spec.json"), spec).unwrap();
    std::fs::write(dir.join("keys.yaml"), "keys: []\n").unwrap();
    std::fs::set_permissions(
        dir.join("keys.yaml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let config = support::config(
        "http://127.0.0.1:8000",
        &format!(
            "openapi:\n  file: spec.json\nauth:\n  schemes:\n    api_key: {{type: api_key, store: keys.yaml}}\npolicy:\n{policy}"
        ),
    );
    std::fs::write(dir.join("moat.yaml"), config).unwrap();
    "moat.yaml".to_owned()
}

#[test]
fn check_warns_about_an_administrative_operation_every_credential_may_call() {
    let work = tempfile::tempdir().unwrap();
    let config = open_admin_config(work.path(), "  default: [{api_key: []}]\n");
    let check = moat_in(work.path(), &["check", "--config", &config]);
    assert!(
        check.status.success(),
        "a warning, not an error: {}",
        text(&check)
    );
    let report = text(&check);
    let warnings: Vec<&str> = report.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{report}");
    assert!(
        warnings[0].contains(
            "POST /v2/repository/models/{name}/load (load_model) looks administrative \
             (`repository` in its path) but any valid credential may call it"
        ),
        "{report}"
    );
    assert!(
        warnings[0].contains(r#"{"load_model": [{api_key: [admin]}]}"#),
        "{report}"
    );

    let scoped =
        "  default: [{api_key: []}]\n  operations:\n    load_model: [{api_key: [admin]}]\n";
    let config = open_admin_config(work.path(), scoped);
    let check = moat_in(work.path(), &["check", "--config", &config]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(!text(&check).contains("warning"), "{}", text(&check));

    // Public while keys guard the rest: worse still. Without any scheme, moat only
    // validates, and every operation is public by choice.
    let public = "  default: [{api_key: []}]\n  operations:\n    load_model: []\n";
    let config = open_admin_config(work.path(), public);
    let report = text(&moat_in(work.path(), &["check", "--config", &config]));
    assert!(
        report.contains("(load_model) looks administrative"),
        "{report}"
    );
    assert!(
        report.contains("but it is public: anyone may call it"),
        "{report}"
    );
    let spec = work.path().join("spec.json");
    let validating = support::config(
        "http://127.0.0.1:8000",
        &format!("openapi:\n  file: {}\n", spec.display()),
    );
    std::fs::write(work.path().join("moat.yaml"), validating).unwrap();
    let report = text(&moat_in(work.path(), &["check", "--config", "moat.yaml"]));
    assert!(!report.contains("looks administrative"), "{report}");
}

#[test]
fn the_shipped_config_keeps_its_admin_operation_for_admins() {
    let work = support::shipped_config();
    let check = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["check", "--config", "config/moat.yaml"])
        .current_dir(work.path())
        .env("MOAT_JWT_SECRET", "x".repeat(32))
        .env_remove("MOAT_CONFIG")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    let report = text(&check);
    assert!(!report.contains("looks administrative"), "{report}");
    let reload = report
        .lines()
        .find(|l| l.contains("/v1/admin/reload"))
        .unwrap();
    assert!(
        reload.ends_with("bearer[admin] OR api_key[admin]"),
        "{reload}"
    );
}
