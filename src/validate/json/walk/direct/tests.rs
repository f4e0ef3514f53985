use serde::de::DeserializeSeed;

use super::*;
use crate::spec::plan::{Bound, Plan, Typed};
use crate::validate::json::JsonLimits;

fn limits() -> JsonLimits {
    JsonLimits {
        max_depth: 6,
        max_string_bytes: 8,
        max_array_items: 5,
        max_object_members: 3,
    }
}

fn walk<'p>(plan: &'p Plan, limits: &'p JsonLimits) -> Walk<'p> {
    Walk {
        node: &plan.root,
        limits,
        depth: 0,
    }
}

/// The serde walk's answer alone.
fn serde_walk(plan: &Plan, body: &str) -> bool {
    let limits = limits();
    let mut deserializer = serde_json::Deserializer::from_slice(body.as_bytes());
    walk(plan, &limits).deserialize(&mut deserializer).is_ok() && deserializer.end().is_ok()
}

fn direct(plan: &Plan, body: &str) -> Step {
    let limits = limits();
    check(body.as_bytes(), walk(plan, &limits))
}

fn typed(build: impl FnOnce(&mut Typed)) -> Node {
    let mut typed = Typed::default();
    build(&mut typed);
    Node::Typed(Box::new(typed))
}

/// An array of numbers in `[low, high)`.
fn numbers_in(low: f64, high: f64) -> Plan {
    let number = typed(|t| {
        t.types = Types::NUMBER;
        t.minimum = Some(Bound {
            value: low,
            exclusive: false,
        });
        t.maximum = Some(Bound {
            value: high,
            exclusive: true,
        });
    });
    Plan {
        root: typed(|t| {
            t.types = Types::ARRAY;
            t.items = number;
        }),
    }
}

/// Whatever the direct walk calls valid, the serde walk does too; and it refuses only what
/// the serde walk refuses.
fn agrees(plan: &Plan, body: &str) -> Step {
    let answer = direct(plan, body);
    match answer {
        Ok(()) => assert!(serde_walk(plan, body), "direct accepted {body}"),
        Err(Stop::Refused) => assert!(!serde_walk(plan, body), "direct refused {body}"),
        Err(Stop::Unsupported) => {}
    }
    answer
}

#[test]
fn numbers_are_read_as_serde_json_reads_them() {
    let plan = numbers_in(0.0, 100.0);
    for body in [
        "[0, 1, 99, 5.1, 3.05]",
        "[0.72, 99.99999999999]",
        "[1e1, 2.5E+1, 7e-2, 0.0]",
        " [ 4.5 ,3.25\n,\t1 ] ",
        "[]",
    ] {
        assert_eq!(agrees(&plan, body), Ok(()), "{body}");
    }
    for body in [
        "[100]",
        "[-0.5]",
        "[1e2]",
        "[1, 2, 3, 4, 5, 6]",
        "[01]",
        "[1.]",
        "[.5]",
        "[1e]",
        "[+1]",
        "[1,]",
        "[1 2]",
        "[1] x",
        "[\"1\"]",
        "[true]",
        "[null]",
        "[",
        "",
    ] {
        assert_eq!(agrees(&plan, body), Err(Stop::Refused), "{body}");
    }
    for body in [
        "[1.00000000000000001]",
        "[1e30]",
        "[1e-400]",
        "[-0]",
        "[12345678901234567890]",
    ] {
        assert_eq!(agrees(&plan, body), Err(Stop::Unsupported), "{body}");
    }
}

#[test]
fn bounds_meet_floats_exactly_at_the_edge() {
    let plan = numbers_in(0.1, 0.3);
    assert_eq!(agrees(&plan, "[0.1, 0.29999999999999]"), Ok(()));
    assert_eq!(agrees(&plan, "[0.3]"), Err(Stop::Refused));
    assert_eq!(agrees(&plan, "[0.09999999999999]"), Err(Stop::Refused));
    assert_eq!(agrees(&plan, "[1e-1, 3e-1]"), Err(Stop::Refused));
}

#[test]
fn strings_objects_and_the_guard_rails() {
    let any = Plan { root: Node::Any };
    for body in [
        r#"{"a": [1, {"b": null}], "c": "été"}"#,
        r#"[true, false, null, "x", -2.5]"#,
        "[[[[[1]]]]]",
    ] {
        assert_eq!(agrees(&any, body), Ok(()), "{body}");
    }
    for body in [
        r#"{"a": 1, "a": 2}"#,
        r#"{"a": 1, "b": 2, "c": 3, "d": 4}"#,
        r#"["123456789"]"#,
        r#"{"123456789": 1}"#,
        "[[[[[[[1]]]]]]]",
        "[[[[[[{}]]]]]]",
        r#"{"a" 1}"#,
        r#"{"a": 1,}"#,
        r#"{1: 1}"#,
        "[tru]",
        "[nul]",
        "[\"a\u{1}\"]",
    ] {
        assert_eq!(agrees(&any, body), Err(Stop::Refused), "{body}");
    }
    for body in [r#"["\u0061"]"#, r#"{"\u0061": 1}"#, r#"["a\"b"]"#] {
        assert_eq!(agrees(&any, body), Err(Stop::Unsupported), "{body}");
    }
    assert_eq!(
        check(b"[\"\xff\"]", walk(&any, &limits())),
        Err(Stop::Refused),
        "not UTF-8"
    );
}

#[test]
fn declared_members_and_required_ones() {
    let plan = Plan {
        root: typed(|t| {
            t.types = Types::OBJECT;
            t.properties = vec![("rows".into(), numbers_in(0.0, 10.0).root)];
            t.required = 1;
            t.additional = None;
        }),
    };
    assert_eq!(agrees(&plan, r#"{"rows": [1, 2]}"#), Ok(()));
    for body in [
        r#"{}"#,
        r#"{"rows": [1], "rows": [2]}"#,
        r#"{"rows": [1], "other": 1}"#,
        r#"{"rows": [11]}"#,
        r#"[]"#,
    ] {
        assert_eq!(agrees(&plan, body), Err(Stop::Refused), "{body}");
    }
}

#[test]
fn a_general_subschema_is_left_to_the_serde_walk() {
    let never = Plan { root: Node::Never };
    assert_eq!(direct(&never, "1"), Err(Stop::Refused));
}

/// A decimal literal: `digits` with a point after `point` of them (none past the end), an
/// exponent now and then.
fn literal(negative: bool, digits: u64, point: usize, exponent: Option<i32>) -> String {
    let digits = digits.to_string();
    let mut text = String::from(if negative { "-" } else { "" });
    if point == 0 || point >= digits.len() {
        text.push_str(&digits);
        text.push_str(".5");
    } else {
        text.push_str(&digits[..point]);
        text.push('.');
        text.push_str(&digits[point..]);
    }
    if let Some(exponent) = exponent {
        text.push_str(&format!("e{exponent}"));
    }
    text
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

    /// At and around a bound — the float just below, at, and just above the number — the
    /// reciprocal shortcut and the exact quotient give the serde walk's verdict.
    #[test]
    fn bounds_at_the_number_itself_agree(
        negative in proptest::bool::ANY,
        digits in 1u64..1_000_000_000_000_000_000,
        shift in 0u32..18,
        point in 0usize..18,
        exponent in proptest::option::of(-30i32..30),
        nudge in 0usize..3,
        exclusive in proptest::bool::ANY,
        upper in proptest::bool::ANY,
    ) {
        let text = literal(negative, (digits / 10u64.pow(shift)).max(1), point, exponent);
        let value: f64 = serde_json::from_str(&text).unwrap();
        let bound = [value.next_down(), value, value.next_up()][nudge];
        let bound = Some(Bound { value: bound, exclusive });
        let number = typed(|t| if upper { t.maximum = bound } else { t.minimum = bound });
        let plan = Plan { root: typed(|t| { t.types = Types::ARRAY; t.items = number; }) };
        let _checked_inside = agrees(&plan, &format!("[{text}]"));
    }
}
