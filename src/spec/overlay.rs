//! OpenAPI Overlays (1.0 and 1.1): ordered actions, each an RFC 9535 JSONPath `target`
//! with one modifier — `update` (merged into each selected node), `remove`, or, in 1.1,
//! `copy` (the value of another node, used as the update) — applied to the spec before it
//! is normalised and compiled, so a generated spec can be tightened without editing it.
//!
//! JSONPath is `serde_json_path`'s; only the merge rules are written here, as Overlay 1.1
//! defines them: objects merge recursively, any other value (an array, a primitive)
//! replaces its counterpart, and an update of a selected array appends one entry.
//!
//! Fail closed: a target that selects nothing (a typo would silently skip a tightening),
//! an action with no modifier or with two, an unknown overlay version — each is an error
//! naming the overlay file, the action's index and its target.

use std::path::Path;

use serde_json::Value;
use serde_json_path::JsonPath;

pub(crate) mod fuzz;

/// Applies the overlay files to `doc`, in order.
pub fn apply_files(doc: &mut Value, files: &[impl AsRef<Path>]) -> Result<(), String> {
    for file in files {
        let file = file.as_ref();
        let name = file.display().to_string();
        let bytes = crate::input::read(file, crate::input::Kind::Overlay)?;
        let overlay = super::source::parse(&bytes).map_err(|e| format!("{name}: {e}"))?;
        apply(doc, &overlay).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// One modifier of an action, checked before anything is changed.
enum Modifier<'a> {
    Update(&'a Value),
    Remove,
    Copy(&'a str),
}

/// Applies one overlay document. On an error `doc` may be half changed: callers apply
/// overlays to a document they discard on failure.
pub fn apply(doc: &mut Value, overlay: &Value) -> Result<(), String> {
    let copy_allowed = allows_copy(overlay)?;
    let actions = overlay
        .get("actions")
        .and_then(Value::as_array)
        .filter(|actions| !actions.is_empty())
        .ok_or("`actions` must be a list of at least one action")?;
    for (index, action) in actions.iter().enumerate() {
        let target = action
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("actions[{index}]: `target` (a JSONPath) is required"))?;
        let at = |message: String| format!("actions[{index}] (target `{target}`): {message}");
        let modifier = modifier(action, copy_allowed).map_err(at)?;
        apply_action(doc, target, &modifier).map_err(at)?;
    }
    Ok(())
}

/// Whether the overlay's version allows `copy` (1.1 does, 1.0 does not); an error for a
/// document that is not an overlay or of a version moat does not read.
fn allows_copy(overlay: &Value) -> Result<bool, String> {
    let version = overlay
        .get("overlay")
        .and_then(Value::as_str)
        .ok_or("not an overlay: it has no `overlay: 1.0.0` (or 1.1.0) version field")?;
    if version.starts_with("1.0.") {
        Ok(false)
    } else if version.starts_with("1.1.") {
        Ok(true)
    } else {
        Err(format!(
            "overlay version `{version}` is not supported; moat reads 1.0.x and 1.1.x"
        ))
    }
}

fn modifier(action: &Value, copy_allowed: bool) -> Result<Modifier<'_>, String> {
    let remove = remove_flag(action)?;
    let update = action.get("update");
    let copy = copy_source(action, copy_allowed)?;
    // The specification lets `remove` silence the others; a file that says two things
    // is more likely a mistake than a wish, so it is refused.
    match (remove, update, copy) {
        (true, None, None) => Ok(Modifier::Remove),
        (false, Some(update), None) => Ok(Modifier::Update(update)),
        (false, None, Some(source)) => Ok(Modifier::Copy(source)),
        (false, None, None) => {
            Err("the action has no `update`, `remove: true` or `copy`".to_owned())
        }
        _ => Err(
            "the action has more than one of `update`, `remove: true` and `copy`; keep one"
                .to_owned(),
        ),
    }
}

/// An action's `remove`: false when absent.
fn remove_flag(action: &Value) -> Result<bool, String> {
    match action.get("remove") {
        None | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(_) => Err("`remove` must be true or false".to_owned()),
    }
}

/// The JSONPath an action's `copy` names, if it has one.
fn copy_source(action: &Value, copy_allowed: bool) -> Result<Option<&str>, String> {
    match action.get("copy") {
        None => Ok(None),
        Some(_) if !copy_allowed => {
            Err("`copy` is an Overlay 1.1 action; declare `overlay: 1.1.0`".to_owned())
        }
        Some(Value::String(source)) => Ok(Some(source.as_str())),
        Some(_) => Err("`copy` must be a JSONPath string".to_owned()),
    }
}

fn apply_action(doc: &mut Value, target: &str, modifier: &Modifier<'_>) -> Result<(), String> {
    let pointers = selected(doc, target)?;
    let copied;
    let update = match modifier {
        Modifier::Remove => return remove(doc, pointers),
        Modifier::Update(update) => *update,
        Modifier::Copy(source) => {
            copied = copy_of(doc, source)?;
            &copied
        }
    };
    for pointer in &pointers {
        match doc.pointer_mut(pointer) {
            Some(Value::Array(entries)) => entries.push(update.clone()),
            Some(node) => merge(node, update),
            None => {}
        }
    }
    Ok(())
}

/// The JSON pointers of the nodes `target` selects; selecting nothing is an error.
fn selected(doc: &Value, target: &str) -> Result<Vec<String>, String> {
    let pointers: Vec<String> = parse_path(target)?
        .query_located(doc)
        .locations()
        .map(|location| location.to_json_pointer())
        .collect();
    if pointers.is_empty() {
        return Err(
            "selects nothing in the spec; fix the path (an action that matches \
                    nothing would silently skip its change)"
                .to_owned(),
        );
    }
    Ok(pointers)
}

/// The one node `copy: source` selects, as the update.
fn copy_of(doc: &Value, source: &str) -> Result<Value, String> {
    let nodes = parse_path(source)?.query(doc).all();
    let [node] = nodes.as_slice() else {
        return Err(format!(
            "`copy: {source}` must select exactly one node; it selects {}",
            nodes.len()
        ));
    };
    Ok((*node).clone())
}

fn parse_path(path: &str) -> Result<JsonPath, String> {
    JsonPath::parse(path).map_err(|e| format!("`{path}` is not an RFC 9535 JSONPath: {e}"))
}

/// Overlay 1.1's merge: objects recursively, anything else replaced.
fn merge(node: &mut Value, update: &Value) {
    match (node, update) {
        (Value::Object(node), Value::Object(update)) => {
            for (key, value) in update {
                match node.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        node.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (node, update) => *node = update.clone(),
    }
}

/// Removes every selected node from its parent. Array entries go from the highest index
/// down, so removing one never shifts another that is still to be removed.
fn remove(doc: &mut Value, mut pointers: Vec<String>) -> Result<(), String> {
    if pointers.iter().any(String::is_empty) {
        return Err("cannot remove the whole document".to_owned());
    }
    pointers.sort_by_key(|pointer| std::cmp::Reverse(split_last(pointer)));
    pointers.dedup();
    for pointer in &pointers {
        let (parent, index, last) = split_last(pointer);
        match doc.pointer_mut(&parent) {
            Some(Value::Array(entries)) => {
                if let Some(index) = index.filter(|&i| i < entries.len()) {
                    entries.remove(index);
                }
            }
            Some(Value::Object(members)) => {
                members.remove(&super::normalize::unescape(&last));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A pointer's parent, and its last segment as an array index (if it reads as one) and as
/// written.
fn split_last(pointer: &str) -> (String, Option<usize>, String) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    (parent.to_owned(), last.parse().ok(), last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn overlay(actions: Value) -> Value {
        json!({"overlay": "1.1.0", "info": {"title": "t", "version": "1"}, "actions": actions})
    }

    fn spec() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {"/predict": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"type": "object", "required": ["x"], "properties": {
                    "x": {"type": "integer"}, "tag": {"type": "string"}}}}}}}}},
            "components": {"schemas": {"Token": {"type": "integer", "minimum": 0}}}
        })
    }

    const SCHEMA: &str = "$.paths['/predict'].post.requestBody.content['application/json'].schema";

    #[test]
    fn update_merges_objects_recursively_and_replaces_everything_else() {
        let mut doc = spec();
        let actions = json!([
            {"target": format!("{SCHEMA}.properties.x"), "update": {"maximum": 100}},
            {"target": format!("{SCHEMA}.properties"),
             "update": {"tag": {"pattern": "^[a-z0-9]+$", "type": ["string"]}}},
            {"target": format!("{SCHEMA}.required"), "update": "tag"},
        ]);
        apply(&mut doc, &overlay(actions)).unwrap();
        let schema = doc
            .pointer("/paths/~1predict/post/requestBody/content/application~1json/schema")
            .unwrap();
        assert_eq!(
            schema["properties"]["x"],
            json!({"type": "integer", "maximum": 100})
        );
        assert_eq!(
            schema["properties"]["tag"],
            json!({"type": ["string"], "pattern": "^[a-z0-9]+$"}),
            "the nested array replaced, the new keyword added"
        );
        assert_eq!(schema["required"], json!(["x", "tag"]), "an entry appended");
    }

    #[test]
    fn remove_and_copy_act_on_every_selected_node() {
        let mut doc = json!({"openapi": "3.1.0", "list": [0, 1, 2, 3, 4], "a": {"b": 1}, "c": {}});
        let actions = json!([
            {"target": "$.list[?@ > 1]", "remove": true},
            {"target": "$.c", "copy": "$.a"},
        ]);
        apply(&mut doc, &overlay(actions)).unwrap();
        assert_eq!(doc["list"], json!([0, 1]));
        assert_eq!(doc["c"], json!({"b": 1}));
    }

    #[test]
    fn mistakes_are_errors_naming_the_action_and_target() {
        let cases = [
            (
                json!([{"target": "$.paths['/predikt']", "update": {}}]),
                "actions[0] (target `$.paths['/predikt']`): selects nothing",
            ),
            (
                json!([{"target": "$.paths", "update": {}, "remove": true}]),
                "more than one",
            ),
            (json!([{"target": "$.paths"}]), "has no `update`"),
            (
                json!([{"target": "$.paths[", "remove": true}]),
                "not an RFC 9535 JSONPath",
            ),
            (json!([{"target": "$", "remove": true}]), "whole document"),
            (
                json!([{"target": "$.paths", "copy": "$.nothing"}]),
                "exactly one node",
            ),
            (json!([]), "at least one action"),
        ];
        for (actions, expected) in cases {
            let error = apply(&mut spec(), &overlay(actions.clone())).unwrap_err();
            assert!(error.contains(expected), "{actions}: {error}");
        }
        let old =
            json!({"overlay": "1.0.0", "info": {}, "actions": [{"target": "$.a", "copy": "$.b"}]});
        assert!(
            apply(&mut spec(), &old)
                .unwrap_err()
                .contains("Overlay 1.1")
        );
        let future = json!({"overlay": "2.0.0", "actions": [{"target": "$", "update": {}}]});
        assert!(
            apply(&mut spec(), &future)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            apply(&mut spec(), &json!({"openapi": "3.1.0"}))
                .unwrap_err()
                .contains("not an overlay")
        );
    }
}
