//! Unit tests of `config`.

use super::vars::variable_references;
use super::*;

const MINIMAL: &str = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:8000\n";

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let config = Config::parse(MINIMAL, &no_env).expect("loads");
    assert_eq!(config.admin_listen, "127.0.0.1:9090".parse().unwrap());
    assert_eq!(config.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(config.upstream.pool_idle_timeout, Duration::from_secs(4));
    assert_eq!(config.limits.max_body_bytes, 1_048_576);
    assert_eq!(config.limits.max_header_bytes, 16_384);
    assert!(!config.policy.forward_credentials);
    assert!(config.upstream.is_loopback());
}

#[test]
fn an_unknown_key_is_an_error_naming_the_key_and_line() {
    let text = format!("{MINIMAL}limits:\n  max_body_byte: 10\n");
    let problems = Config::parse(&text, &no_env).unwrap_err();
    assert!(problems[0].contains("max_body_byte"), "{problems:?}");
    assert!(problems[0].contains("line 5"), "{problems:?}");
}

#[test]
fn a_duplicate_key_is_an_error() {
    let text = format!("{MINIMAL}listen: 127.0.0.1:9000\n");
    let problems = Config::parse(&text, &no_env).unwrap_err();
    assert!(problems[0].contains("duplicate"), "{problems:?}");
}

#[test]
fn durations_are_humantime_and_a_bad_one_says_how_to_write_it() {
    let text = format!("{MINIMAL}  response_timeout: 90s\n");
    let config = Config::parse(&text, &no_env).expect("loads");
    assert_eq!(config.upstream.response_timeout, Duration::from_secs(90));
    let text = format!("{MINIMAL}  response_timeout: soon\n");
    let problems = Config::parse(&text, &no_env).unwrap_err();
    assert!(problems[0].contains("`30s`"), "{problems:?}");
    assert!(problems[0].contains("line 4"), "{problems:?}");
}

#[test]
fn variables_expand_in_plain_and_quoted_scalars_and_numbers() {
    let text = "listen: ${ADDR}\nupstream:\n  url: \"http://${HOST}:8000\"\nlimits:\n  \
                max_body_bytes: ${MAX:-2048}\n";
    let env = env_of(&[("ADDR", "127.0.0.1:7000"), ("HOST", "localhost")]);
    let config = Config::parse(text, &env).expect("loads");
    assert_eq!(config.listen.port(), 7000);
    assert_eq!(config.upstream.url.host(), Some("localhost"));
    assert_eq!(config.limits.max_body_bytes, 2048);
}

#[test]
fn a_value_with_yaml_syntax_stays_one_scalar() {
    let text = "listen: 127.0.0.1:1\nupstream:\n  url: http://127.0.0.1:8000\n  \
                connect_timeout: ${T}\n";
    let env = env_of(&[("T", "1s\nlisten: 0.0.0.0:80")]);
    let problems = Config::parse(text, &env).unwrap_err();
    assert!(problems[0].contains("not a duration"), "{problems:?}");
}

#[test]
fn an_unset_variable_without_default_is_an_error_naming_it_and_the_line() {
    let text = format!("{MINIMAL}limits:\n  max_body_bytes: ${{NOPE}}\n");
    let problems = Config::parse(&text, &no_env).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("line 5:"), "{problems:?}");
    assert!(problems[0].contains("`NOPE`"), "{problems:?}");
}

#[test]
fn var_file_is_read_when_the_variable_is_unset_and_the_variable_wins_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("addr");
    std::fs::write(&file, "127.0.0.1:7001\n").unwrap();
    let file_name: &'static str = Box::leak(file.display().to_string().into_boxed_str());
    let text = "listen: ${ADDR}\nupstream:\n  url: http://127.0.0.1:8000\n";
    let pairs: &'static [(&str, &str)] = Box::leak(Box::new([("ADDR_FILE", file_name)]));
    let config = Config::parse(text, &env_of(pairs)).expect("loads");
    assert_eq!(config.listen.port(), 7001);
    let pairs: &'static [(&str, &str)] = Box::leak(Box::new([
        ("ADDR_FILE", file_name),
        ("ADDR", "127.0.0.1:7002"),
    ]));
    let config = Config::parse(text, &env_of(pairs)).expect("loads");
    assert_eq!(config.listen.port(), 7002);
}

#[test]
fn double_dollar_is_a_literal_and_comments_are_not_scanned() {
    let refs = variable_references("a: $${X} ${Y:-1} $Z");
    let names: Vec<_> = refs.iter().map(|r| (r.name, r.has_default)).collect();
    assert_eq!(names, vec![("Y", true), ("Z", false)]);
    let text = format!("# uses ${{UNSET}}\n{MINIMAL}");
    assert!(Config::parse(&text, &no_env).is_ok());
}

#[test]
fn the_upstream_must_be_plain_http_with_a_host() {
    for bad in [
        "https://127.0.0.1:8000",
        "127.0.0.1:8000",
        "http://x:1/?q=1",
        "ftp://a",
    ] {
        let text = format!("listen: 127.0.0.1:1\nupstream:\n  url: \"{bad}\"\n");
        assert!(Config::parse(&text, &no_env).is_err(), "{bad} accepted");
    }
}

#[test]
fn a_remote_upstream_is_not_loopback() {
    let text = "listen: 127.0.0.1:1\nupstream:\n  url: http://10.1.2.3:8000\n";
    assert!(!Config::parse(text, &no_env).unwrap().upstream.is_loopback());
    let text = "listen: 127.0.0.1:1\nupstream:\n  url: http://[::1]:8000\n";
    assert!(Config::parse(text, &no_env).unwrap().upstream.is_loopback());
}

#[test]
fn openapi_takes_a_file_or_a_url_but_not_both() {
    let both =
        format!("{MINIMAL}openapi:\n  file: a.yaml\n  url: http://127.0.0.1:8000/openapi.json\n");
    assert!(Config::parse(&both, &no_env).is_err());
    let neither = format!("{MINIMAL}openapi:\n  reject_unknown_query: true\n");
    assert!(Config::parse(&neither, &no_env).is_err());
    let file = format!("{MINIMAL}openapi:\n  file: a.yaml\npolicy:\n  mode: shadow\n");
    let config = Config::parse(&file, &no_env).expect("loads");
    assert_eq!(config.policy.mode, Mode::Shadow);
    let bad_mode = format!("{MINIMAL}policy:\n  mode: audit\n");
    assert!(Config::parse(&bad_mode, &no_env).is_err());
}

#[test]
fn a_dotenv_file_fills_variables_the_environment_does_not_set() {
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        "MOAT_TEST_DOTENV_ADDR=127.0.0.1:7100\nMOAT_TEST_DOTENV_BODY=77\n",
    )
    .unwrap();
    let config = dir.path().join("moat.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: ${{MOAT_TEST_DOTENV_ADDR}}\nupstream:\n  url: http://127.0.0.1:8000\nlimits:\n  max_body_bytes: ${{MOAT_TEST_DOTENV_BODY}}\nenv:\n  dotenv: {}\n",
            dotenv.display()
        ),
    )
    .unwrap();
    let loaded = Config::load(&config).expect("loads");
    assert_eq!(loaded.listen.port(), 7100);
    assert_eq!(loaded.limits.max_body_bytes, 77);
    let missing = config.with_file_name("missing.yaml");
    std::fs::write(&missing, "listen: 127.0.0.1:1\nupstream:\n  url: http://127.0.0.1:8000\nenv:\n  dotenv: /nonexistent/.env\n").unwrap();
    let problem = Config::load(&missing).unwrap_err().to_string();
    assert!(problem.contains("env.dotenv"), "{problem}");
}

#[test]
fn cross_field_problems_are_all_reported() {
    let text = "listen: 127.0.0.1:9090\nupstream:\n  url: http://127.0.0.1:8000\n  \
                connect_timeout: 0s\nlimits:\n  max_body_bytes: 0\n";
    let problems = Config::parse(text, &no_env).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn runtime_threads_default_to_the_usable_cores_and_zero_is_refused() {
    let config = Config::parse(MINIMAL, &no_env).expect("loads");
    assert_eq!(config.runtime.threads(), super::usable_cores());
    let three = Config::parse(&format!("{MINIMAL}runtime: {{threads: 3}}\n"), &no_env);
    assert_eq!(three.expect("loads").runtime.threads(), 3);
    let zero = Config::parse(&format!("{MINIMAL}runtime: {{threads: 0}}\n"), &no_env);
    let problem = zero.unwrap_err().join("\n");
    assert!(problem.contains("line 4"), "{problem}");
}

#[test]
fn llm_bound_fields_default_to_both_names_and_an_empty_or_misspelled_list_is_an_error() {
    let config = Config::parse(MINIMAL, &no_env).unwrap();
    assert_eq!(
        config.policy.max_tokens_fields.0,
        [BoundField::MaxTokens, BoundField::MaxCompletionTokens]
    );
    assert!(!config.policy.asks_stream_usage());
    let llama = format!("{MINIMAL}policy:\n  max_tokens_fields: [max_tokens, n_predict]\n");
    let config = Config::parse(&llama, &no_env).unwrap();
    assert_eq!(
        config.policy.max_tokens_fields.0,
        [BoundField::MaxTokens, BoundField::NPredict]
    );
    let empty = format!("{MINIMAL}policy:\n  max_tokens_fields: []\n");
    let problems = Config::parse(&empty, &no_env).unwrap_err();
    assert!(problems[0].contains("max_tokens_fields"), "{problems:?}");
    let typo = format!("{MINIMAL}policy:\n  max_tokens_fields: [max_token]\n");
    let problems = Config::parse(&typo, &no_env).unwrap_err();
    assert!(problems[0].contains("max_token"), "{problems:?}");
}

#[test]
fn the_old_inject_max_tokens_is_read_as_stream_usage() {
    let old = format!("{MINIMAL}policy:\n  inject_max_tokens: true\n");
    assert!(
        Config::parse(&old, &no_env)
            .unwrap()
            .policy
            .asks_stream_usage()
    );
}

#[test]
fn a_problem_about_a_placeholder_names_the_variable_it_stands_for() {
    let text = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:8000\nauth:\n  schemes:\n    k: {type: api_key, store: \"${STORE}/keys.yaml\"}\n";
    let (config, problems) = Config::parse_leniently(text, &no_env);
    assert!(problems[0].contains("`STORE` is not set"), "{problems:?}");
    let Some(SchemeConfig::ApiKey(key)) = config.unwrap().auth.schemes.remove("k") else {
        panic!("no api_key scheme");
    };
    let problem = format!("cannot read {}: gone", key.store);
    assert!(mentions_placeholder(&problem));
    assert_eq!(
        without_placeholders(&problem),
        "cannot read ${STORE}/keys.yaml: gone"
    );
    assert_eq!(without_placeholders("plain"), "plain");
}

#[test]
fn an_answer_bound_past_the_shared_room_is_a_problem_naming_both() {
    let text = format!(
        "{MINIMAL}limits:\n  max_buffered_body_bytes: 2097152\nresponses:\n  max_body_bytes: 4194304\npolicy:\n  operations:\n    predict: {{responses: {{max_body_bytes: 3145728}}}}\n"
    );
    let problems = Config::parse(&text, &no_env).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("`responses.max_body_bytes` (4194304)"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("policy.operations.predict.responses.max_body_bytes"),
        "{problems:?}"
    );
    assert!(problems[1].contains("(2097152)"), "{problems:?}");
}
