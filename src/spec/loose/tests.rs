//! Unit tests of `loose`.

use serde_json::{Value, json};

use super::normalized_path;
use super::open_ends::open_ends;

#[test]
fn normalized_paths_quote_names_and_index_arrays() {
    let doc = json!({"paths": {"/v1/{m}:predict": {"post": {"x": [{"it's": 1}]}}}});
    assert_eq!(
        normalized_path(&doc, "/paths/~1v1~1{m}:predict/post/x/0/it's"),
        r"$['paths']['/v1/{m}:predict']['post']['x'][0]['it\'s']"
    );
}

/// Every closing keyword is a suggestion (a guess at the model's domain that may refuse a
/// valid request), but for a bound the schema states itself, which is an update.
#[test]
fn each_open_end_gets_the_keyword_that_closes_it() {
    for (schema, expected) in cases() {
        let Value::Object(map) = &schema else {
            unreachable!()
        };
        let openings = open_ends(map, false);
        assert!(
            openings.iter().all(|o| o.update == json!({})),
            "a guess in the update: {schema}"
        );
        let suggested: Vec<Value> = openings.into_iter().map(|o| o.suggested).collect();
        assert_eq!(suggested, expected, "{schema}");
    }
}

/// Schemas, and the suggestions that close each.
fn cases() -> Vec<(Value, Vec<Value>)> {
    vec![
        (json!({"type": "string"}), vec![json!({"maxLength": 256})]),
        (json!({"type": "string", "format": "uuid"}), vec![]),
        (
            json!({"type": "string", "format": "byte"}),
            vec![json!({"maxLength": 256})],
        ),
        (
            json!({"type": "integer", "minimum": 1}),
            vec![json!({"maximum": 1_000_000})],
        ),
        (
            json!({"type": "number"}),
            vec![json!({"minimum": -1_000_000, "maximum": 1_000_000})],
        ),
        (
            json!({"type": "array", "items": {}}),
            vec![json!({"maxItems": 100})],
        ),
        (
            json!({"type": "object"}),
            vec![json!({"additionalProperties": false})],
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec![json!({"maxProperties": 64})],
        ),
        (
            json!({"type": "object", "unevaluatedProperties": false}),
            vec![],
        ),
        (json!({"enum": ["a", "b"]}), vec![]),
        (json!({}), vec![json!({"type": "string", "maxLength": 256})]),
        (json!({"$ref": "#/x"}), vec![]),
        (
            json!({"allOf": [{"$ref": "#/a"}], "type": "object"}),
            vec![json!({"unevaluatedProperties": false})],
        ),
    ]
}

#[test]
fn a_tuple_closed_after_its_prefix_items_states_its_own_max_items() {
    let schema = json!({"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": false});
    let Value::Object(map) = &schema else {
        unreachable!()
    };
    let openings = open_ends(map, false);
    assert_eq!(openings.len(), 1);
    assert_eq!(openings[0].update, json!({"maxItems": 2}));
    assert_eq!(openings[0].suggested, json!({}));
}
