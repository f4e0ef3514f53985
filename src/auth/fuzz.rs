//! Fuzz targets of stage 3's parsers (`fuzz/`, replayed by `tests/fuzz_targets.rs`).
//! `credentials`: a bearer token or API key read from any header, query or cookie bytes is
//! one non-empty value that was sent, or a refusal. `api_key`: a key that is malformed or
//! names an unknown id never reaches the hasher. `key_store`: any text is a store whose ids
//! are valid, or errors. `jwt`: any token, and any claims signed with the right key, is a
//! verified identity that meets the claim rules (a non-empty subject of at most 512 bytes,
//! no control character), or a refusal.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Caller;
use super::api_key::{ApiKeyVerifier, KeyLocation};
use super::extract::{api_key as key_in, bearer_token};
use super::jwt::JwtVerifier;
use super::keystore::{KeyStore, parse_key, valid_id};
use crate::config::{ApiKeyConfig, JwtConfig, Secret};

/// The input's lines as header values (and the first as a query string).
pub fn credentials(bytes: &[u8]) {
    let mut headers = HeaderMap::new();
    let mut lines = bytes.split(|&b| b == b'\n');
    let query = lines.next().and_then(|q| std::str::from_utf8(q).ok());
    let names = [
        http::header::AUTHORIZATION,
        HeaderName::from_static("x-api-key"),
        http::header::COOKIE,
    ];
    for (line, name) in lines.zip(names.iter().cycle()) {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(name.clone(), value);
        }
    }
    if let Ok(Some(token)) = bearer_token(&headers) {
        // What was sent after the scheme, without the whitespace around it.
        let sent = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let after_scheme = sent.and_then(|v| v.split_once(' ')).map(|(_, t)| t.trim());
        assert!(
            !token.is_empty() && after_scheme == Some(token),
            "{token:?}"
        );
    }
    let caller = Caller {
        headers: &headers,
        query,
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
        operation: None,
        request_id: "",
    };
    for location in [
        KeyLocation::Header(HeaderName::from_static("x-api-key")),
        KeyLocation::Query("api_key".to_owned()),
        KeyLocation::Cookie("key".to_owned()),
    ] {
        let _ = key_in(&caller, &location);
    }
}

/// Hashes run by the `api_key` target's verifier (it hashes nothing for real).
static HASHES: AtomicUsize = AtomicUsize::new(0);
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn counting_hasher(_: &str, _: &str, _: Option<&Secret>) -> bool {
    HASHES.fetch_add(1, Ordering::SeqCst);
    false
}

/// A verifier whose store holds the one id `fuzz`.
static VERIFIER: LazyLock<(tokio::runtime::Runtime, ApiKeyVerifier)> = LazyLock::new(|| {
    let store = "keys:\n  - id: fuzz\n    hash: \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI\"\n";
    let config = ApiKeyConfig {
        header: "X-API-Key".to_owned(),
        query: None,
        cookie: None,
        bearer: false,
        store: crate::config::KeySource::File("keys.yaml".into()),
        cache_ttl: Duration::from_secs(300),
        max_store_age: None,
        pepper: None,
    };
    let store = KeyStore::parse(store).unwrap_or_else(|e| panic!("the fuzz store: {e:?}"));
    let mut verifier = ApiKeyVerifier::new(&config, store, Some(1))
        .unwrap_or_else(|e| panic!("the fuzz verifier: {e}"));
    verifier.hash_verifier = counting_hasher;
    let runtime = tokio::runtime::Builder::new_current_thread().build();
    (
        runtime.unwrap_or_else(|e| panic!("a runtime: {e}")),
        verifier,
    )
});

pub fn api_key(bytes: &[u8]) {
    let Ok(key) = std::str::from_utf8(bytes) else {
        return;
    };
    let id = parse_key(key);
    if let Some(id) = id {
        assert!(valid_id(id) && key.starts_with("moat_"), "{key:?}");
    }
    let (runtime, verifier) = &*VERIFIER;
    // One call at a time, so the count is this call's (tests run targets on two threads).
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = HASHES.load(Ordering::SeqCst);
    let _ = runtime.block_on(verifier.verify(key, IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let hashed = HASHES.load(Ordering::SeqCst) > before;
    assert!(!hashed || id == Some("fuzz"), "{key:?} reached the hasher");
}

pub fn key_store(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match KeyStore::parse(text) {
        Ok(store) => assert!(store.records.keys().all(|id| valid_id(id))),
        Err(errors) => assert!(!errors.is_empty()),
    }
}

/// A 32-byte HS256 secret, the fuzz verifier's.
const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-sec";

static JWT: LazyLock<JwtVerifier> = LazyLock::new(|| {
    let config = JwtConfig {
        issuer: "https://issuer.example/".to_owned(),
        audience: vec!["model".to_owned()],
        algorithms: vec!["HS256".to_owned()],
        jwks_file: None,
        jwks_url: None,
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refresh: Duration::from_secs(30),
        public_key_file: None,
        secret: Some(Secret::from(SECRET.to_owned())),
        leeway: Duration::from_secs(30),
        scope_claim: "scope".to_owned(),
    };
    JwtVerifier::new(&config).unwrap_or_else(|e| panic!("the fuzz verifier: {e}"))
});

/// The input as a token, then as the claims of a token signed with the verifier's key.
pub fn jwt(bytes: &[u8]) {
    if let Ok(token) = std::str::from_utf8(bytes) {
        let _ = JWT.verify(token);
    }
    if let Ok(verified) = JWT.verify(&signed(bytes)) {
        let subject = verified.subject.as_str();
        assert!(!subject.is_empty() && subject.len() <= 512, "{subject:?}");
        assert!(!subject.chars().any(char::is_control), "{subject:?}");
    }
}

/// A token of `claims` (any bytes), signed with the fuzz verifier's key.
fn signed(claims: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let Ok(key) = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()) else {
        panic!("an HS256 key");
    };
    let algorithm = jsonwebtoken::Algorithm::HS256;
    match jsonwebtoken::crypto::sign(message.as_bytes(), &key, algorithm) {
        Ok(signature) => format!("{message}.{signature}"),
        Err(error) => panic!("signing with an HS256 key: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The targets reach what they guard: a well-formed key of the known id is hashed, and
    /// well-formed claims verify.
    #[test]
    fn the_targets_reach_the_hasher_and_the_claim_checks() {
        let key = crate::auth::keystore::new_key("fuzz");
        let before = HASHES.load(Ordering::SeqCst);
        api_key(key.as_bytes());
        assert!(HASHES.load(Ordering::SeqCst) > before);
        let claims =
            br#"{"iss":"https://issuer.example/","aud":"model","sub":"u","exp":4102444800}"#;
        assert!(JWT.verify(&signed(claims)).is_ok());
        assert!(JWT.verify(&signed(br#"{"sub":"u"}"#)).is_err());
    }
}
