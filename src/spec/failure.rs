//! A schema failure as a refusal reports it: where it is (a JSON pointer) and what is
//! wrong, in words a caller can act on and never with the value sent. jsonschema's own
//! sentence is kept, value masked, except for two shapes it words for a schema author:
//!
//! - `anyOf`/`oneOf` with a `null` branch — how `nullable` and FastAPI's `Optional[X]`
//!   come out — says what `X` required, not "not valid under any of the schemas";
//! - `additionalProperties`/`unevaluatedProperties` points at each unexpected member
//!   rather than at its object, so the pointer says which one to remove.

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::types::JsonType;

use crate::reject::FieldError;

/// How long one message may be; the rest of a long one is cut at a character boundary.
const MAX_MESSAGE: usize = 200;

/// Appends `error` to `errors`, as one failure or (a rewritten shape) several, up to `cap`.
pub fn push(
    error: &ValidationError<'_>,
    location: &'static str,
    prefix: &str,
    errors: &mut Vec<FieldError>,
    cap: usize,
) {
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let object = error.instance_path().as_str();
            for name in unexpected.iter().take(cap.saturating_sub(errors.len())) {
                errors.push(FieldError {
                    location,
                    pointer: format!("{prefix}{object}/{}", escaped(name)),
                    message: "is not a property the schema declares; remove it".to_owned(),
                });
            }
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            match not_null(context) {
                Some(branch) => {
                    for inner in branch {
                        if errors.len() >= cap {
                            break;
                        }
                        let mut failure = one(inner, location, prefix);
                        failure.message.push_str(" (or null)");
                        errors.push(failure);
                    }
                }
                None => errors.push(alternatives(error, context, location, prefix)),
            }
        }
        _ => errors.push(one(error, location, prefix)),
    }
}

/// The one branch of an `anyOf`/`oneOf` that is not `{"type": "null"}`, when the others
/// all are (the failure of a nullable `X` is `X`'s failure).
fn not_null<'c>(
    context: &'c [Vec<ValidationError<'static>>],
) -> Option<&'c [ValidationError<'static>]> {
    let mut others = context.iter().filter(|branch| !is_null_branch(branch));
    let branch = others.next()?;
    (others.next().is_none() && context.len() > 1 && !branch.is_empty()).then_some(branch)
}

fn is_null_branch(branch: &[ValidationError<'static>]) -> bool {
    matches!(
        branch,
        [only] if matches!(only.kind(), ValidationErrorKind::Type { kind: TypeKind::Single(JsonType::Null) })
    )
}

/// Several real alternatives: say so, with each one's first complaint.
fn alternatives(
    error: &ValidationError<'_>,
    context: &[Vec<ValidationError<'static>>],
    location: &'static str,
    prefix: &str,
) -> FieldError {
    let mut message = format!("matches none of its {} alternatives", context.len());
    for (n, branch) in context.iter().enumerate() {
        if let Some(first) = branch.first() {
            let sep = if n == 0 { ": " } else { "; " };
            message.push_str(&format!(
                "{sep}{}) {}",
                n + 1,
                first.masked_with("the value")
            ));
        }
    }
    truncate(&mut message, MAX_MESSAGE);
    FieldError {
        location,
        pointer: format!("{prefix}{}", error.instance_path().as_str()),
        message,
    }
}

/// jsonschema's sentence, the value masked, at the failure's own pointer.
fn one(error: &ValidationError<'_>, location: &'static str, prefix: &str) -> FieldError {
    let mut message = error.masked_with("the value").to_string();
    truncate(&mut message, MAX_MESSAGE);
    FieldError {
        location,
        pointer: format!("{prefix}{}", error.instance_path().as_str()),
        message,
    }
}

/// A member name as a JSON pointer token (RFC 6901: `~` as `~0`, `/` as `~1`).
fn escaped(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use jsonschema::Validator;
    use serde_json::{Value, json};

    use super::*;

    fn failures(schema: Value, instance: Value) -> Vec<(String, String)> {
        let validator = Validator::new(&schema).unwrap();
        let mut errors = Vec::new();
        for error in validator.iter_errors(&instance) {
            push(&error, "body", "", &mut errors, 20);
        }
        errors.into_iter().map(|e| (e.pointer, e.message)).collect()
    }

    #[test]
    fn an_optional_field_says_what_its_type_required() {
        let schema = json!({"properties": {"temperature": {"anyOf": [
            {"type": "number", "minimum": 0, "maximum": 2}, {"type": "null"}
        ]}}});
        let got = failures(schema.clone(), json!({"temperature": 7}));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "/temperature");
        assert!(got[0].1.contains("maximum of 2"), "{got:?}");
        assert!(got[0].1.ends_with("(or null)"), "{got:?}");
        assert!(
            !got[0].1.contains('7'),
            "the value is never echoed: {got:?}"
        );
        let wrong_type = failures(schema, json!({"temperature": "hot"}));
        assert!(wrong_type[0].1.contains("\"number\""), "{wrong_type:?}");
        assert!(!wrong_type[0].1.contains("hot"));
    }

    #[test]
    fn an_unexpected_member_is_pointed_at() {
        let schema = json!({"properties": {"a": {"type": "object", "properties": {},
            "additionalProperties": false}}});
        let got = failures(schema, json!({"a": {"x/y": 1, "z": 2}}));
        let pointers: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(pointers, ["/a/x~1y", "/a/z"]);
        assert!(got[0].1.contains("remove it"));
    }

    #[test]
    fn real_alternatives_name_each_first_complaint() {
        let schema = json!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 3}]});
        let got = failures(schema, json!(1));
        assert_eq!(got.len(), 1);
        assert!(
            got[0]
                .1
                .starts_with("matches none of its 2 alternatives: 1) "),
            "{got:?}"
        );
        assert!(got[0].1.contains("2) the value is less than"), "{got:?}");
    }
}
