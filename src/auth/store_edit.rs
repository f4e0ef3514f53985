//! The edits `moat keys` makes to a key store's text. The loader accepts any YAML or JSON
//! with the store's shape; the edits keep the operator's file — comments, order, layout —
//! wherever a line edit provably gives the intended store, and otherwise rewrite it as block
//! YAML. "Provably": every edit is applied twice, to the parsed document and to the text,
//! and the text edit is kept only if the edited text parses to exactly the edited document.
//! So a layout the line edits don't understand (JSON, flow style, an unusual indent) can
//! never yield a store that differs from what was asked; it is rewritten instead.

use serde_json::{Map, Value};

/// Fields in the order a new or rewritten record shows them; others follow by name.
const FIELD_ORDER: [&str; 10] = [
    "id",
    "hash",
    "scopes",
    "owner",
    "expires_at",
    "not_before",
    "allowed_cidrs",
    "operations",
    "rate_limit",
    "disabled",
];

/// A key store's text and the document it parses to, edited together.
#[derive(Debug)]
pub struct StoreText {
    text: String,
    document: Value,
    rewritten: bool,
}

impl StoreText {
    /// `text` as the loader reads it; an empty (or comment-only) file is an empty store.
    pub fn parse(text: String) -> Result<StoreText, String> {
        let mut document = parse_document(&text)?;
        if document.is_null() {
            document = Value::Object(Map::from_iter([("keys".to_owned(), Value::Array(vec![]))]));
        }
        let Some(object) = document.as_object_mut() else {
            return Err("the store must be a mapping with a `keys` list".to_owned());
        };
        let keys = object
            .entry("keys")
            .or_insert_with(|| Value::Array(Vec::new()));
        if keys.is_null() {
            *keys = Value::Array(Vec::new());
        }
        if !keys
            .as_array()
            .is_some_and(|k| k.iter().all(Value::is_object))
        {
            return Err("`keys` must be a list of key records".to_owned());
        }
        Ok(StoreText {
            text,
            document,
            rewritten: false,
        })
    }

    /// The record with `id`, as the file has it.
    pub fn record(&self, id: &str) -> Option<&Map<String, Value>> {
        self.records()
            .iter()
            .filter_map(Value::as_object)
            .find(|record| record.get("id").and_then(Value::as_str) == Some(id))
    }

    /// Adds `record` at the end of the list.
    pub fn append(&mut self, record: Map<String, Value>) {
        let mut expected = self.document.clone();
        if let Some(keys) = expected.get_mut("keys").and_then(Value::as_array_mut) {
            keys.push(Value::Object(record.clone()));
        }
        let candidate = append_text(&self.text, &record);
        self.settle(expected, candidate);
    }

    /// Sets `field` of the record `id` to `value`.
    pub fn set(&mut self, id: &str, field: &str, value: Value) -> Result<(), String> {
        let mut expected = self.document.clone();
        let record = expected
            .get_mut("keys")
            .and_then(Value::as_array_mut)
            .and_then(|keys| {
                keys.iter_mut()
                    .filter_map(Value::as_object_mut)
                    .find(|record| record.get("id").and_then(Value::as_str) == Some(id))
            })
            .ok_or_else(|| format!("no key with id `{id}`"))?;
        record.insert(field.to_owned(), value.clone());
        let candidate = set_text(&self.text, id, field, &value);
        self.settle(expected, candidate);
        Ok(())
    }

    /// The edited text, and whether it had to be rewritten as block YAML.
    pub fn into_text(self) -> (String, bool) {
        (self.text, self.rewritten)
    }

    fn records(&self) -> &[Value] {
        self.document
            .get("keys")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Keeps the line edit if it reads back as `expected`, else rewrites the whole store.
    fn settle(&mut self, expected: Value, candidate: Option<String>) {
        let faithful = candidate
            .as_deref()
            .is_some_and(|text| parse_document(text).is_ok_and(|doc| doc == expected));
        self.text = match candidate {
            Some(text) if faithful => text,
            _ => {
                self.rewritten = true;
                block_yaml(&expected)
            }
        };
        self.document = expected;
    }
}

/// YAML (or JSON) → a JSON value, with the loader's strictness.
fn parse_document(text: &str) -> Result<Value, String> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())
}

/// The whole store as block YAML, values in JSON syntax (which YAML reads the same way).
fn block_yaml(document: &Value) -> String {
    let mut out = "keys:\n".to_owned();
    for record in document
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        out.push_str(&record_lines(record, 2));
    }
    out
}

/// One record as a block-sequence item at `indent`.
fn record_lines(record: &Map<String, Value>, indent: usize) -> String {
    let mut names: Vec<&String> = record.keys().collect();
    names.sort_by_key(|name| {
        let rank = FIELD_ORDER.iter().position(|known| known == name);
        (rank.unwrap_or(FIELD_ORDER.len()), name.as_str())
    });
    let mut out = String::new();
    for (n, name) in names.into_iter().enumerate() {
        let lead = if n == 0 { "- " } else { "  " };
        out.push_str(&format!(
            "{}{lead}{}: {}\n",
            " ".repeat(indent),
            yaml_key(name),
            record[name]
        ));
    }
    out
}

fn yaml_key(name: &str) -> String {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        name.to_owned()
    } else {
        Value::from(name).to_string()
    }
}

/// The text with `record` appended to the `keys` list: `keys: []` (with or without a
/// comment) opens into a block list; items are indented like the existing ones. `None` when
/// the list is written in a form a line edit can't extend (flow style with items, JSON).
fn append_text(text: &str, record: &Map<String, Value>) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let indent = match lines.iter().position(|line| line.starts_with("keys:")) {
        None => {
            lines.push("keys:".to_owned());
            2
        }
        Some(at) => {
            let rest = lines[at]["keys:".len()..].trim_start();
            let comment = if rest.starts_with('#') {
                Some(rest.to_owned())
            } else if let Some(after) = rest.strip_prefix("[]") {
                let after = after.trim_start();
                if !after.is_empty() && !after.starts_with('#') {
                    return None;
                }
                (!after.is_empty()).then(|| after.to_owned())
            } else if rest.is_empty() {
                None
            } else {
                return None;
            };
            lines[at] = match comment {
                Some(comment) => format!("keys: {comment}"),
                None => "keys:".to_owned(),
            };
            lines[at + 1..]
                .iter()
                .find(|line| {
                    let trimmed = line.trim_start();
                    !trimmed.is_empty() && !trimmed.starts_with('#')
                })
                .filter(|line| line.trim_start().starts_with('-'))
                .map_or(2, |line| line.len() - line.trim_start().len())
        }
    };
    let mut out = lines.join("\n");
    out.push('\n');
    out.push_str(&record_lines(record, indent));
    Some(out)
}

/// The text with `field: value` set in the block-style record `id`: its line replaced, or
/// added after the `id` line. `None` when no line reads `id: <id>`.
fn set_text(text: &str, id: &str, field: &str, value: &Value) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|line| {
        let trimmed = line.trim_start().trim_start_matches("- ").trim();
        trimmed
            .strip_prefix("id:")
            .map(|v| v.split(" #").next().unwrap_or(v))
            .map(|v| v.trim().trim_matches('"').trim_matches('\''))
            == Some(id)
    })?;
    let item_indent = lines[start].len() - lines[start].trim_start().len();
    let field_indent = item_indent + 2;
    let end = lines[start + 1..]
        .iter()
        .position(|line| {
            let indent = line.len() - line.trim_start().len();
            !line.trim().is_empty() && indent <= item_indent
        })
        .map_or(lines.len(), |offset| start + 1 + offset);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let new_line = format!("{}{field}: {value}", " ".repeat(field_indent));
    let prefix = format!("{field}:");
    match (start + 1..end).find(|&i| lines[i].trim_start().starts_with(&prefix)) {
        Some(i) => out[i] = new_line,
        None => out.insert(start + 1, new_line),
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$WJrzZDMvBKXnSS3ZaKm7JYNwA4fSoVdhdX0ykbdZwQ8";

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
        let (out, rewritten) = edited(&text, |s| s.append(record("web")));
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
            let (out, rewritten) = edited(text, |s| s.append(record("first")));
            assert!(!rewritten, "{text:?} was rewritten:\n{out}");
            for comment in text.lines().filter_map(|l| l.find('#').map(|at| &l[at..])) {
                assert!(out.contains(comment), "{text:?} lost {comment:?}:\n{out}");
            }
            let store = crate::auth::keystore::KeyStore::parse(&out)
                .unwrap_or_else(|e| panic!("{text:?} → {out}: {e:?}"));
            assert_eq!(store.records["first"].scopes, vec!["predict"]);
        }
    }

    #[test]
    fn items_are_indented_like_the_existing_ones() {
        let text = format!("keys:\n- id: a\n  hash: \"{HASH}\"\n");
        let (out, rewritten) = edited(&text, |s| s.append(record("b")));
        assert!(!rewritten, "{out}");
        assert!(out.contains("\n- id: \"b\""), "{out}");
    }

    #[test]
    fn json_and_flow_stores_are_edited_by_rewriting_them_as_block_yaml() {
        let json_store =
            format!(r#"{{"keys": [{{"id": "a", "hash": "{HASH}", "scopes": ["x"]}}]}}"#);
        let flow_store = format!("keys: [{{id: a, hash: \"{HASH}\", scopes: [x]}}]\n");
        let inline_item = format!("keys:\n  - {{id: a, hash: \"{HASH}\", scopes: [x]}}\n");
        for text in [json_store, flow_store, inline_item] {
            let mut store = StoreText::parse(text.clone()).unwrap();
            assert!(store.record("a").is_some(), "{text}");
            store
                .set("a", "disabled", json!(true))
                .expect("a listed key is found");
            store.append(record("b"));
            let (out, rewritten) = store.into_text();
            assert!(rewritten, "{text}");
            let loaded = crate::auth::keystore::KeyStore::parse(&out).expect("loads");
            assert!(loaded.records["a"].disabled, "{out}");
            assert_eq!(loaded.records["a"].scopes, vec!["x"]);
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
}
