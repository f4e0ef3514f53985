use super::*;
use crate::spec::plan::Bound;

fn limits() -> JsonLimits {
    JsonLimits {
        max_depth: 4,
        max_string_bytes: 8,
        max_array_items: 5,
        max_object_members: 3,
    }
}

fn typed(build: impl FnOnce(&mut Typed)) -> Node {
    let mut typed = Typed::default();
    build(&mut typed);
    Node::Typed(Box::new(typed))
}

/// `{"rows": [[number in [0, 100)]...], "id": string ≤ 4 chars}`, rows required, nothing else.
fn tensor() -> Plan {
    let number = typed(|t| {
        t.types = Types::NUMBER;
        t.minimum = Some(Bound {
            value: 0.0,
            exclusive: false,
        });
        t.maximum = Some(Bound {
            value: 100.0,
            exclusive: true,
        });
    });
    let row = typed(|t| {
        t.types = Types::ARRAY;
        t.items = number;
        t.max_items = Some(2);
    });
    let rows = typed(|t| {
        t.types = Types::ARRAY;
        t.items = row;
        t.min_items = Some(1);
    });
    let id = typed(|t| {
        t.types = Types::STRING.union(Types::NULL);
        t.max_length = Some(4);
    });
    Plan {
        root: typed(|t| {
            t.types = Types::OBJECT;
            t.properties = vec![("rows".into(), rows), ("id".into(), id)];
            t.required = 1;
            t.additional = None;
        }),
    }
}

fn valid(plan: &Plan, body: &str) -> bool {
    certainly_valid(body.as_bytes(), plan, &limits())
}

#[test]
fn a_valid_tensor_is_certain() {
    let plan = tensor();
    for body in [
        r#"{"rows": [[1, 2.5], [0, 99.9]]}"#,
        r#"{"id": "ab", "rows": [[1]]}"#,
        r#"{"rows": [[]], "id": null}"#,
        r#"{"r\u006fws": [[1]], "id": "\u00e9t\u00e9"}"#,
    ] {
        assert!(valid(&plan, body), "{body}");
    }
}

#[test]
fn every_schema_failure_is_unsure() {
    let plan = tensor();
    for body in [
        r#"{"rows": [[100]]}"#,
        r#"{"rows": [[-0.5]]}"#,
        r#"{"rows": [[1, 2, 3]]}"#,
        r#"{"rows": []}"#,
        r#"{"rows": [["1"]]}"#,
        r#"{"id": "abcde", "rows": [[1]]}"#,
        r#"{"id": "ab"}"#,
        r#"{"rows": [[1]], "extra": 1}"#,
        r#"[]"#,
    ] {
        assert!(!valid(&plan, body), "{body}");
    }
}

#[test]
fn what_the_strict_parser_refuses_is_unsure() {
    let plan = Plan { root: Node::Any };
    for body in [
        r#"{"a": 1, "a": 2}"#,
        r#"{"a": 1, "\u0061": 2}"#,
        "\u{feff}{}",
        "{} {}",
        "[18446744073709551616]",
        "[-9223372036854775809]",
        "[1e400]",
        "[NaN]",
        r#"["\ud800"]"#,
        "[[[[[1]]]]]",
        "[[[[{}]]]]",
        r#"["123456789"]"#,
        r#"{"123456789": 1}"#,
        "[1, 2, 3, 4, 5, 6]",
        // Valid, but as big as an integer past 64 bits reads: the general path decides.
        "1.5e300",
        r#"{"a": 1, "b": 2, "c": 3, "d": 4}"#,
        "",
    ] {
        assert!(!valid(&plan, body), "{body}");
    }
    for body in [
        "[[[[1]]]]",
        "[18446744073709551615, -9223372036854775808]",
        r#"{"a": [1, {"b": null}]}"#,
        "1.5e-300",
        "-2.5",
    ] {
        assert!(valid(&plan, body), "{body}");
    }
    let tensor = tensor();
    assert!(!valid(&tensor, r#"{"rows": [[1]], "rows": [[2]]}"#));
    assert!(!valid(
        &tensor,
        r#"{"rows": [[1]], "id": "a", "\u0069d": "b"}"#
    ));
}

#[test]
fn integers_and_floats_meet_their_types() {
    let integer = Plan {
        root: typed(|t| t.types = Types::INTEGER),
    };
    assert!(valid(&integer, "3"));
    assert!(!valid(&integer, "3.5"));
    assert!(
        !valid(&integer, "3.0"),
        "the general validator decides on 3.0"
    );
    let number = Plan {
        root: typed(|t| t.types = Types::NUMBER),
    };
    assert!(valid(&number, "3") && valid(&number, "-3.5e2"));
    assert!(
        valid(&number, "9007199254740993"),
        "no bound to compare with"
    );
    let bounded = Plan {
        root: typed(|t| {
            t.minimum = Some(Bound {
                value: 0.0,
                exclusive: false,
            })
        }),
    };
    assert!(valid(&bounded, "9007199254740992"));
    assert!(
        !valid(&bounded, "9007199254740993"),
        "not exact as a float: the general path decides"
    );
}

#[test]
fn string_enums_and_lengths_count_code_points() {
    let plan = Plan {
        root: typed(|t| {
            t.types = Types::STRING;
            t.min_length = Some(2);
            t.max_length = Some(3);
        }),
    };
    assert!(valid(&plan, r#""été""#), "3 code points, 5 bytes");
    assert!(!valid(&plan, r#""a""#));
    let choice = Plan {
        root: typed(|t| {
            t.types = Types::STRING;
            t.strings = Some(vec!["label".into(), "both".into()]);
        }),
    };
    assert!(valid(&choice, r#""both""#));
    assert!(!valid(&choice, r#""other""#));
    let short_choice = Plan {
        root: typed(|t| {
            t.strings = Some(vec!["abcdef".into(), "ab".into()]);
            t.max_length = Some(3);
        }),
    };
    assert!(valid(&short_choice, r#""ab""#));
    assert!(
        !valid(&short_choice, r#""abcdef""#),
        "listed, but longer than maxLength"
    );
}
