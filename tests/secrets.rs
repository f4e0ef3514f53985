//! Secrets end to end: an age-encrypted dotenv made with `moat env` feeds `serve`; a file
//! that does not decrypt stops the start; and known secrets driven through every success
//! and failure path never appear in anything moat prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use serde_json::json;
use std::path::Path;
use std::process::Command;
use support::{Moat, Upstream, config, fixture, get, moat_keys, post_json, run_moat as moat, text};

const PREDICT: &str = "/v1/models/iris:predict";
const BODY: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;
const HMAC: &str = "hmac-4f0c2a7d9e3b18c65a0f7e2d4b9c1a83";
const PEPPER: &str = "pepper-7d1e93c04b2f68a5";

/// `moat env keygen -o PATH`; returns the public key it reported.
fn keygen(path: &Path) -> String {
    let output = moat(&["env", "keygen", "-o", path.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .trim()
        .strip_prefix("public key: ")
        .expect("keygen reports the public key")
        .to_owned()
}

fn token(secret: &str, scope: &str) -> String {
    let now = support::now();
    let claims = json!({"iss": "https://login.example.com/", "aud": "model-api", "sub": "alice",
        "exp": now + 600, "iat": now, "scope": scope});
    support::hs256(secret, &claims)
}

/// A config whose bearer secret comes from the encrypted dotenv and whose key pepper comes
/// from a `_FILE`.
fn secret_config(upstream: &Upstream, env_age: &Path, store: &Path) -> String {
    config(
        &upstream.url(),
        &format!(
            "openapi:\n  file: {}\nenv:\n  encrypted_dotenv: {}\nauth:\n  schemes:\n    bearer:\n      type: jwt\n      issuer: https://login.example.com/\n      audience: model-api\n      algorithms: [HS256]\n      secret: ${{MOAT_TEST_HMAC}}\n    api_key:\n      type: api_key\n      store: {}\n      pepper: ${{MOAT_TEST_PEPPER}}\npolicy:\n  default: [{{bearer: []}}, {{api_key: []}}]\n  operations:\n    predict: [{{bearer: [predict]}}, {{api_key: [predict]}}]\n",
            fixture("model.yaml"),
            env_age.display(),
            store.display()
        ),
    )
}

struct Setup {
    dir: tempfile::TempDir,
    identity_file: String,
    identity: String,
    env_age: std::path::PathBuf,
}

/// An identity, and `.env.age` holding the HMAC secret, made with the CLI.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let identity_path = dir.path().join("identity.txt");
    let public = keygen(&identity_path);
    assert!(public.starts_with("age1"), "{public}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&identity_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let identity = std::fs::read_to_string(&identity_path)
        .unwrap()
        .lines()
        .find(|line| line.starts_with("AGE-SECRET-KEY-1"))
        .expect("identity line")
        .to_owned();

    let plain = dir.path().join("plain.env");
    std::fs::write(&plain, format!("# secrets\nMOAT_TEST_HMAC={HMAC}\n")).unwrap();
    let env_age = dir.path().join(".env.age");
    let output = moat(
        &[
            "env",
            "encrypt",
            "--recipient",
            &public,
            plain.to_str().unwrap(),
            "-o",
            env_age.to_str().unwrap(),
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output));
    std::fs::remove_file(&plain).unwrap();
    let ciphertext = std::fs::read_to_string(&env_age).unwrap();
    assert!(ciphertext.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!ciphertext.contains(HMAC));
    Setup {
        identity_file: identity_path.to_str().unwrap().to_owned(),
        identity,
        env_age,
        dir,
    }
}

#[test]
fn an_encrypted_dotenv_round_trips_through_the_cli_and_serve() {
    let setup = setup();
    let env_age = setup.env_age.to_str().unwrap();

    // decrypt: with the identity as a file or as a value; never without one.
    for env in [
        [("MOAT_AGE_IDENTITY_FILE", setup.identity_file.as_str())],
        [("MOAT_AGE_IDENTITY", setup.identity.as_str())],
    ] {
        let output = moat(&["env", "decrypt", env_age], &env);
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("# secrets\nMOAT_TEST_HMAC={HMAC}\n")
        );
    }
    let output = moat(&["env", "decrypt", env_age], &[]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("MOAT_AGE_IDENTITY"),
        "{}",
        text(&output)
    );

    // serve: the secret from the encrypted file verifies a token signed with it.
    let upstream = Upstream::start();
    let store = setup.dir.path().join("keys.yaml");
    std::fs::write(&store, "keys: []\n").unwrap();
    let config_text = secret_config(&upstream, &setup.env_age, &store);
    let server = Moat::start_with_env(
        &config_text,
        &[
            ("MOAT_AGE_IDENTITY_FILE", &setup.identity_file),
            ("MOAT_TEST_PEPPER", PEPPER),
        ],
    );
    let bearer = format!("Authorization: Bearer {}", token(HMAC, "predict"));
    let response = post_json(server.addr, PREDICT, &[&bearer, "X-Tenant: t-1"], BODY);
    assert_eq!(response.status, 200, "{}", server.lines().join("\n"));
    let forged = format!(
        "Authorization: Bearer {}",
        token(&"x".repeat(40), "predict")
    );
    let response = post_json(server.addr, PREDICT, &[&forged, "X-Tenant: t-1"], BODY);
    assert_eq!(response.status, 401);
    // A variable in both the plain and the encrypted dotenv is ambiguous: refused.
    let plain = setup.dir.path().join(".env");
    std::fs::write(
        &plain,
        "MOAT_TEST_HMAC=something-else-entirely-0123456789\n",
    )
    .unwrap();
    let both = setup.dir.path().join("both.yaml");
    std::fs::write(
        &both,
        config_text.replace("env:\n", &format!("env:\n  dotenv: {}\n", plain.display())),
    )
    .unwrap();
    let check = moat(
        &["check", "--config", both.to_str().unwrap()],
        &[
            ("MOAT_AGE_IDENTITY_FILE", &setup.identity_file),
            ("MOAT_TEST_PEPPER", PEPPER),
        ],
    );
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check).contains("`MOAT_TEST_HMAC` is set by both"),
        "{}",
        text(&check)
    );
}

#[test]
fn a_dotenv_that_does_not_decrypt_stops_the_start_with_exit_64() {
    let setup = setup();
    let other = setup.dir.path().join("other-identity.txt");
    keygen(&other);
    let upstream = Upstream::start();
    let store = setup.dir.path().join("keys.yaml");
    std::fs::write(&store, "keys: []\n").unwrap();
    let config_path = setup.dir.path().join("moat.yaml");
    std::fs::write(
        &config_path,
        secret_config(&upstream, &setup.env_age, &store),
    )
    .unwrap();
    let config_arg = config_path.to_str().unwrap();
    let pepper = [("MOAT_TEST_PEPPER", PEPPER)];

    let wrong = moat(
        &["serve", "--config", config_arg],
        &[
            ("MOAT_AGE_IDENTITY_FILE", other.to_str().unwrap()),
            pepper[0],
        ],
    );
    assert_eq!(wrong.status.code(), Some(64), "{}", text(&wrong));
    assert!(text(&wrong).contains("cannot decrypt"), "{}", text(&wrong));

    // Not an age file at all: refused, never read as plaintext.
    let ciphertext = std::fs::read(&setup.env_age).unwrap();
    std::fs::write(&setup.env_age, format!("MOAT_TEST_HMAC={HMAC}\n")).unwrap();
    let plain = moat(
        &["check", "--config", config_arg],
        &[("MOAT_AGE_IDENTITY_FILE", &setup.identity_file), pepper[0]],
    );
    assert_eq!(plain.status.code(), Some(1));
    assert!(
        text(&plain).contains("not an encrypted dotenv file"),
        "{}",
        text(&plain)
    );

    std::fs::write(&setup.env_age, ciphertext).unwrap();

    // A world-writable identity file is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&setup.identity_file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = moat(
        &["env", "decrypt", setup.env_age.to_str().unwrap()],
        &[("MOAT_AGE_IDENTITY_FILE", &setup.identity_file)],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("world-writable"),
        "{}",
        text(&output)
    );
}

/// Every secret moat handles — bearer HMAC secret, pepper, API keys, tokens, the age
/// identity — driven through accepted and refused requests, a failed reload and the CLI:
/// none may appear in anything moat printed.
#[test]
fn known_secrets_never_appear_in_any_output() {
    let setup = setup();
    let pepper_file = setup.dir.path().join("pepper");
    std::fs::write(&pepper_file, format!("{PEPPER}\n")).unwrap();
    let pepper_env = [("MOAT_KEY_PEPPER_FILE", pepper_file.to_str().unwrap())];
    let store = setup.dir.path().join("keys.yaml");
    // `moat keys` peppers with MOAT_KEY_PEPPER(_FILE); the config reads MOAT_TEST_PEPPER.
    let key = {
        let output = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args([
                "keys", "new", "--id", "web", "--scopes", "predict", "--store",
            ])
            .arg(&store)
            .envs(pepper_env)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let listed = moat_keys(&store, &["list"]);
    let upstream = Upstream::start();
    let config_text = secret_config(&upstream, &setup.env_age, &store);
    let server = Moat::start_with_env(
        &config_text,
        &[
            ("MOAT_AGE_IDENTITY", &setup.identity),
            ("MOAT_TEST_PEPPER_FILE", pepper_file.to_str().unwrap()),
        ],
    );
    let good_token = token(HMAC, "predict");
    let no_scope_token = token(HMAC, "other");
    let forged_token = token("forged-secret-6b8e1d2c9f0a4e7b3d5c", "predict");
    let wrong_key = format!("moat_web_{}", "A".repeat(43));
    let mut statuses = Vec::new();
    for headers in [
        vec![format!("Authorization: Bearer {good_token}")],
        vec![format!("Authorization: Bearer {no_scope_token}")],
        vec![format!("Authorization: Bearer {forged_token}")],
        vec![format!("Authorization: Bearer {good_token}x")],
        vec![format!("X-API-Key: {key}")],
        vec![format!("X-API-Key: {wrong_key}")],
        vec![format!("Authorization: Bearer {key}")],
        vec![format!("Authorization: Basic {key}")],
    ] {
        let mut all: Vec<&str> = headers.iter().map(String::as_str).collect();
        all.push("X-Tenant: t-1");
        statuses.push(post_json(server.addr, PREDICT, &all, BODY).status);
    }
    // Keys in the query and a cookie are refused (not enabled) and must not be logged.
    statuses.push(get(server.addr, &format!("/v1/models?api_key={key}"), &[]).status);
    statuses.push(
        get(
            server.addr,
            "/v1/models",
            &[&format!("Cookie: api_key={key}")],
        )
        .status,
    );
    // A body carrying a secret that fails validation: the error must not quote it.
    let leaky_body = format!(r#"{{"instances": [["{PEPPER}"]]}}"#);
    let authorization = format!("Authorization: Bearer {good_token}");
    statuses.push(
        post_json(
            server.addr,
            PREDICT,
            &[&authorization, "X-Tenant: t-1"],
            &leaky_body,
        )
        .status,
    );
    assert_eq!(
        statuses,
        [200, 403, 401, 401, 200, 401, 401, 401, 401, 401, 400]
    );

    // A reload that fails with a secret interpolated into a wrong-typed field.
    let broken = config_text.replace(
        "policy:\n",
        "limits:\n  max_body_bytes: ${MOAT_TEST_HMAC}\npolicy:\n",
    );
    std::fs::write(&server.config_path, &broken).unwrap();
    server.signal("HUP");
    assert!(support::eventually(|| {
        support::metric(&server, "moat_config_reloads_total{result=\"failure\"}") >= 1
    }));
    let check = moat(
        &["check", "--config", server.config_path.to_str().unwrap()],
        &[
            ("MOAT_AGE_IDENTITY", &setup.identity),
            ("MOAT_TEST_PEPPER", PEPPER),
        ],
    );
    assert_eq!(check.status.code(), Some(1));
    let check_json = moat(
        &[
            "check",
            "--format",
            "json",
            "--config",
            server.config_path.to_str().unwrap(),
        ],
        &[
            ("MOAT_AGE_IDENTITY", &setup.identity),
            ("MOAT_TEST_PEPPER", PEPPER),
        ],
    );
    assert_eq!(check_json.status.code(), Some(1));
    std::fs::write(&server.config_path, &config_text).unwrap();
    let check_ok = moat(
        &["check", "--config", server.config_path.to_str().unwrap()],
        &[
            ("MOAT_AGE_IDENTITY", &setup.identity),
            ("MOAT_TEST_PEPPER", PEPPER),
        ],
    );
    assert!(check_ok.status.success(), "{}", text(&check_ok));
    // The log is flushed in batches: wait until every request and the failed reload are in.
    server.wait_for_access_lines(statuses.len());
    assert!(support::eventually(|| server
        .lines()
        .join("\n")
        .contains("reload failed")));

    let printed = format!(
        "{}\n{listed}\n{}\n{}\n{}",
        server.lines().join("\n"),
        text(&check),
        text(&check_json),
        text(&check_ok)
    );
    assert!(printed.contains("\"status\":200"), "the log was captured");
    let key_secret = key.strip_prefix("moat_web_").unwrap();
    for (name, secret) in [
        ("HMAC secret", HMAC),
        ("pepper", PEPPER),
        ("API key secret", key_secret),
        ("wrong API key secret", &wrong_key["moat_web_".len()..]),
        ("token", &good_token),
        ("token signature", good_token.rsplit('.').next().unwrap()),
        ("forged token", &forged_token),
        ("age identity", &setup.identity),
    ] {
        assert!(
            !printed.contains(secret),
            "the {name} was printed:\n{printed}"
        );
    }
}
