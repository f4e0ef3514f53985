//! Credential checks: a cached bearer token and a cached API key (what every request after
//! the first pays), uncached RS256 and ES256 signature checks, and one argon2id verify.
//! Run: `cargo bench --bench credentials`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use moat::auth::api_key::{ApiKeyVerifier, hash_key, verify_hash};
use moat::auth::jwt::JwtVerifier;
use moat::auth::keystore::{KeyStore, new_key};
use moat::config::{ApiKeyConfig, JwtConfig};
use serde_json::json;

fn jwt_config(algorithm: &str, public_key: &std::path::Path) -> JwtConfig {
    JwtConfig {
        issuer: "https://login.example.com/".into(),
        audience: vec!["model-api".into()],
        algorithms: vec![algorithm.into()],
        jwks_file: None,
        jwks_url: None,
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refresh: Duration::from_secs(30),
        public_key_file: Some(public_key.to_owned()),
        secret: None,
        leeway: Duration::from_secs(30),
        scope_claim: "scope".into(),
    }
}

fn token(algorithm: Algorithm, key: &EncodingKey, n: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": "https://login.example.com/", "aud": "model-api", "sub": format!("user-{n}"),
                        "exp": now + 3600, "iat": now, "scope": "predict models:read"});
    encode(&Header::new(algorithm), &claims, key).unwrap()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, name, generate) in [
        (Algorithm::RS256, "RS256", &rcgen::PKCS_RSA_SHA256),
        (Algorithm::ES256, "ES256", &rcgen::PKCS_ECDSA_P256_SHA256),
    ] {
        let pair = rcgen::KeyPair::generate_for(generate).unwrap();
        let public = dir.path().join(format!("{name}.pem"));
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let signing = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()),
            _ => EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()),
        }
        .unwrap();
        let verifier = JwtVerifier::new(&jwt_config(name, &public)).unwrap();
        let cached = token(algorithm, &signing, 0);
        verifier.verify(&cached).unwrap();
        c.bench_function(&format!("jwt: cached {name} token"), |b| {
            b.iter(|| verifier.verify(black_box(&cached)).unwrap())
        });
        // Distinct tokens, so each one is a real signature check.
        let fresh: Vec<String> = (1..=2000).map(|n| token(algorithm, &signing, n)).collect();
        let mut next = fresh.iter().cycle();
        c.bench_function(&format!("jwt: uncached {name} verify"), |b| {
            b.iter(|| {
                verifier.clear_cache();
                verifier.verify(black_box(next.next().unwrap())).unwrap()
            })
        });
    }

    let key = new_key("bench");
    let hash = hash_key(&key, None).unwrap();
    let store = KeyStore::parse(&format!(
        "keys:\n  - id: bench\n    hash: \"{hash}\"\n    scopes: [predict]\n"
    ))
    .unwrap();
    let config = ApiKeyConfig {
        header: "X-API-Key".into(),
        query: None,
        cookie: None,
        bearer: false,
        store: moat::config::KeySource::File(dir.path().join("unused")),
        cache_ttl: Duration::from_secs(300),
        max_store_age: None,
        pepper: None,
    };
    let verifier = ApiKeyVerifier::new(&config, store, None).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = "127.0.0.1".parse().unwrap();
    runtime.block_on(verifier.verify(&key, client)).unwrap();
    c.bench_function("api key: cached check", |b| {
        b.iter(|| {
            runtime
                .block_on(verifier.verify(black_box(&key), client))
                .unwrap()
        })
    });
    let mut group = c.benchmark_group("argon2");
    group.sample_size(10);
    group.bench_function("api key: argon2id verify (m=19 MiB, t=2, p=1)", |b| {
        b.iter(|| assert!(verify_hash(black_box(&key), &hash, None)))
    });
    group.finish();
}

criterion_group!(credentials, benches);
criterion_main!(credentials);
