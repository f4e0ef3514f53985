//! Unit tests of `store_edit`.

use super::*;
use serde_json::json;

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$WJrzZDMvBKXnSS3ZaKm7JYNwA4fSoVdhdX0ykbdZwQ8";

fn record(id: &str) -> Map<String, Value> {
    json!({"id": id, "hash": HASH, "scopes": ["predict"], "owner": "team \"web\""})
        .as_object()
        .cloned()
        .unwrap()
}

fn edited(text: &str, edit: impl FnOnce(&mut StoreText)) -> (String, bool) {
    let mut store = StoreText::parse(text.to_owned()).expect("parses");
    edit(&mut store);
    store.into_text()
}

#[test]
fn appending_to_a_block_store_keeps_its_comments_and_records() {
    let text = format!(
        "# production keys\nkeys:\n  # the batch job\n  - id: batch\n    hash: \"{HASH}\"\n    scopes: [predict]\n"
    );
    let (out, rewritten) = edited(&text, |s| s.append_all(vec![record("web")]));
    assert!(!rewritten);
    assert!(out.starts_with(&text), "{out}");
    let store = crate::auth::keystore::KeyStore::parse(&out).expect("loads");
    assert_eq!(store.records["web"].owner.as_deref(), Some("team \"web\""));
    assert_eq!(store.records.len(), 2);
}

#[test]
fn the_empty_forms_open_into_a_block_list_and_keep_their_comments() {
    for text in [
        "",
        "\n",
        "# no keys yet\n",
        "keys: []\n",
        "# shipped empty\nkeys: []\n",
        "keys: [] # empty\n",
        "keys: []",
        "keys:\n",
        "# a\nkeys: # the list\n# trailing\n",
    ] {
        let (out, rewritten) = edited(text, |s| s.append_all(vec![record("first")]));
        assert!(!rewritten, "{text:?} was rewritten:\n{out}");
        for comment in text.lines().filter_map(|l| l.find('#').map(|at| &l[at..])) {
            assert!(out.contains(comment), "{text:?} lost {comment:?}:\n{out}");
        }
        let store = crate::auth::keystore::KeyStore::parse(&out)
            .unwrap_or_else(|e| panic!("{text:?} → {out}: {e:?}"));
        assert_eq!(store.records["first"].scopes[..], ["predict"]);
    }
}

#[test]
fn items_are_indented_like_the_existing_ones() {
    let text = format!("keys:\n- id: a\n  hash: \"{HASH}\"\n");
    let (out, rewritten) = edited(&text, |s| s.append_all(vec![record("b")]));
    assert!(!rewritten, "{out}");
    assert!(out.contains("\n- id: \"b\""), "{out}");
}

#[test]
fn a_json_store_stays_json_a_record_a_line() {
    let text = format!(r#"{{"keys": [{{"id": "a", "hash": "{HASH}", "scopes": ["x"]}}]}}"#);
    let mut store = StoreText::parse(text).unwrap();
    store.set("a", "disabled", json!(true)).unwrap();
    store.append_all(vec![record("b")]);
    let (out, rewritten) = store.into_text();
    assert!(!rewritten, "{out}");
    assert!(
        out.starts_with("{\"keys\": [\n  {\"id\": \"a\", \"hash\": "),
        "{out}"
    );
    assert_eq!(out.lines().count(), 4, "{out}");
    let loaded = crate::auth::keystore::KeyStore::parse(&out).expect("loads");
    assert!(loaded.records["a"].disabled && !loaded.records["b"].disabled);
}

#[test]
fn flow_stores_are_edited_by_rewriting_them_as_block_yaml() {
    let flow_store = format!("keys: [{{id: a, hash: \"{HASH}\", scopes: [x]}}]\n");
    let inline_item = format!("keys:\n  - {{id: a, hash: \"{HASH}\", scopes: [x]}}\n");
    for text in [flow_store, inline_item] {
        let mut store = StoreText::parse(text.clone()).unwrap();
        assert!(store.record("a").is_some(), "{text}");
        store
            .set("a", "disabled", json!(true))
            .expect("a listed key is found");
        store.append_all(vec![record("b")]);
        let (out, rewritten) = store.into_text();
        assert!(rewritten, "{text}");
        let loaded = crate::auth::keystore::KeyStore::parse(&out).expect("loads");
        assert!(loaded.records["a"].disabled, "{out}");
        assert_eq!(loaded.records["a"].scopes[..], ["x"]);
        assert!(!loaded.records["b"].disabled);
        assert!(out.starts_with("keys:\n  - id: \"a\"\n    hash: "), "{out}");
    }
}

#[test]
fn setting_a_field_replaces_its_line_or_adds_one_and_touches_nothing_else() {
    let text = format!(
        "keys:\n  - id: batch # nightly\n    hash: \"{HASH}\"\n    disabled: false\n  # next\n  - id: web\n    hash: \"{HASH}\"\n"
    );
    let (out, rewritten) = edited(&text, |s| {
        s.set("batch", "disabled", json!(true)).unwrap();
        s.set("web", "expires_at", json!("2027-01-01T00:00:00Z"))
            .unwrap();
    });
    assert!(!rewritten, "{out}");
    assert!(out.contains("# nightly") && out.contains("# next"), "{out}");
    let store = crate::auth::keystore::KeyStore::parse(&out).unwrap();
    assert!(store.records["batch"].disabled);
    assert!(!store.records["web"].disabled);
    assert!(store.records["web"].expires_at.is_some());
    assert!(
        StoreText::parse(text)
            .unwrap()
            .set("nobody", "disabled", json!(true))
            .is_err()
    );
}

#[test]
fn a_layout_the_line_edit_misreads_is_rewritten_not_corrupted() {
    // `id` is not the first field: the line edit would indent `disabled` wrongly.
    let text = format!("keys:\n  - hash: \"{HASH}\"\n    id: a\n");
    let (out, rewritten) = edited(&text, |s| s.set("a", "disabled", json!(true)).unwrap());
    assert!(rewritten);
    assert!(
        crate::auth::keystore::KeyStore::parse(&out)
            .unwrap()
            .records["a"]
            .disabled
    );
}

#[test]
fn removing_a_field_drops_its_line_and_keeps_the_comments() {
    let text = format!(
        "# ours\nkeys:\n  - id: batch # nightly\n    hash: \"{HASH}\"\n    owner: ann\n  - id: web\n    hash: \"{HASH}\"\n    owner: bob\n"
    );
    let (out, rewritten) = edited(&text, |s| s.remove("batch", "owner").unwrap());
    assert!(!rewritten, "{out}");
    assert!(
        out.contains("# ours") && out.contains("# nightly") && out.contains("owner: bob"),
        "{out}"
    );
    assert!(!out.contains("owner: ann"), "{out}");
}
