//! Fuzz target of `moat.yaml` parsing (`fuzz/`, replayed by `tests/fuzz_targets.rs`): any
//! text with `${VAR}` references is a config or a list of errors, never a panic; the lenient
//! reading (`moat check`) agrees on whether it is a config.

use super::Config;

/// Variables the fuzzed text may reference; `*_FILE` ones are never set (they name files).
fn env(name: &str) -> Option<String> {
    match name {
        "UPSTREAM" => Some("http://127.0.0.1:8000".to_owned()),
        "PORT" => Some("8080".to_owned()),
        "SECRET" => Some("0123456789abcdef0123456789abcdef".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

pub fn target(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match Config::parse(text, &env) {
        Ok(_) => {}
        Err(errors) => assert!(!errors.is_empty(), "refused without a reason"),
    }
    let _ = Config::parse_leniently(text, &env);
}
