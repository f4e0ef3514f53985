use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::spec::compile::Compiler;

/// The plan for `schema` as `#/s` of a one-document set, with `components` beside it.
fn plan(schema: Value, components: Value) -> Option<Plan> {
    let docs = Documents {
        root: "urn:t".into(),
        docs: BTreeMap::from([(
            "urn:t".to_owned(),
            json!({"s": schema, "components": components}),
        )]),
    };
    let compiler = Compiler::new(&docs).unwrap();
    let at = Loc {
        uri: "urn:t".into(),
        pointer: "/s".into(),
    };
    build(&docs, &at, &mut |at| {
        compiler.compile(&at.uri, &at.pointer).ok().map(Arc::new)
    })
}

fn typed(node: &Node) -> &Typed {
    match node {
        Node::Typed(typed) => typed,
        other => panic!("not typed: {other:?}"),
    }
}

#[test]
fn a_tensor_schema_is_planned_whole() {
    let plan = plan(
        json!({"type": "object", "additionalProperties": false, "required": ["instances"],
               "properties": {"instances": {"$ref": "#/components/row"}, "id": {"type": "string", "default": "x"}}}),
        json!({"row": {"type": "array", "maxItems": 64, "items": {"type": "array",
               "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 100}}}}),
    )
    .unwrap();
    let root = typed(&plan.root);
    assert_eq!(root.types, Types::OBJECT);
    assert!(root.additional.is_none());
    let index = root
        .properties
        .iter()
        .position(|(n, _)| n == "instances")
        .unwrap();
    assert_eq!(root.required, 1 << index);
    let instances = typed(&root.properties[index].1);
    assert_eq!(instances.max_items, Some(64));
    let numbers = typed(&typed(&instances.items).items);
    assert_eq!(
        numbers.minimum.map(|b| (b.value, b.exclusive)),
        Some((0.0, false))
    );
    assert_eq!(
        numbers.maximum.map(|b| (b.value, b.exclusive)),
        Some((100.0, true))
    );
}

#[test]
fn what_the_plan_does_not_cover_is_left_to_the_general_validator() {
    let plan = plan(
        json!({"type": "object", "properties": {
            "version": {"anyOf": [{"type": "string", "pattern": "^v[0-9]+$"}, {"type": "null"}]},
            "format": {"enum": ["label", "both", null]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 1}]}}}),
        json!({}),
    )
    .unwrap();
    let properties = &typed(&plan.root).properties;
    let node = |name: &str| &properties.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(matches!(node("version"), Node::General(_)));
    assert!(matches!(node("either"), Node::General(_)));
    let format = typed(node("format"));
    assert_eq!(format.types, Types::STRING.union(Types::NULL));
    assert_eq!(
        format.strings.as_deref(),
        Some(&["label".to_owned(), "both".to_owned()][..])
    );
    let maybe = typed(node("maybe"));
    assert!(maybe.types.contains(Types::NULL) && maybe.types.contains(Types::INTEGER));
}

#[test]
fn no_plan_when_it_would_gain_nothing_or_references_could_resolve_differently() {
    assert!(
        plan(
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({})
        )
        .is_none()
    );
    assert!(
        plan(
            json!({"type": "object", "properties": {"a": {"$id": "urn:other", "type": "string"}}}),
            json!({})
        )
        .is_none()
    );
    assert!(
        plan(
            json!({"type": "number", "minimum": 1, "exclusiveMinimum": 0}),
            json!({})
        )
        .is_some_and(|p| matches!(p.root, Node::General(_)))
        .eq(&false)
    );
}

#[test]
fn a_reference_cycle_ends_in_the_general_validator() {
    let plan = plan(
        json!({"$ref": "#/components/tree"}),
        json!({"tree": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/components/tree"}}}}}),
    )
    .unwrap();
    let mut node = &plan.root;
    let mut levels = 0;
    while let Node::Typed(typed) = node {
        node = &typed.properties[0].1;
        node = match node {
            Node::Typed(children) => &children.items,
            other => other,
        };
        levels += 1;
    }
    assert!(matches!(node, Node::General(_)), "{levels} levels");
}
