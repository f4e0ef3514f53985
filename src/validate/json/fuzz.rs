//! Fuzz targets of the strict JSON reader (`fuzz/`, replayed by `tests/fuzz_targets.rs`).
//! `json`: strict parsing accepts exactly what serde_json accepts, as the same value, minus
//! the documented refusals (a duplicate key, an integer past 64 bits, a byte-order mark,
//! nesting past the limit); the guard rails never panic. `plan`: on a schema of the shapes
//! model specs use, the plan walk never calls valid a body the general path refuses.

use std::sync::LazyLock;

use serde_json::Value;

use super::{JsonLimits, certainly_valid, guard, parse};
use crate::spec::{self, Media, source};

/// The refusals strict parsing adds to serde_json's (their messages, `json.rs`).
const DOCUMENTED: &[&str] = &[
    "duplicate key",
    "does not fit in 64 bits",
    "nested deeper than",
    "byte-order mark",
];

pub fn json(bytes: &[u8]) {
    let limits = JsonLimits::of(&crate::config::Limits::default());
    let strict = parse(bytes, limits.max_depth);
    match (&strict, serde_json::from_slice::<Value>(bytes)) {
        (Ok(strict), Ok(loose)) => assert_eq!(strict, &loose),
        (Ok(_), Err(error)) => panic!("strict parsing accepted what serde_json refuses: {error}"),
        (Err(error), Ok(_)) => assert!(
            DOCUMENTED.iter().any(|d| error.contains(d)),
            "an undocumented refusal: {error}"
        ),
        (Err(_), Err(_)) => {}
    }
    if let Ok(value) = strict {
        let mut errors = Vec::new();
        guard(&value, &limits, &mut errors);
        let tight = JsonLimits {
            max_depth: 3,
            max_string_bytes: 4,
            max_array_items: 3,
            max_object_members: 2,
        };
        guard(&value, &tight, &mut errors);
    }
}

/// A predict operation's body: rows of bounded numbers, a short enum, an optional id.
const SPEC: &str = r##"{"openapi": "3.1.0", "info": {"title": "fuzz", "version": "1"},
 "paths": {"/p": {"post": {"operationId": "p",
  "requestBody": {"required": true, "content": {"application/json": {"schema":
   {"$ref": "#/components/schemas/Body"}}}},
  "responses": {"200": {"description": "ok"}}}}},
 "components": {"schemas": {"Body": {"type": "object", "required": ["rows"],
  "additionalProperties": false,
  "properties": {
   "rows": {"type": "array", "maxItems": 8, "items": {"type": "array", "minItems": 2,
    "maxItems": 4, "items": {"type": "number", "minimum": -1.5, "exclusiveMaximum": 100}}},
   "output": {"enum": ["label", "proba"], "maxLength": 5},
   "id": {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]},
   "n": {"type": "integer", "maximum": 10},
   "tags": {"type": "object", "additionalProperties": {"type": "boolean"}},
   "note": {"type": "string", "pattern": "^[a-z]*$"}}}}}}"##;

static MEDIA: LazyLock<Option<Media>> = LazyLock::new(|| {
    let spec = spec::load(source::from_bytes("file:///fuzz.json", SPEC.as_bytes()).ok()?).ok()?;
    let body = spec.operations.into_iter().next()?.body?;
    body.media.into_iter().next()
});

pub fn plan(bytes: &[u8]) {
    let Some(media) = MEDIA.as_ref() else {
        panic!("the fuzz spec loads");
    };
    let (Some(plan), Some(schema)) = (&media.plan, &media.schema) else {
        panic!("the fuzz spec has a plan");
    };
    let limits = JsonLimits::of(&crate::config::Limits::default());
    if certainly_valid(bytes, plan, &limits) {
        let value = parse(bytes, limits.max_depth);
        let value = value.unwrap_or_else(|e| panic!("the plan accepted invalid JSON: {e}"));
        let mut errors = Vec::new();
        guard(&value, &limits, &mut errors);
        assert!(errors.is_empty(), "the plan accepted past a guard rail");
        assert!(
            schema.is_valid(&value),
            "the plan accepted what the schema refuses"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_target_has_a_plan_that_accepts_a_valid_body() {
        let media = MEDIA.as_ref().unwrap();
        let limits = JsonLimits::of(&crate::config::Limits::default());
        let body = br#"{"rows": [[1, 2.5]], "output": "label", "id": null, "n": 3}"#;
        assert!(certainly_valid(body, media.plan.as_ref().unwrap(), &limits));
        plan(body);
    }
}
