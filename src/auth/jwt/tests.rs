//! Unit tests of `jwt`.

use super::*;
use crate::config::Secret;
use serde_json::json;

fn config(algorithm: &str) -> JwtConfig {
    JwtConfig {
        issuer: "https://issuer.example/".to_owned(),
        audience: vec!["model".to_owned()],
        algorithms: vec![algorithm.to_owned()],
        jwks_file: None,
        jwks_url: None,
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refresh: Duration::from_secs(30),
        public_key_file: None,
        secret: None,
        leeway: Duration::from_secs(30),
        scope_claim: "scope".to_owned(),
    }
}

#[test]
fn a_reload_keeps_the_verifier_while_its_config_and_key_bytes_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("jwt.pem");
    let write_key = || {
        let pair = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&pem, pair.public_key_pem()).unwrap();
    };
    write_key();
    let mut es256 = config("ES256");
    es256.public_key_file = Some(pem.clone());
    let serving = Arc::new(JwtVerifier::new(&es256).unwrap());
    let same = JwtVerifier::new(&es256).unwrap().or_previous(&serving);
    assert!(
        Arc::ptr_eq(&same, &serving),
        "an unchanged verifier was rebuilt"
    );

    let mut stricter = es256.clone();
    stricter.leeway = Duration::from_secs(5);
    let rebuilt = JwtVerifier::new(&stricter).unwrap().or_previous(&serving);
    assert!(
        !Arc::ptr_eq(&rebuilt, &serving),
        "a changed rule kept the old cache"
    );

    write_key();
    let rotated = JwtVerifier::new(&es256).unwrap().or_previous(&serving);
    assert!(
        !Arc::ptr_eq(&rotated, &serving),
        "a new key file kept the old cache"
    );

    let mut hs256 = config("HS256");
    hs256.secret = Some(Secret::from("s".repeat(32)));
    let serving = Arc::new(JwtVerifier::new(&hs256).unwrap());
    let mut other_secret = hs256.clone();
    other_secret.secret = Some(Secret::from("t".repeat(32)));
    let rebuilt = JwtVerifier::new(&other_secret)
        .unwrap()
        .or_previous(&serving);
    assert!(
        !Arc::ptr_eq(&rebuilt, &serving),
        "a new secret kept the old cache"
    );
}

#[test]
fn numeric_dates_may_be_fractional_but_must_be_finite_non_negative_and_fit_u64() {
    let date = |value: Value| numeric_date(&json!({ "exp": value }), "exp");
    assert_eq!(date(json!(1767225600)), Ok(Some(1767225600.0)));
    assert_eq!(date(json!(1767225600.5)), Ok(Some(1767225600.5)));
    assert_eq!(numeric_date(&json!({}), "exp"), Ok(None));
    for bad in [
        json!(-1),
        json!(-0.5),
        json!(1.0e20),
        json!(18446744073709551615u64),
        json!("1767225600"),
        json!(null),
        json!(true),
    ] {
        assert_eq!(date(bad.clone()), Err(JwtError::BadClaims), "{bad}");
    }
}

#[test]
fn time_rules_compare_fractions_of_a_second() {
    let now = 1000.25;
    assert_eq!(check_times(1000.5, None, None, now, 0.0), Ok(()));
    assert_eq!(
        check_times(1000.25, None, None, now, 0.0),
        Err(JwtError::Expired),
        "exp is the first instant the token is no longer valid"
    );
    assert_eq!(check_times(999.0, None, None, now, 30.0), Ok(()), "leeway");
    assert_eq!(check_times(1e9, Some(1000.0), None, now, 0.0), Ok(()));
    assert_eq!(
        check_times(1e9, Some(1000.5), None, now, 0.0),
        Err(JwtError::NotYetValid)
    );
    assert_eq!(check_times(1e9, Some(1000.5), None, now, 1.0), Ok(()));
    assert_eq!(
        check_times(1e9, None, Some(1000.5), now, 0.0),
        Err(JwtError::IssuedInFuture)
    );
    assert_eq!(check_times(1e9, None, Some(1000.0), now, 0.0), Ok(()));
}

#[test]
fn scopes_come_from_a_space_separated_claim_or_an_scp_array() {
    assert_eq!(
        scopes(&json!({"scope": "a  b"}), "scope").unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        scopes(&json!({"scp": ["a", "b"]}), "scope").unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(scopes(&json!({"perms": "x"}), "perms").unwrap(), vec!["x"]);
    assert!(scopes(&json!({}), "scope").unwrap().is_empty());
    assert_eq!(
        scopes(&json!({"scope": 5}), "scope"),
        Err(JwtError::BadClaims)
    );
    assert_eq!(
        scopes(&json!({"scp": ["a", 1]}), "scope"),
        Err(JwtError::BadClaims)
    );
}
