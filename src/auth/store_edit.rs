//! The edits `moat keys` makes to a key store's text. The loader accepts any YAML or JSON
//! with the store's shape; the edits keep the operator's file — comments, order, layout —
//! wherever a line edit provably gives the intended store, and otherwise rewrite it as block
//! YAML. "Provably": every edit is applied twice, to the parsed document and to the text,
//! and the text edit is kept only if the edited text parses to exactly the edited document.
//! So a layout the line edits don't understand (JSON, flow style, an unusual indent) can
//! never yield a store that differs from what was asked; it is rewritten instead.

use serde_json::{Map, Value};

use super::keystore::yaml_options;
use lines::{append_text, set_text};

mod lines;

/// Fields in the order a new or rewritten record shows them; others follow by name.
const FIELD_ORDER: [&str; 13] = [
    "id",
    "hash",
    "legacy_sha256",
    "legacy_tag",
    "scopes",
    "owner",
    "expires_at",
    "not_before",
    "allowed_cidrs",
    "operations",
    "rate_limit",
    "quota",
    "disabled",
];

/// A key store's text and the document it parses to, edited together.
#[derive(Debug)]
pub struct StoreText {
    text: String,
    document: Value,
    rewritten: bool,
    /// A JSON store (the format for large ones): parsed by serde_json and written back as
    /// JSON, a record a line — it has no comments or layout to keep.
    json: bool,
}

impl StoreText {
    /// `text` as the loader reads it; an empty (or comment-only) file is an empty store.
    pub fn parse(text: String) -> Result<StoreText, String> {
        let json = text.trim_start().starts_with('{');
        let document = if json {
            serde_json::from_str(&text).map_err(|e| e.to_string())?
        } else {
            parse_document(&text)?
        };
        Ok(StoreText {
            text,
            document: with_keys_list(document)?,
            rewritten: false,
            json,
        })
    }

    /// The record with `id`, as the file has it.
    pub fn record(&self, id: &str) -> Option<&Map<String, Value>> {
        self.records()
            .iter()
            .filter_map(Value::as_object)
            .find(|record| record.get("id").and_then(Value::as_str) == Some(id))
    }

    /// Adds `records` at the end of the list, in one edit (an import of 100,000 records
    /// reads the text back once, not once per record).
    pub fn append_all(&mut self, records: Vec<Map<String, Value>>) {
        let candidate = (!self.json)
            .then(|| append_text(&self.text, &records))
            .flatten();
        if let Some(keys) = self.document.get_mut("keys").and_then(Value::as_array_mut) {
            keys.extend(records.into_iter().map(Value::Object));
        }
        self.settle(candidate);
    }

    /// Every record, as the file has them.
    pub fn all_records(&self) -> impl Iterator<Item = &Map<String, Value>> {
        self.records().iter().filter_map(Value::as_object)
    }

    /// Sets `field` of the record `id` to `value`.
    pub fn set(&mut self, id: &str, field: &str, value: Value) -> Result<(), String> {
        self.change(id, field, Some(value))
    }

    /// Removes `field` from the record `id`.
    pub fn remove(&mut self, id: &str, field: &str) -> Result<(), String> {
        self.change(id, field, None)
    }

    fn change(&mut self, id: &str, field: &str, value: Option<Value>) -> Result<(), String> {
        let record = self
            .document
            .get_mut("keys")
            .and_then(Value::as_array_mut)
            .and_then(|keys| {
                keys.iter_mut()
                    .filter_map(Value::as_object_mut)
                    .find(|record| record.get("id").and_then(Value::as_str) == Some(id))
            })
            .ok_or_else(|| format!("no key with id `{id}`"))?;
        match &value {
            Some(value) => record.insert(field.to_owned(), value.clone()),
            None => record.remove(field),
        };
        let candidate = (!self.json)
            .then(|| set_text(&self.text, id, field, value.as_ref()))
            .flatten();
        self.settle(candidate);
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
    /// (The document is already edited; a JSON store is written from it.)
    fn settle(&mut self, candidate: Option<String>) {
        if self.json {
            self.text = json_text(self.records().iter());
            return;
        }
        let faithful = candidate
            .as_deref()
            .is_some_and(|text| parse_document(text).is_ok_and(|doc| doc == self.document));
        self.text = match candidate {
            Some(text) if faithful => text,
            _ => {
                self.rewritten = true;
                block_yaml(&self.document)
            }
        };
    }
}

/// The document with its `keys` list, as the loader reads it: an empty document, a missing
/// `keys` or one with nothing after it is an empty list.
fn with_keys_list(mut document: Value) -> Result<Value, String> {
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
    Ok(document)
}

/// YAML (or JSON) → a JSON value, with the loader's strictness.
fn parse_document(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| e.to_string())
}

/// A store of `records` as text: block YAML, or JSON with a record a line (which the
/// loader reads ten times faster: the format for large stores).
pub fn store_text(records: Vec<Map<String, Value>>, json: bool) -> String {
    if !json {
        let records = records.into_iter().map(Value::Object).collect();
        return block_yaml(&Value::Object(Map::from_iter([(
            "keys".to_owned(),
            Value::Array(records),
        )])));
    }
    let records: Vec<Value> = records.into_iter().map(Value::Object).collect();
    json_text(records.iter())
}

/// `{"keys": [` and a record a line, its fields in the order a YAML record shows them.
fn json_text<'a>(records: impl Iterator<Item = &'a Value>) -> String {
    let mut out = "{\"keys\": [".to_owned();
    for (n, record) in records.enumerate() {
        out.push_str(if n == 0 { "\n  {" } else { ",\n  {" });
        let fields = record.as_object().map(ordered).unwrap_or_default();
        for (f, (name, value)) in fields.into_iter().enumerate() {
            let separator = if f == 0 { "" } else { ", " };
            out.push_str(&format!(
                "{separator}{}: {value}",
                Value::from(name.as_str())
            ));
        }
        out.push('}');
    }
    out.push_str("\n]}\n");
    out
}

/// A record's fields in [`FIELD_ORDER`], then the others by name.
fn ordered(record: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut fields: Vec<(&String, &Value)> = record.iter().collect();
    fields.sort_by_key(|(name, _)| {
        let rank = FIELD_ORDER.iter().position(|known| known == name);
        (rank.unwrap_or(FIELD_ORDER.len()), name.as_str())
    });
    fields
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
    let mut out = String::new();
    for (n, (name, value)) in ordered(record).into_iter().enumerate() {
        let lead = if n == 0 { "- " } else { "  " };
        out.push_str(&format!(
            "{}{lead}{}: {value}\n",
            " ".repeat(indent),
            yaml_key(name),
        ));
    }
    out
}

fn yaml_key(name: &str) -> String {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    if name.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) && name.bytes().all(plain) {
        name.to_owned()
    } else {
        Value::from(name).to_string()
    }
}

#[cfg(test)]
mod tests;
