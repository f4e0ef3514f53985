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

#[test]
fn each_open_end_gets_the_keyword_that_closes_it() {
    let cases = [
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
    ];
    for (schema, expected) in cases {
        let Value::Object(map) = &schema else {
            unreachable!()
        };
        let updates: Vec<Value> = open_ends(map, false).into_iter().map(|(_, u)| u).collect();
        assert_eq!(updates, expected, "{schema}");
    }
}
