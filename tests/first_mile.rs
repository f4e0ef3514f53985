//! The first mile of the command line: what a new user meets before moat serves anything —
//! `--version`, completions and man pages, `moat env keygen` into a fresh directory, a
//! missing dotenv file, the key listing, and `moat demo` failing cleanly on a busy port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report

mod support;

use support::{run_moat, text};

#[test]
fn version_names_the_commit_the_build_date_and_the_features() {
    let long = run_moat(&["--version"], &[]);
    assert!(long.status.success(), "{}", text(&long));
    let report = String::from_utf8(long.stdout).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], format!("moat {}", env!("CARGO_PKG_VERSION")));
    let commit = lines[1].strip_prefix("commit:").unwrap().trim();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{report}"
    );
    let date = lines[2].strip_prefix("built:").unwrap().trim();
    assert!(
        date.ends_with(" (UTC)") && date.len() == "2026-12-07 (UTC)".len(),
        "{report}"
    );
    let features = lines[3].strip_prefix("features:").unwrap().trim();
    assert_eq!(
        features == "age" || features.contains("age,"),
        cfg!(feature = "age")
    );
    // `moat version` says the same; `-V` says it on one line.
    let subcommand = run_moat(&["version"], &[]);
    assert_eq!(String::from_utf8(subcommand.stdout).unwrap(), report);
    let short = String::from_utf8(run_moat(&["-V"], &[]).stdout).unwrap();
    assert_eq!(short.lines().count(), 1, "{short}");
    assert!(short.contains(commit), "{short}");
}

#[test]
fn completions_list_the_subcommands_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = run_moat(&["completions", shell], &[]);
        assert!(output.status.success(), "{shell}: {}", text(&output));
        let script = String::from_utf8(output.stdout).unwrap();
        for subcommand in ["serve", "check", "keys", "demo", "completions"] {
            assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
        }
    }
    let refused = run_moat(&["completions", "tcsh"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
}

#[test]
fn man_prints_a_roff_page_and_writes_one_per_subcommand() {
    let output = run_moat(&["man"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.starts_with(".TH moat 1 "), "{page}");
    assert!(
        page.contains(".SH NAME") && page.contains("serve"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let written = run_moat(&["man", "--out-dir", dir.path().to_str().unwrap()], &[]);
    assert!(written.status.success(), "{}", text(&written));
    for name in ["moat.1", "moat-serve.1", "moat-keys-new.1"] {
        let page = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(page.starts_with(".TH "), "{name}: {page}");
    }
}

#[cfg(feature = "age")]
#[test]
fn env_keygen_makes_missing_directories_private_and_keeps_existing_ones() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("secrets/age/identity");
    let made = run_moat(&["env", "keygen", "-o", identity.to_str().unwrap()], &[]);
    assert!(made.status.success(), "{}", text(&made));
    assert!(text(&made).contains("public key: age1"), "{}", text(&made));
    assert_eq!(mode(&identity), 0o600);
    assert_eq!(mode(&dir.path().join("secrets")), 0o700);
    assert_eq!(mode(&dir.path().join("secrets/age")), 0o700);
    // A directory that exists keeps its mode; only the new one is made private.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let second = shared.join("new/identity");
    let made = run_moat(&["env", "keygen", "-o", second.to_str().unwrap()], &[]);
    assert!(made.status.success(), "{}", text(&made));
    assert_eq!(mode(&shared), 0o755);
    assert_eq!(mode(&shared.join("new")), 0o700);
    // An identity is never overwritten.
    let again = run_moat(&["env", "keygen", "-o", second.to_str().unwrap()], &[]);
    assert!(!again.status.success());
}

/// `dotenv: .env` with no such file: `serve` refuses to start (the variables could be the
/// secrets that keep a door shut), and says which file, which line, and what to do.
#[test]
fn a_missing_dotenv_file_stops_serve_naming_the_file_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    let path = dir.path().join("moat.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\n\
             env:\n  dotenv: {}\n",
            dotenv.display()
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let served = run_moat(&["serve", "--config", config], &[]);
    assert_eq!(served.status.code(), Some(64), "{}", text(&served));
    let checked = run_moat(&["check", "--config", config], &[]);
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked));
    for said in [text(&served), text(&checked)] {
        for expected in [
            "line 6: env.dotenv",
            &format!("{} does not exist", dotenv.display()),
            "create it",
            "or remove the `dotenv:` line",
        ] {
            assert!(
                said.contains(expected),
                "`{expected}` missing from:\n{said}"
            );
        }
    }
}

/// A demo that cannot bind leaves nothing behind in `$TMPDIR` (its key store included).
#[test]
fn a_demo_that_cannot_bind_removes_its_session_directory() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let tmpdir = tmp.path().to_str().unwrap();
    let output = run_moat(
        &["demo", "--listen", &listen, "--admin-listen", "127.0.0.1:0"],
        &[("TMPDIR", tmpdir), ("MOAT_LOG", "warn")],
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("cannot listen on"),
        "{}",
        text(&output)
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `moat demo --admin-listen ADDR` (as in `docker run … moat demo --admin-listen
/// 0.0.0.0:9090`) serves the status page there; Ctrl-C ends it, taking its directory.
#[test]
fn the_demo_serves_its_status_page_on_the_admin_address_it_is_given() {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["demo", "--listen", "127.0.0.1:0", "--admin-listen"])
        .arg(admin.to_string())
        .env("TMPDIR", tmp.path())
        .env("MOAT_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|line| !line.contains("Ctrl-C stops the demo"))
        .collect();
    let page = support::admin_get(admin, "/");
    let status = support::admin_get(admin, "/status.json");
    let _ = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let stopped = support::eventually(|| matches!(child.try_wait(), Ok(Some(_))));
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(
        banner
            .iter()
            .any(|line| line.contains(&format!("(admin: http://{admin})"))),
        "{banner:#?}"
    );
    assert_eq!(page.status, 200);
    assert!(
        String::from_utf8_lossy(&page.body).contains("<html"),
        "not the status page"
    );
    assert_eq!(status.status, 200);
    assert!(status.json()["totals"].is_object(), "{}", status.json());
    assert!(stopped, "the demo did not stop on SIGINT");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The Kubernetes example counts its two replicas' limits in Redis, so it ships one: the
/// Service the Secret's URL names, the password key the Secret is made with, and a
/// NetworkPolicy that admits the moat pods.
#[test]
fn the_kubernetes_example_ships_the_redis_its_config_counts_in() {
    use serde_json::Value;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes");
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap();
    let documents = |name: &str| -> Vec<Value> {
        read(name)
            .split("\n---\n")
            .map(|doc| serde_saphyr::from_str(doc).unwrap())
            .collect()
    };
    assert!(read("configmap.yaml").contains("      store:\n        redis:\n"));
    let redis = documents("redis.yaml");
    let of_kind = |kind: &str| redis.iter().find(|doc| doc["kind"] == kind).unwrap();
    let service = of_kind("Service");
    let host = service["metadata"]["name"].as_str().unwrap();
    let port = &service["spec"]["ports"][0]["port"];
    let secret = read("secret.yaml");
    assert!(
        secret.contains(&format!("@{host}:{port}/0")),
        "secret.yaml's redis_url does not name {host}:{port}"
    );
    let container = &of_kind("Deployment")["spec"]["template"]["spec"]["containers"][0];
    let password = &container["env"][0]["valueFrom"]["secretKeyRef"];
    assert_eq!(password["name"], "moat-keys");
    let key = password["key"].as_str().unwrap();
    assert!(secret.contains(&format!("--from-file={key}")), "{secret}");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!(
                "$({})",
                container["env"][0]["name"].as_str().unwrap()
            ))),
        "{container}"
    );
    let pods = &documents("deployment.yaml")[0]["spec"]["template"]["metadata"]["labels"];
    let admitted = &of_kind("NetworkPolicy")["spec"]["ingress"][0]["from"][0]["podSelector"];
    assert_eq!(&admitted["matchLabels"], pods);
    assert!(read("deployment.yaml").contains("MOAT_REDIS_URL_FILE"));
    assert!(read("README.md").contains("kubectl apply -f configmap.yaml -f redis.yaml"));
}

/// The compose example needs no Rust on the host: compose builds moat from the repository's
/// Dockerfile, and `setup.sh` falls back to that image. With a moat binary it makes every
/// file, the plaintext dotenv only ever in a pipe.
#[cfg(feature = "age")]
#[test]
fn the_compose_setup_runs_with_a_moat_binary_or_the_image_compose_builds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/compose");
    let compose: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("compose.yaml")).unwrap())
            .unwrap();
    let moat = &compose["services"]["moat"];
    assert_eq!(moat["build"]["context"], "../..");
    assert_eq!(moat["build"]["dockerfile"], "Dockerfile");
    let script = std::fs::read_to_string(root.join("setup.sh")).unwrap();
    assert!(script.contains("docker compose build moat"));
    assert!(script.contains(&format!(" {})", moat["image"].as_str().unwrap())));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::copy(root.join("setup.sh"), dir.path().join("setup.sh")).unwrap();
    let output = std::process::Command::new("bash")
        .arg(dir.path().join("setup.sh"))
        .env("MOAT", env!("CARGO_BIN_EXE_moat"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let identity = dir.path().join("secrets/age_identity");
    for made in [
        "secrets/key_pepper",
        "config/keys.yaml",
        "config/.env.age",
        ".env",
    ] {
        assert!(dir.path().join(made).is_file(), "{made} missing");
    }
    let inspected = run_moat(
        &[
            "env",
            "decrypt",
            dir.path().join("config/.env.age").to_str().unwrap(),
        ],
        &[("MOAT_AGE_IDENTITY_FILE", identity.to_str().unwrap())],
    );
    assert!(inspected.status.success(), "{}", text(&inspected));
    let plain = String::from_utf8(inspected.stdout).unwrap();
    assert!(
        plain.starts_with("MOAT_JWT_SECRET=") && plain.len() > 60,
        "not the secret"
    );
}
