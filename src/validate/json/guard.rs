//! The guard rails for what no schema bounds: the length of every string and member name,
//! the size of every array and object.

use serde_json::{Map, Value};

use super::JsonLimits;
use crate::reject::FieldError;
use crate::spec::compile::MAX_ERRORS;

/// The guard rails for what no schema bounds: every string and member name, array and
/// object of `value` within its limit. Failures are reported like schema failures (the
/// body's pointer, capped at `MAX_ERRORS`), so shadow mode counts them the same way.
pub fn guard(value: &Value, limits: &JsonLimits, errors: &mut Vec<FieldError>) {
    guard_at(value, limits, None, errors);
}

/// Where the walk is: a chain on the stack, so the hot path builds no pointer text; one is
/// written only for a failure.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

enum Segment<'a> {
    Index(usize),
    Name(&'a str),
}

/// The JSON pointer of `path` (`""` for the document itself).
fn pointer(path: Option<&Path<'_>>) -> String {
    let mut segments = Vec::new();
    let mut at = path;
    while let Some(step) = at {
        segments.push(match step.segment {
            Segment::Index(index) => index.to_string(),
            Segment::Name(name) => crate::spec::normalize::escape(name),
        });
        at = step.parent;
    }
    segments
        .iter()
        .rev()
        .map(|segment| format!("/{segment}"))
        .collect()
}

fn guard_at(
    value: &Value,
    limits: &JsonLimits,
    path: Option<&Path<'_>>,
    errors: &mut Vec<FieldError>,
) {
    if errors.len() >= MAX_ERRORS {
        return;
    }
    match value {
        Value::String(text) if text.len() > limits.max_string_bytes => {
            fail(errors, path, too_long("the string", text.len(), limits));
        }
        Value::Array(items) => guard_array(items, limits, path, errors),
        Value::Object(members) => guard_object(members, limits, path, errors),
        _ => {}
    }
}

fn guard_array(
    items: &[Value],
    limits: &JsonLimits,
    path: Option<&Path<'_>>,
    errors: &mut Vec<FieldError>,
) {
    if items.len() > limits.max_array_items {
        let message = format!(
            "the array has {} items, over limits.max_array_items ({})",
            items.len(),
            limits.max_array_items
        );
        fail(errors, path, message);
        return;
    }
    for (index, item) in items.iter().enumerate() {
        let step = Path {
            parent: path,
            segment: Segment::Index(index),
        };
        guard_at(item, limits, Some(&step), errors);
    }
}

fn guard_object(
    members: &Map<String, Value>,
    limits: &JsonLimits,
    path: Option<&Path<'_>>,
    errors: &mut Vec<FieldError>,
) {
    if members.len() > limits.max_object_members {
        let message = format!(
            "the object has {} members, over limits.max_object_members ({})",
            members.len(),
            limits.max_object_members
        );
        fail(errors, path, message);
        return;
    }
    for (name, member) in members {
        if name.len() > limits.max_string_bytes {
            // The object's pointer: the name itself is the long string.
            fail(errors, path, too_long("a member name", name.len(), limits));
            continue;
        }
        let step = Path {
            parent: path,
            segment: Segment::Name(name),
        };
        guard_at(member, limits, Some(&step), errors);
    }
}

/// The failure of a string (or member name) over `limits.max_string_bytes`.
fn too_long(subject: &str, len: usize, limits: &JsonLimits) -> String {
    format!(
        "{subject} is {len} bytes, over limits.max_string_bytes ({})",
        limits.max_string_bytes
    )
}

fn fail(errors: &mut Vec<FieldError>, path: Option<&Path<'_>>, message: String) {
    if errors.len() < MAX_ERRORS {
        errors.push(FieldError {
            location: "body",
            pointer: pointer(path),
            message,
        });
    }
}
