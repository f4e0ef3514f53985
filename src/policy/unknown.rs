//! Telling a `policy.operations` key that names no operation what it may have meant.

use crate::spec::Operation;

/// A `policy.operations` key that names no operation: where it is, what it may have meant
/// (a near operationId, or the spec's template when only parameter names differ), and the
/// operations there are.
pub(super) fn unknown_operation(
    key: &str,
    line: Option<&usize>,
    operations: &[&Operation],
) -> String {
    let at = line
        .map(|line| format!(" (line {line})"))
        .unwrap_or_default();
    let hint = same_shape_hint(key, operations)
        .or_else(|| near_name_hint(key, operations))
        .unwrap_or_default();
    format!(
        "policy.operations.{key}{at}: no operation has this operationId or `METHOD /template`{hint} \
         (the operations: {})",
        operation_ids(operations)
    )
}

/// The spec's `METHOD /template` that differs from `key` only in parameter names.
fn same_shape_hint(key: &str, operations: &[&Operation]) -> Option<String> {
    let long = operations
        .iter()
        .map(|o| o.long_name())
        .find(|long| shape(long) == shape(key))?;
    Some(format!(
        "; the spec names this path's parameters differently: write `\"{long}\"` (the \
         template must use the spec's own parameter names)"
    ))
}

/// `METHOD /a/{x}` → `METHOD /a/{}`: a name with its parameter names left out.
fn shape(name: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in name.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push_str("{}");
            }
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// The nearest operationId or `METHOD /template` to `key`, if one is near enough to be a
/// misspelling.
fn near_name_hint(key: &str, operations: &[&Operation]) -> Option<String> {
    operations
        .iter()
        .flat_map(|o| [o.id.to_string(), o.long_name()])
        .map(|name| (strsim::damerau_levenshtein(key, &name), name))
        .filter(|(distance, name)| *distance <= 3.max(name.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| format!("; did you mean `{name}`?"))
}

/// The first twelve operationIds, and how many more there are.
fn operation_ids(operations: &[&Operation]) -> String {
    let ids: Vec<&str> = operations.iter().map(|o| &*o.id).take(12).collect();
    let more = operations.len().saturating_sub(ids.len());
    let more = if more > 0 {
        format!(" and {more} more (`moat check` lists them)")
    } else {
        String::new()
    };
    format!("{}{more}", ids.join(", "))
}
