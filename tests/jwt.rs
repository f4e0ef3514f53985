//! Bearer JWTs end to end: keys generated here (HMAC, RSA, EC P-256, Ed25519), real signed
//! tokens, and every attack the design names refused with 401 before anything reaches the
//! model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::{Moat, Upstream, config, fixture, get, now, post_json};

const ISSUER: &str = "https://login.example.com/";
const AUDIENCE: &str = "model-api";
const SECRET: &str = "0123456789abcdef0123456789abcdef-hmac";

fn claims(scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() + 600, "iat": now(), "scope": scope})
}

fn hs256(claims: &Value) -> String {
    support::hs256(SECRET, claims)
}

/// moat in front of the model spec, with `predict` needing scope `predict`, `/health`
/// public, everything else any valid token.
fn moat(upstream: &Upstream, scheme: &str) -> Moat {
    let extra = format!(
        "openapi:\n  file: {}\nauth:\n  schemes:\n    bearer:\n{scheme}policy:\n  default: [{{bearer: []}}]\n  operations:\n    predict: [{{bearer: [predict]}}]\n    health: []\n",
        fixture("model.yaml")
    );
    Moat::start(&config(&upstream.url(), &extra))
}

fn hmac_scheme() -> String {
    format!(
        "      type: jwt\n      issuer: \"{ISSUER}\"\n      audience: [{AUDIENCE}]\n      algorithms: [HS256]\n      secret: \"{SECRET}\"\n"
    )
}

const PREDICT: &str = "/v1/models/iris:predict";
const BODY: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;

fn predict_with(moat: &Moat, authorization: &str) -> support::RawResponse {
    let header = format!("Authorization: {authorization}");
    post_json(moat.addr, PREDICT, &[&header, "X-Tenant: t-1"], BODY)
}

/// RFC 7519 §2: a NumericDate is any JSON number of seconds, fractions included.
#[test]
fn fractional_numeric_dates_are_accepted() {
    let upstream = Upstream::start();
    let moat = moat(&upstream, &hmac_scheme());
    let mut fractional = claims("predict");
    fractional["exp"] = json!(now() as f64 + 600.5);
    fractional["iat"] = json!(now() as f64 - 0.25);
    fractional["nbf"] = json!(now() as f64 - 1.75);
    let response = predict_with(&moat, &format!("Bearer {}", hs256(&fractional)));
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let mut integral_float = claims("predict");
    integral_float["exp"] = json!(1.0 * (now() + 600) as f64);
    let response = predict_with(&moat, &format!("Bearer {}", hs256(&integral_float)));
    assert_eq!(response.status, 200);
}

#[test]
fn a_valid_token_with_the_scope_is_forwarded_with_the_identity_and_without_the_token() {
    let upstream = Upstream::start();
    let moat = moat(&upstream, &hmac_scheme());
    let token = hs256(&claims("predict models:read"));
    let response = predict_with(&moat, &format!("bearer {token}"));
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let seen = &upstream.requests()[0];
    assert_eq!(seen.header("x-moat-subject"), Some("alice"));
    assert_eq!(seen.header("x-moat-scopes"), Some("predict models:read"));
    assert_eq!(seen.header("authorization"), None);
    let log = moat.wait_for_access_lines(1);
    assert_eq!(log[0]["subject"], "alice");
    let lines = moat.lines().join("\n");
    assert!(!lines.contains(&token), "the token reached the log");
}

#[test]
fn missing_credentials_are_401_with_a_challenge_and_public_operations_need_none() {
    let upstream = Upstream::start();
    let moat = moat(&upstream, &hmac_scheme());
    let response = post_json(moat.addr, PREDICT, &["X-Tenant: t-1"], BODY);
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["code"], "credentials_missing");
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="moat""#)
    );
    let basic = predict_with(&moat, "Basic YWxpY2U6cGFzcw==");
    assert_eq!(basic.status, 401);
    assert_eq!(get(moat.addr, "/health", &[]).status, 200);
    assert_eq!(upstream.count(), 1);
}

#[test]
fn a_token_without_the_scope_is_403_insufficient_scope() {
    let upstream = Upstream::start();
    let moat = moat(&upstream, &hmac_scheme());
    let token = hs256(&claims("models:read"));
    let response = predict_with(&moat, &format!("Bearer {token}"));
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["code"], "insufficient_scope");
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer realm="moat", error="insufficient_scope", scope="predict""#)
    );
    // The same token is enough where no scope is required.
    let listed = get(
        moat.addr,
        "/v1/models",
        &[&format!("Authorization: Bearer {token}")],
    );
    assert_eq!(listed.status, 200);
    assert_eq!(upstream.count(), 1);
}

fn forge(header: Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Each case one sentence; every one must be refused with 401 and never forwarded.
#[test]
fn every_token_attack_is_401_and_never_forwarded() {
    let upstream = Upstream::start();
    let moat = moat(&upstream, &hmac_scheme());
    let good = hs256(&claims("predict"));
    let mut parts = good.splitn(3, '.');
    let (good_header, _, good_signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("predict");
        f(&mut c);
        hs256(&c)
    };
    let tampered = format!(
        "{good_header}.{}.{good_signature}",
        URL_SAFE_NO_PAD.encode(claims("predict admin").to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            forge(json!({"alg": "none", "typ": "JWT"}), &claims("predict"), ""),
        ),
        (
            "alg NoNe",
            forge(json!({"alg": "NoNe", "typ": "JWT"}), &claims("predict"), ""),
        ),
        (
            "alg HS512 not in the allowlist",
            encode(
                &Header::new(Algorithm::HS512),
                &claims("predict"),
                &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
            )
            .unwrap(),
        ),
        (
            "signed with another secret",
            encode(
                &Header::new(Algorithm::HS256),
                &claims("predict"),
                &EncodingKey::from_secret(b"another-secret-another-secret-xx").unwrap(),
            )
            .unwrap(),
        ),
        ("expired", with(&|c| c["exp"] = json!(now() - 3600))),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now() + 3600)),
        ),
        (
            "iat in the future",
            with(&|c| c["iat"] = json!(now() + 3600)),
        ),
        (
            "missing exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "missing iss",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
        (
            "missing aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "missing sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.example.com/")),
        ),
        (
            "iss in another case",
            with(&|c| c["iss"] = json!("HTTPS://LOGIN.EXAMPLE.COM/")),
        ),
        ("iss as an array", with(&|c| c["iss"] = json!([ISSUER]))),
        ("wrong aud", with(&|c| c["aud"] = json!("other-api"))),
        ("tampered payload", tampered),
        (
            "signature stripped",
            format!("{}.", good.rsplit_once('.').unwrap().0),
        ),
        (
            "crit header",
            forge(
                json!({"alg": "HS256", "crit": ["exp"], "exp": 1}),
                &claims("predict"),
                good_signature,
            ),
        ),
        (
            "oversized token",
            with(&|c| c["pad"] = json!("x".repeat(9000))),
        ),
        ("not a JWT", "not-a-token".to_owned()),
        ("negative exp", with(&|c| c["exp"] = json!(-1))),
        (
            "fractional exp in the past",
            with(&|c| c["exp"] = json!(now() as f64 - 60.5)),
        ),
        ("exp beyond u64", with(&|c| c["exp"] = json!(1.0e20))),
        (
            "exp as a string",
            with(&|c| c["exp"] = json!((now() + 600).to_string())),
        ),
        ("negative nbf", with(&|c| c["nbf"] = json!(-5.5))),
        (
            "fractional nbf in the future",
            with(&|c| c["nbf"] = json!(now() as f64 + 3600.5)),
        ),
        ("iat beyond u64", with(&|c| c["iat"] = json!(1.0e20))),
    ];
    for (case, token) in &cases {
        let response = predict_with(&moat, &format!("Bearer {token}"));
        assert_eq!(response.status, 401, "{case}");
        let code = response.json()["code"].as_str().unwrap().to_owned();
        assert!(
            code == "invalid_token" || code == "token_expired",
            "{case}: {code}"
        );
        assert!(
            response
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token"),
            "{case}"
        );
    }
    // Two Authorization headers, even both valid: refused.
    let two = post_json(
        moat.addr,
        PREDICT,
        &[
            &format!("Authorization: Bearer {good}"),
            &format!("Authorization: Bearer {good}"),
            "X-Tenant: t-1",
        ],
        BODY,
    );
    assert_eq!(two.status, 401);
    // A token in the query string is not a credential.
    let query = post_json(
        moat.addr,
        &format!("{PREDICT}?access_token={good}"),
        &["X-Tenant: t-1"],
        BODY,
    );
    assert_eq!(query.status, 401);
    assert_eq!(upstream.count(), 0, "{:?}", upstream.requests());
    assert_eq!(predict_with(&moat, &format!("Bearer {good}")).status, 200);
}

#[test]
fn rs256_es256_and_eddsa_tokens_verify_with_their_public_keys_and_resist_key_confusion() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, name, generate) in [
        (Algorithm::RS256, "RS256", &rcgen::PKCS_RSA_SHA256),
        (Algorithm::ES256, "ES256", &rcgen::PKCS_ECDSA_P256_SHA256),
        (Algorithm::EdDSA, "EdDSA", &rcgen::PKCS_ED25519),
    ] {
        let pair = rcgen::KeyPair::generate_for(generate).unwrap();
        let public = dir.path().join(format!("{name}.pem"));
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let private = pair.serialize_pem();
        let signing = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(private.as_bytes()),
            _ => EncodingKey::from_ed_pem(private.as_bytes()),
        }
        .unwrap();
        let upstream = Upstream::start();
        let scheme = format!(
            "      type: jwt\n      issuer: \"{ISSUER}\"\n      audience: {AUDIENCE}\n      algorithms: [{name}]\n      public_key_file: {}\n",
            public.display()
        );
        let moat = moat(&upstream, &scheme);
        let token = encode(&Header::new(algorithm), &claims("predict"), &signing).unwrap();
        assert_eq!(
            predict_with(&moat, &format!("Bearer {token}")).status,
            200,
            "{name}"
        );
        // The same request again is served from the verified-token cache.
        assert_eq!(
            predict_with(&moat, &format!("Bearer {token}")).status,
            200,
            "{name}"
        );
        // HS256 signed with the public key's PEM as the HMAC secret: the classic confusion.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims("predict"),
            &EncodingKey::from_secret(pair.public_key_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            predict_with(&moat, &format!("Bearer {confused}")).status,
            401,
            "{name}"
        );
        assert_eq!(upstream.count(), 2, "{name}");
    }
}

#[test]
fn a_jwks_file_selects_the_key_by_kid_and_an_unknown_kid_is_401() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&signing, Algorithm::ES256).unwrap();
    let mut jwk = serde_json::to_value(jwk).unwrap();
    jwk["kid"] = json!("key-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let upstream = Upstream::start();
    let scheme = format!(
        "      type: jwt\n      issuer: \"{ISSUER}\"\n      audience: {AUDIENCE}\n      algorithms: [ES256]\n      jwks_file: {}\n",
        jwks.display()
    );
    let moat = moat(&upstream, &scheme);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("key-1".into());
    let token = encode(&header, &claims("predict"), &signing).unwrap();
    assert_eq!(predict_with(&moat, &format!("Bearer {token}")).status, 200);
    header.kid = Some("key-2".into());
    let unknown = encode(&header, &claims("predict"), &signing).unwrap();
    assert_eq!(
        predict_with(&moat, &format!("Bearer {unknown}")).status,
        401
    );
    header.kid = None;
    let no_kid = encode(&header, &claims("predict"), &signing).unwrap();
    assert_eq!(predict_with(&moat, &format!("Bearer {no_kid}")).status, 401);
    assert_eq!(upstream.count(), 1);
}

#[test]
fn a_scheme_used_but_not_bound_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.yaml");
    std::fs::write(
        &path,
        config(
            "http://127.0.0.1:1",
            &format!(
                "openapi:\n  file: {}\npolicy:\n  default: [{{oauth: [read]}}]\n",
                fixture("model.yaml")
            ),
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`oauth` is not bound"), "{stderr}");
}

/// A tiny identity-provider stand-in serving a JWKS that the test can change or break.
struct JwksServer {
    addr: std::net::SocketAddr,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = JwksServer {
            addr: listener.local_addr().unwrap(),
            body: std::sync::Arc::new(std::sync::Mutex::new(body)),
            fetches: Default::default(),
            broken: Default::default(),
        };
        let (body, fetches, broken) = (
            server.body.clone(),
            server.fetches.clone(),
            server.broken.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                fetches.fetch_add(1, Ordering::SeqCst);
                let response = if broken.load(Ordering::SeqCst) {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                } else {
                    let body = body.lock().unwrap().clone();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(response.as_bytes());
            }
        });
        server
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&signing, Algorithm::ES256).unwrap(),
    )
    .unwrap();
    jwk["kid"] = json!(kid);
    (signing, jwk)
}

fn es256(signing: &EncodingKey, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(&header, &claims("predict"), signing).unwrap()
}

#[test]
fn a_jwks_url_is_fetched_refreshed_for_a_new_kid_at_most_once_and_kept_when_the_provider_fails() {
    let (first, first_jwk) = ec_key("key-1");
    let (second, second_jwk) = ec_key("key-2");
    let provider = JwksServer::start(json!({"keys": [first_jwk.clone()]}).to_string());
    let upstream = Upstream::start();
    let scheme = format!(
        "      type: jwt\n      issuer: \"{ISSUER}\"\n      audience: {AUDIENCE}\n      algorithms: [ES256]\n      jwks_url: http://{}/jwks.json\n      jwks_min_refresh: 500ms\n",
        provider.addr
    );
    let moat = moat(&upstream, &scheme);
    assert_eq!(provider.fetches(), 1, "fetched once at start");
    assert_eq!(
        predict_with(&moat, &format!("Bearer {}", es256(&first, "key-1"))).status,
        200
    );

    // The provider rotates a key in; a token naming it makes moat refresh, once.
    *provider.body.lock().unwrap() = json!({"keys": [first_jwk, second_jwk]}).to_string();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let rotated = es256(&second, "key-2");
    assert_eq!(
        predict_with(&moat, &format!("Bearer {rotated}")).status,
        200
    );
    assert_eq!(provider.fetches(), 2);
    // Forged kids right after cannot make moat hammer the provider.
    for i in 0..5 {
        let forged = es256(&second, &format!("forged-{i}"));
        assert_eq!(predict_with(&moat, &format!("Bearer {forged}")).status, 401);
    }
    assert_eq!(
        provider.fetches(),
        2,
        "refreshed within the minimum interval"
    );

    // The provider fails: the last good set keeps working.
    provider
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let forged = es256(&second, "forged-again");
    assert_eq!(predict_with(&moat, &format!("Bearer {forged}")).status, 401);
    assert_eq!(provider.fetches(), 3);
    assert_eq!(
        predict_with(&moat, &format!("Bearer {}", es256(&second, "key-2"))).status,
        200
    );
    assert_eq!(upstream.count(), 3);
}
