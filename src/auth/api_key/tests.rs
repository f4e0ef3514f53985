//! Unit tests of `api_key`.

use super::*;
use crate::auth::keystore::{Restriction, new_key};

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn config(pepper: Option<&str>) -> ApiKeyConfig {
    ApiKeyConfig {
        header: "X-API-Key".to_owned(),
        query: None,
        cookie: None,
        bearer: false,
        store: crate::config::KeySource::File("keys.yaml".into()),
        cache_ttl: Duration::from_secs(300),
        max_store_age: None,
        pepper: pepper.map(|p| Secret::from(p.to_owned())),
    }
}

/// A store with one record per `(id, hash, extra YAML)`.
fn store(records: &[(&str, &str, &str)]) -> KeyStore {
    let mut text = "keys:\n".to_owned();
    for (id, hash, extra) in records {
        text.push_str(&format!("  - id: {id}\n    hash: \"{hash}\"\n{extra}"));
    }
    KeyStore::parse(&text).expect("a valid store")
}

fn no_hashing(_: &str, _: &str, _: Option<&Secret>) -> bool {
    panic!("this verification was expected to be served from the cache")
}

#[tokio::test]
async fn a_panicking_verification_is_a_fault_and_not_remembered_as_a_wrong_key() {
    let key = new_key("k1");
    let hash = hash_key(&key, None).unwrap();
    let mut verifier =
        ApiKeyVerifier::new(&config(None), store(&[("k1", &hash, "")]), None).unwrap();
    verifier.hash_verifier = no_hashing;
    assert_eq!(
        verifier.verify(&key, CLIENT).await.err(),
        Some(KeyError::Fault)
    );
    verifier.hash_verifier = verify_hash;
    assert!(
        verifier.verify(&key, CLIENT).await.is_ok(),
        "the fault was cached as a refusal"
    );
}

#[tokio::test]
async fn a_reload_inherits_verified_keys_whose_records_did_not_change() {
    let (kept, revoked) = (new_key("kept"), new_key("revoked"));
    let (kept_hash, revoked_hash) = (
        hash_key(&kept, None).unwrap(),
        hash_key(&revoked, None).unwrap(),
    );
    let before = ApiKeyVerifier::new(
        &config(None),
        store(&[("kept", &kept_hash, ""), ("revoked", &revoked_hash, "")]),
        None,
    )
    .unwrap();
    assert!(before.verify(&kept, CLIENT).await.is_ok());
    assert!(before.verify(&revoked, CLIENT).await.is_ok());

    let edited = store(&[
        ("kept", &kept_hash, ""),
        ("revoked", &revoked_hash, "    disabled: true\n"),
    ]);
    let mut after = ApiKeyVerifier::new(&config(None), edited, None)
        .unwrap()
        .inherit(&before);
    after.hash_verifier = no_hashing;
    assert!(
        after.verify(&kept, CLIENT).await.is_ok(),
        "an unchanged key was hashed again"
    );
    assert_eq!(
        after.verify(&revoked, CLIENT).await.err(),
        Some(KeyError::Fault),
        "an edited record must be verified afresh, not served from the old cache"
    );
    after.hash_verifier = verify_hash;
    assert_eq!(
        after.verify(&revoked, CLIENT).await.err(),
        Some(KeyError::Restricted(Restriction::Disabled))
    );

    // Another pepper is another scheme: nothing is inherited.
    let mut peppered = ApiKeyVerifier::new(
        &config(Some("pepper-pepper")),
        store(&[("kept", &kept_hash, "")]),
        None,
    )
    .unwrap()
    .inherit(&before);
    peppered.hash_verifier = no_hashing;
    assert_eq!(
        peppered.verify(&kept, CLIENT).await.err(),
        Some(KeyError::Fault)
    );
}

#[test]
fn a_hash_verifies_its_key_only_and_the_pepper_is_part_of_it() {
    let key = super::super::keystore::new_key("k1");
    let hash = hash_key(&key, None).unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(verify_hash(&key, &hash, None));
    assert!(!verify_hash(&format!("{key}x"), &hash, None));
    let pepper = Secret::from("pepper-pepper".to_owned());
    let peppered = hash_key(&key, Some(&pepper)).unwrap();
    assert!(verify_hash(&key, &peppered, Some(&pepper)));
    assert!(
        !verify_hash(&key, &peppered, None),
        "a leaked store alone must not verify"
    );
}
