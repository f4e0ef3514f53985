//! Unit tests of `normalize`.

use super::*;
use std::collections::BTreeMap;

use serde_json::json;

fn normalized(schema: Value) -> (Value, Vec<String>, Vec<String>) {
    let mut docs = Documents {
        root: "urn:t".into(),
        docs: BTreeMap::from([("urn:t".to_owned(), json!({"s": schema}))]),
    };
    let mut normalizer = Normalizer::new(&mut docs);
    normalizer.schema_at("urn:t", "/s");
    let (problems, warnings) = (normalizer.problems, normalizer.warnings);
    (docs.docs["urn:t"]["s"].clone(), problems, warnings)
}

#[test]
fn nullable_with_a_type_adds_null_to_type_and_enum() {
    let (schema, problems, _) =
        normalized(json!({"type": "string", "enum": ["a"], "nullable": true}));
    assert_eq!(
        schema,
        json!({"type": ["string", "null"], "enum": ["a", null]})
    );
    assert!(problems.is_empty());
}

#[test]
fn nullable_without_a_type_wraps_the_schema() {
    let (schema, _, _) = normalized(json!({"allOf": [{"type": "integer"}], "nullable": true}));
    assert_eq!(
        schema,
        json!({"anyOf": [{"allOf": [{"type": "integer"}]}, {"type": "null"}]})
    );
    let (schema, _, _) = normalized(json!({"type": "string", "nullable": false}));
    assert_eq!(schema, json!({"type": "string"}));
}

#[test]
fn boolean_exclusive_bounds_become_numbers() {
    let (schema, _, _) = normalized(json!({
        "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": false
    }));
    assert_eq!(schema, json!({"exclusiveMinimum": 0, "maximum": 1}));
    let (schema, _, _) = normalized(json!({"exclusiveMinimum": 0.0}));
    assert_eq!(schema, json!({"exclusiveMinimum": 0.0}));
}

#[test]
fn an_unknown_keyword_fails_with_its_location() {
    let (_, problems, _) =
        normalized(json!({"properties": {"a": {"type": "string", "maxLenght": 3}}}));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("urn:t#/s/properties/a:"),
        "{problems:?}"
    );
    assert!(problems[0].contains("maxLenght"));
    let (_, problems, _) = normalized(json!({"type": "string", "x-internal": true}));
    assert!(problems.is_empty());
    let (schema, problems, warnings) = normalized(json!({"type": "array", "max_items": 2}));
    assert!(problems.is_empty());
    assert_eq!(schema, json!({"type": "array", "maxItems": 2}));
    assert_eq!(warnings.len(), 1);
}

#[test]
fn untranslatable_patterns_fail_the_load() {
    for pattern in ["^(?=a)b$", "(?<!x)y", r"(a)\1"] {
        let (_, problems, _) = normalized(json!({"type": "string", "pattern": pattern}));
        assert_eq!(problems.len(), 1, "{pattern} {problems:?}");
        assert!(problems[0].contains("cannot be enforced"));
    }
    let (_, problems, _) = normalized(json!({"pattern": r"^\d{3}-\w+$"}));
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn real_spec_oddities_are_warnings() {
    let (schema, problems, warnings) = normalized(
        json!({"oneOf": [{"type": "array"}, {"type": "bytes"}], "required": ["a", "a"]}),
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(schema["oneOf"][1], json!({"type": "string"}));
    assert_eq!(schema["required"], json!(["a"]));
    let (_, problems, _) = normalized(json!({"type": "texte"}));
    assert_eq!(problems.len(), 1);
}

#[test]
fn draft4_tuples_and_dependencies_are_translated() {
    let (schema, _, _) = normalized(json!({
        "items": [{"type": "string"}], "additionalItems": false,
        "dependencies": {"a": ["b"], "c": {"required": ["d"]}}
    }));
    assert_eq!(schema["prefixItems"], json!([{"type": "string"}]));
    assert_eq!(schema["items"], json!(false));
    assert_eq!(schema["dependentRequired"], json!({"a": ["b"]}));
    assert_eq!(
        schema["dependentSchemas"],
        json!({"c": {"required": ["d"]}})
    );
}

#[test]
fn numeric_formats_add_bounds() {
    let (schema, _, _) = normalized(json!({"type": "integer", "format": "int32"}));
    assert_eq!(schema["allOf"][0]["maximum"], json!(i32::MAX));
    let (schema, _, _) = normalized(json!({"type": "string", "format": "int32"}));
    assert!(schema.get("allOf").is_none());
}

#[test]
fn a_discriminator_requires_its_property_and_its_mapping_selects_the_schema() {
    use crate::spec::compile::Compiler;
    let mut docs = Documents {
        root: "urn:t".into(),
        docs: BTreeMap::from([(
            "urn:t".to_owned(),
            json!({"components": {"schemas": {
                "Pet": {
                    "oneOf": [{"$ref": "#/components/schemas/Cat"}, {"$ref": "#/components/schemas/Dog"}],
                    "discriminator": {"propertyName": "kind", "mapping": {"cat": "Cat", "dog": "#/components/schemas/Dog"}}
                },
                "Cat": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}, "purrs": {"type": "boolean"}}, "additionalProperties": false},
                "Dog": {"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}, "barks": {"type": "boolean"}}}
            }}}),
        )]),
    };
    let mut normalizer = Normalizer::new(&mut docs);
    normalizer.schema_at("urn:t", "/components/schemas/Pet");
    assert!(normalizer.problems.is_empty(), "{:?}", normalizer.problems);
    let pet = Compiler::new(&docs)
        .unwrap()
        .compile("urn:t", "/components/schemas/Pet")
        .unwrap();
    assert!(pet.is_valid(&json!({"kind": "cat", "purrs": true})));
    assert!(pet.is_valid(&json!({"kind": "dog", "barks": true})));
    // Valid as a Dog (which allows anything else), but it says it is a cat.
    assert!(!pet.is_valid(&json!({"kind": "cat", "barks": true})));
    assert!(
        !pet.is_valid(&json!({"barks": true})),
        "the discriminator property is required"
    );
}

#[test]
fn recursive_refs_point_at_their_anchor_schema() {
    let (schema, problems, _) = normalized(json!({
        "$recursiveAnchor": true, "type": "object",
        "properties": {"children": {"items": {"$recursiveRef": "#"}}}
    }));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        schema["properties"]["children"]["items"],
        json!({"$ref": "#/s"})
    );
}

#[test]
fn references_are_followed_and_normalised_once() {
    let mut docs = Documents {
        root: "urn:t".into(),
        docs: BTreeMap::from([(
            "urn:t".to_owned(),
            json!({"a": {"$ref": "#/b"}, "b": {"type": "integer", "nullable": true, "properties": {"self": {"$ref": "#/b"}}}}),
        )]),
    };
    let mut normalizer = Normalizer::new(&mut docs);
    normalizer.schema_at("urn:t", "/a");
    assert!(normalizer.problems.is_empty());
    assert_eq!(docs.docs["urn:t"]["b"]["type"], json!(["integer", "null"]));
}
