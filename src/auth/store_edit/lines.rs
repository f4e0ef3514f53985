//! The line edits of a block-style store: a record appended under `keys:`, a field's line
//! set or removed — each kept only if the text reads back as the intended document (see
//! `store_edit`).

use serde_json::{Map, Value};

use super::record_lines;

/// The text with `record` appended to the `keys` list: `keys: []` (with or without a
/// comment) opens into a block list; items are indented like the existing ones. `None` when
/// the list is written in a form a line edit can't extend (flow style with items, JSON).
pub(super) fn append_text(text: &str, records: &[Map<String, Value>]) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let indent = match lines.iter().position(|line| line.starts_with("keys:")) {
        None => {
            lines.push("keys:".to_owned());
            2
        }
        Some(at) => {
            lines[at] = opened_keys_line(&lines[at])?;
            item_indent(&lines[at + 1..])
        }
    };
    let mut out = lines.join("\n");
    out.push('\n');
    for record in records {
        out.push_str(&record_lines(record, indent));
    }
    Some(out)
}

/// The `keys:` line ready for block items to follow it: `keys: []` opened, a comment kept.
/// `None` when it already holds items (flow style), which a line edit can't extend.
fn opened_keys_line(line: &str) -> Option<String> {
    let rest = line["keys:".len()..].trim_start();
    let comment = if rest.starts_with('#') {
        Some(rest)
    } else if let Some(after) = rest.strip_prefix("[]") {
        let after = after.trim_start();
        if !after.is_empty() && !after.starts_with('#') {
            return None;
        }
        (!after.is_empty()).then_some(after)
    } else if rest.is_empty() {
        None
    } else {
        return None;
    };
    Some(match comment {
        Some(comment) => format!("keys: {comment}"),
        None => "keys:".to_owned(),
    })
}

/// The indent of the list's items: that of the first line below `keys:` that holds more
/// than a comment, if it is an item; else 2.
fn item_indent(below: &[String]) -> usize {
    below
        .iter()
        .find(|line| {
            let trimmed = line.trim_start();
            !trimmed.is_empty() && !trimmed.starts_with('#')
        })
        .filter(|line| line.trim_start().starts_with('-'))
        .map_or(2, |line| indent_of(line))
}

/// The text with `field: value` set in the block-style record `id`: its line replaced, or
/// added after the `id` line. `None` when no line reads `id: <id>`.
pub(super) fn set_text(text: &str, id: &str, field: &str, value: Option<&Value>) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|line| is_id_line(line, id))?;
    let item_indent = indent_of(lines[start]);
    let field_indent = item_indent + 2;
    let end = lines[start + 1..]
        .iter()
        .position(|line| !line.trim().is_empty() && indent_of(line) <= item_indent)
        .map_or(lines.len(), |offset| start + 1 + offset);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let new_line = value.map(|value| format!("{}{field}: {value}", " ".repeat(field_indent)));
    let prefix = format!("{field}:");
    match (
        (start + 1..end).find(|&i| lines[i].trim_start().starts_with(&prefix)),
        new_line,
    ) {
        (Some(i), Some(new_line)) => out[i] = new_line,
        (Some(i), None) => {
            out.remove(i);
        }
        (None, Some(new_line)) => out.insert(start + 1, new_line),
        (None, None) => {}
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    Some(joined)
}

/// Whether `line` reads `id: <id>` (or `- id: <id>`), quoted or not, a comment after it.
fn is_id_line(line: &str, id: &str) -> bool {
    let trimmed = line.trim_start().trim_start_matches("- ").trim();
    trimmed
        .strip_prefix("id:")
        .map(|v| v.split(" #").next().unwrap_or(v))
        .map(|v| v.trim().trim_matches('"').trim_matches('\''))
        == Some(id)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}
