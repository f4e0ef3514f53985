//! The first hour after the demo, as a new user meets it: minting into the shipped and other
//! empty stores, config typos named on their own line, `moat keys` and `moat token` reading
//! the config as `serve` does, rotation that never revives a key, secrets that are never
//! given a literal default, log lines that say which request and key, and a `moat check`
//! that reports everything at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::path::Path;

use support::{Moat, Upstream, get, run_moat, text};

const SECRET: &str = "0123456789abcdef0123456789abcdef-first-hour";

use support::shipped_config as shipped;

/// `moat ARGS` in `dir` with `env`; the real environment's moat variables left out.
fn moat_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_moat"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("MOAT_CONFIG")
        .env_remove("MOAT_KEY_STORE")
        .env_remove("MOAT_KEY_PEPPER")
        .env_remove("MOAT_JWT_SECRET")
        .env_remove("MOAT_AGE_IDENTITY")
        .env_remove("MOAT_AGE_IDENTITY_FILE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn the_first_key_goes_into_the_shipped_store_an_empty_one_and_a_commented_one() {
    let dir = shipped();
    let minted = moat_in(
        dir.path(),
        &["keys", "new", "--id", "batch-scorer", "--scopes", "predict"],
        &[],
    );
    assert!(minted.status.success(), "{}", text(&minted));
    let store = std::fs::read_to_string(dir.path().join("config/keys.yaml")).unwrap();
    assert!(
        store.starts_with("# API keys"),
        "the comment was lost:\n{store}"
    );
    for (name, start) in [
        ("empty.yaml", ""),
        ("commented.yaml", "# our keys\n\n"),
        ("trailing.yaml", "# ours\nkeys: [] # none yet\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, start).unwrap();
        let path = path.to_str().unwrap();
        let minted = moat_in(
            dir.path(),
            &["keys", "new", "--id", "first", "--store", path],
            &[],
        );
        assert!(minted.status.success(), "{name}: {}", text(&minted));
        let written = std::fs::read_to_string(path).unwrap();
        for comment in start.lines().filter_map(|l| l.find('#').map(|at| &l[at..])) {
            assert!(
                written.contains(comment),
                "{name} lost {comment:?}:\n{written}"
            );
        }
        let listed = moat_in(dir.path(), &["keys", "list", "--store", path], &[]);
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains("first"),
            "{name}"
        );
    }
}

#[test]
fn a_typo_is_named_on_its_own_line_with_the_nearest_valid_name() {
    let dir = shipped();
    let path = dir.path().join("config/moat.yaml");
    let original = std::fs::read_to_string(&path).unwrap();
    let line = original
        .lines()
        .position(|l| l.trim_start().starts_with("audience:"))
        .unwrap()
        + 1;
    std::fs::write(
        &path,
        original.replace("      audience:", "      audiences:"),
    )
    .unwrap();
    let checked = moat_in(dir.path(), &["check"], &[("MOAT_JWT_SECRET", SECRET)]);
    let report = text(&checked);
    assert!(!checked.status.success());
    assert!(
        report.contains(&format!("line {line}: unknown field `audiences`")),
        "{report}"
    );
    assert!(report.contains("did you mean `audience`?"), "{report}");
    assert!(!report.contains("interpolated"), "{report}");

    std::fs::write(&path, original.replace("mode: enforce", "mode: enforced")).unwrap();
    let report = text(&moat_in(
        dir.path(),
        &["check"],
        &[("MOAT_JWT_SECRET", SECRET)],
    ));
    assert!(
        report.contains("unknown value `enforced`; did you mean `enforce`?"),
        "{report}"
    );

    // Without any `${…}`, serde's own message gets the suggestion and the file's name.
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\n  conect_timeout: 2s\n",
    )
    .unwrap();
    let report = text(&moat_in(dir.path(), &["check"], &[]));
    assert!(
        report.contains("did you mean `connect_timeout`?"),
        "{report}"
    );
    assert!(!report.contains("<input>"), "{report}");

    std::fs::write(
        &path,
        original.replace("\"${MOAT_JWT_SECRET}\"", "\"${MOAT_JWT_SECRET\""),
    )
    .unwrap();
    let report = text(&moat_in(
        dir.path(),
        &["check"],
        &[("MOAT_JWT_SECRET", SECRET)],
    ));
    assert!(
        report.contains("`${MOAT_JWT_SECRET` is missing its closing `}`"),
        "{report}"
    );
}

#[test]
fn keys_and_tokens_come_from_the_config_as_serve_reads_it() {
    let dir = shipped();
    let path = dir.path().join("config/moat.yaml");
    // The pepper and the JWT secret in .env, as the README's step 3 puts them.
    std::fs::write(
        dir.path().join(".env"),
        format!("MOAT_JWT_SECRET={SECRET}\nMOAT_KEY_PEPPER=pepper-from-dotenv\n"),
    )
    .unwrap();
    let config = std::fs::read_to_string(&path)
        .unwrap()
        .replace("# env:", "env:")
        .replace("#   dotenv: .env", "  dotenv: .env");
    std::fs::write(&path, &config).unwrap();
    let minted = moat_in(
        dir.path(),
        &["keys", "new", "--id", "ops", "--scopes", "predict"],
        &[],
    );
    assert!(minted.status.success(), "{}", text(&minted));
    let key = String::from_utf8_lossy(&minted.stdout).trim().to_owned();
    let token = moat_in(
        dir.path(),
        &["token", "--sub", "alice", "--scopes", "predict"],
        &[],
    );
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();

    let upstream = Upstream::start();
    let served = config
        .replace("${MOAT_LISTEN:-0.0.0.0:8080}", "127.0.0.1:0")
        .replace("${MOAT_ADMIN_LISTEN:-127.0.0.1:9090}", "127.0.0.1:0")
        .replace("${MOAT_UPSTREAM:-http://127.0.0.1:8000}", &upstream.url())
        .replace("config/", &format!("{}/config/", dir.path().display()))
        .replace(
            "dotenv: .env",
            &format!("dotenv: {}/.env", dir.path().display()),
        );
    let moat = Moat::start(&served);
    let predict = |header: &str| {
        support::post_json(
            moat.addr,
            "/v1/models/iris:predict",
            &[header],
            r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
        )
    };
    assert_eq!(
        predict(&format!("X-API-Key: {key}")).status,
        200,
        "a key minted with the .env pepper"
    );
    assert_eq!(
        predict(&format!("Authorization: Bearer {token}")).status,
        200,
        "moat token"
    );

    // Two api_key schemes: `--scheme` chooses; without it, moat keys asks.
    let two = config.replace(
        "    api_key:\n      type: api_key",
        "    partner:\n      type: api_key\n      header: X-Partner-Key\n      store: config/partner.yaml\n    api_key:\n      type: api_key",
    );
    std::fs::write(&path, two).unwrap();
    let ambiguous = moat_in(dir.path(), &["keys", "new", "--id", "p1"], &[]);
    assert!(!ambiguous.status.success());
    assert!(
        text(&ambiguous).contains("--scheme"),
        "{}",
        text(&ambiguous)
    );
    let chosen = moat_in(
        dir.path(),
        &["keys", "new", "--id", "p1", "--scheme", "partner"],
        &[],
    );
    assert!(chosen.status.success(), "{}", text(&chosen));
    assert!(dir.path().join("config/partner.yaml").exists());

    // Public-key schemes get their tokens from the identity provider.
    std::fs::write(
        &path,
        "listen: 127.0.0.1:0\nupstream: {url: http://127.0.0.1:1}\nauth:\n  schemes:\n    bearer: {type: jwt, issuer: i, audience: a, algorithms: [ES256], jwks_file: jwks.json}\n",
    )
    .unwrap();
    let refused = moat_in(dir.path(), &["token"], &[]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("identity provider"),
        "{}",
        text(&refused)
    );
}

#[test]
fn rotation_never_revives_a_key_and_the_new_key_gets_its_own_life() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let s = store.to_str().unwrap();
    let new = moat_in(
        dir.path(),
        &[
            "keys",
            "new",
            "--id",
            "old",
            "--scopes",
            "predict",
            "--expires",
            "2020-01-01T00:00:00Z",
            "--store",
            s,
        ],
        &[],
    );
    assert!(new.status.success(), "{}", text(&new));
    let rotated = moat_in(
        dir.path(),
        &["keys", "rotate", "old", "--grace", "24h", "--store", s],
        &[],
    );
    assert!(rotated.status.success(), "{}", text(&rotated));
    assert!(
        text(&rotated).contains("warning: `old` is expired"),
        "{}",
        text(&rotated)
    );
    let listing =
        String::from_utf8_lossy(&moat_in(dir.path(), &["keys", "list", "--store", s], &[]).stdout)
            .into_owned();
    let line = |id: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("old").contains("expired") && line("old").contains("2020-01-01"),
        "{listing}"
    );
    assert!(
        line("old-r2").contains("active") && line("old-r2").contains(" - "),
        "{listing}"
    );
    let again = moat_in(
        dir.path(),
        &[
            "keys",
            "rotate",
            "old-r2",
            "--grace",
            "1h",
            "--expires",
            "2099-01-01T00:00:00Z",
            "--store",
            s,
        ],
        &[],
    );
    assert!(again.status.success(), "{}", text(&again));
    let listing =
        String::from_utf8_lossy(&moat_in(dir.path(), &["keys", "list", "--store", s], &[]).stdout)
            .into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("old-r3 ") && l.contains("2099-01-01")),
        "{listing}"
    );
}

#[test]
fn new_keys_take_every_restriction_and_list_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let s = store.to_str().unwrap();
    let missing = moat_in(dir.path(), &["keys", "list", "--store", s], &[]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("no key store at"),
        "{}",
        text(&missing)
    );
    let minted = moat_in(
        dir.path(),
        &[
            "keys",
            "new",
            "--id",
            "edge",
            "--scopes",
            "predict",
            "--operations",
            "predict",
            "--allowed-cidrs",
            "10.0.0.0/8,::1",
            "--rate-limit",
            "5/10",
            "--not-before",
            "2026-01-01T00:00:00Z",
            "--owner",
            "team-edge",
            "--store",
            s,
        ],
        &[],
    );
    assert!(minted.status.success(), "{}", text(&minted));
    let loaded = moat::auth::keystore::KeyStore::load(&store).unwrap();
    let record = &loaded.records["edge"];
    assert_eq!(
        record.operations.as_deref(),
        Some(&["predict".to_owned()][..])
    );
    assert_eq!(record.allowed_cidrs.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        record.rate_limit.map(|r| (r.per_second, r.burst)),
        Some((5, 10))
    );
    assert!(record.not_before.is_some());
    let listing =
        String::from_utf8_lossy(&moat_in(dir.path(), &["keys", "list", "--store", s], &[]).stdout)
            .into_owned();
    for shown in [
        "operations=predict",
        "cidrs=10.0.0.0/8,::1/128",
        "rate=5/s burst=10",
        "not_before=2026-01-01",
    ] {
        assert!(listing.contains(shown), "{shown}: {listing}");
    }
    let bad = moat_in(
        dir.path(),
        &[
            "keys",
            "new",
            "--id",
            "bad",
            "--rate-limit",
            "fast",
            "--store",
            s,
        ],
        &[],
    );
    assert!(!bad.status.success());
}

#[test]
fn check_reports_every_problem_past_an_unset_variable_with_suggestions_and_warnings() {
    let dir = shipped();
    let path = dir.path().join("config/moat.yaml");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        original.replace(
            "health_health_get: []",
            "health_helth_get: []\n    \"GET /v1/models/{name}\": []",
        ),
    )
    .unwrap();
    let store = dir.path().join("config/keys.yaml");
    std::fs::write(&store, "keys:\n  - id: x\n    hash: not-a-hash\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    // MOAT_JWT_SECRET unset: reported, and the store and policy problems too.
    let checked = moat_in(
        dir.path(),
        &["check"],
        &[("MOAT_AGE_IDENTITY", "AGE-SECRET-KEY-1QQ")],
    );
    let report = text(&checked);
    assert!(!checked.status.success());
    assert!(report.contains("`MOAT_JWT_SECRET` is not set"), "{report}");
    assert!(
        !report.contains("MOAT_JWT_SECRET:-"),
        "a secret got a default hint: {report}"
    );
    assert!(
        report.contains("`hash` must be an argon2id PHC string"),
        "{report}"
    );
    assert!(
        report.contains("did you mean `health_health_get`?"),
        "{report}"
    );
    assert!(
        report.contains("(the operations: health_health_get"),
        "{report}"
    );
    let line = original
        .lines()
        .position(|l| l.contains("health_health_get: []"))
        .unwrap()
        + 1;
    assert!(
        report.contains(&format!("health_helth_get (line {line})")),
        "{report}"
    );
    assert!(
        report.contains("write `\"GET /v1/models/{model_name}\"`"),
        "{report}"
    );
    // A key store holds only hashes: readable by others (0644, as a checkout leaves it)
    // is not worth a warning on every run.
    assert!(
        !report.contains("readable by other users"),
        "a warning about the key store's mode: {report}"
    );
    assert!(
        report.contains("MOAT_AGE_IDENTITY is set, but `env.encrypted_dotenv`"),
        "{report}"
    );
    assert!(
        !report.contains("moat-check-unset"),
        "a placeholder leaked: {report}"
    );

    // A clean config lists each operation with its mode.
    let good = shipped();
    let checked = moat_in(good.path(), &["check"], &[("MOAT_JWT_SECRET", SECRET)]);
    let report = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(
        report
            .lines()
            .any(|l| l.contains("health_health_get") && l.contains("enforce")),
        "{report}"
    );
}

#[test]
fn auth_log_lines_say_which_request_and_which_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = support::moat_keys(&store, &["new", "--id", "ops", "--scopes", "predict"]);
    let upstream = Upstream::start();
    let moat = Moat::start(&support::keyed_config(&upstream, &store));
    // Another secret of the right shape: one character in the middle changed.
    let at = "moat_ops_".len() + 10;
    let swapped = if &key[at..=at] == "A" { "B" } else { "A" };
    let wrong = format!("{}{swapped}{}", &key[..at], &key[at + 1..]);
    assert_eq!(
        get(
            moat.addr,
            "/v1/models",
            &[&format!("X-API-Key: {wrong}"), "X-Request-Id: req-wrong-1"]
        )
        .status,
        401
    );
    assert_eq!(
        get(
            moat.addr,
            "/v1/models",
            &[&format!("X-API-Key: {key}"), "X-Request-Id: req-good-1"]
        )
        .status,
        200
    );
    assert!(support::eventually(|| moat.access_log().len() >= 2));
    let lines = moat.lines();
    let refused = lines
        .iter()
        .find(|l| l.contains("API key refused"))
        .expect("a refusal line");
    let refused: serde_json::Value = serde_json::from_str(refused).unwrap();
    assert_eq!(refused["request_id"], "req-wrong-1", "{refused}");
    assert_eq!(refused["claimed_key_id"], "ops", "{refused}");
    assert!(
        refused.get("key_id").is_none(),
        "an unverified id logged as verified"
    );
    assert!(
        !lines.join("\n").contains(&wrong[10..]),
        "the secret reached the log"
    );
    let access = moat.access_log();
    let good = access
        .iter()
        .find(|l| l["request_id"] == "req-good-1")
        .unwrap();
    assert_eq!(good["key_id"], "ops", "{good}");
}

#[test]
fn a_dotenv_parse_error_names_its_line_but_not_its_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "GOOD=1\n# comment\nthis is not=valid 'secret-text\n",
    )
    .unwrap();
    let path = dir.path().join("moat.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nupstream: {{url: http://127.0.0.1:1}}\nenv: {{dotenv: {}}}\n",
            dir.path().join(".env").display()
        ),
    )
    .unwrap();
    let report = text(&run_moat(
        &["check", "--config", path.to_str().unwrap()],
        &[],
    ));
    assert!(report.contains("line 3"), "{report}");
    assert!(!report.contains("secret-text"), "{report}");
}

/// The Kubernetes example's config (read from its ConfigMap) loads as moat reads it.
#[test]
fn the_kubernetes_example_config_parses_with_its_sizing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest =
        std::fs::read_to_string(root.join("examples/kubernetes/configmap.yaml")).unwrap();
    let start = manifest.find("  moat.yaml: |\n").unwrap() + "  moat.yaml: |\n".len();
    let block: String = manifest[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| format!("{}\n", line.get(4..).unwrap_or("")))
        .collect();
    let env = |name: &str| match name {
        "MOAT_JWT_SECRET" => Some(SECRET.to_owned()),
        "MOAT_KEY_PEPPER" => Some("pepper".to_owned()),
        "MOAT_REDIS_URL" => Some("rediss://moat:pw@redis.limits.svc:6380/0".to_owned()),
        _ => None,
    };
    let config = moat::config::Config::parse(&block, &env).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(config.limits.hash_workers, Some(2));
    let moat::config::LimitStore::Redis(redis) = &config.limits.store else {
        panic!("two replicas count their limits in Redis");
    };
    assert_eq!(redis.on_error, moat::config::OnError::Local);
    assert!(config.policy.client_rate_limit.is_some());
}
