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
    Guard { limits, errors }.value(value, None);
}

/// One walk over a document, collecting its failures.
struct Guard<'g> {
    limits: &'g JsonLimits,
    errors: &'g mut Vec<FieldError>,
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

impl Guard<'_> {
    fn value(&mut self, value: &Value, path: Option<&Path<'_>>) {
        if self.errors.len() >= MAX_ERRORS {
            return;
        }
        match value {
            Value::String(text) if text.len() > self.limits.max_string_bytes => {
                self.fail(path, self.too_long("the string", text.len()));
            }
            Value::Array(items) => self.array(items, path),
            Value::Object(members) => self.object(members, path),
            _ => {}
        }
    }

    fn array(&mut self, items: &[Value], path: Option<&Path<'_>>) {
        let limit = self.limits.max_array_items;
        if items.len() > limit {
            let message = format!(
                "the array has {} items, over limits.max_array_items ({limit})",
                items.len()
            );
            self.fail(path, message);
            return;
        }
        for (index, item) in items.iter().enumerate() {
            let step = Path {
                parent: path,
                segment: Segment::Index(index),
            };
            self.value(item, Some(&step));
        }
    }

    fn object(&mut self, members: &Map<String, Value>, path: Option<&Path<'_>>) {
        let limit = self.limits.max_object_members;
        if members.len() > limit {
            let message = format!(
                "the object has {} members, over limits.max_object_members ({limit})",
                members.len()
            );
            self.fail(path, message);
            return;
        }
        for (name, member) in members {
            if name.len() > self.limits.max_string_bytes {
                // The object's pointer: the name itself is the long string.
                self.fail(path, self.too_long("a member name", name.len()));
                continue;
            }
            let step = Path {
                parent: path,
                segment: Segment::Name(name),
            };
            self.value(member, Some(&step));
        }
    }

    /// The failure of a string (or member name) over `limits.max_string_bytes`.
    fn too_long(&self, subject: &str, len: usize) -> String {
        format!(
            "{subject} is {len} bytes, over limits.max_string_bytes ({})",
            self.limits.max_string_bytes
        )
    }

    fn fail(&mut self, path: Option<&Path<'_>>, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(FieldError {
                location: "body",
                pointer: pointer(path),
                message,
            });
        }
    }
}
