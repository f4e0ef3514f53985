//! Reading a schema into a [`Plan`](super::Plan): keyword by keyword, following `$ref`s,
//! handing what it does not cover to the general validator.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{ANNOTATIONS, Bound, MAX_DEPTH, MAX_NODES, Node, Typed};
use crate::spec::compile::Schema;
use crate::spec::raw::Loc;
use crate::spec::shape::Types;
use crate::spec::source::Documents;

pub(super) struct Planner<'p> {
    pub(super) docs: &'p Documents,
    pub(super) general: &'p mut dyn FnMut(&Loc) -> Option<Arc<Schema>>,
    pub(super) nodes: usize,
    /// Set on a keyword that changes how references resolve (`$id`, `$anchor`,
    /// `$dynamicRef`, …): a subtree compiled on its own might then resolve differently
    /// from the whole, so there is no plan at all.
    pub(super) abandoned: bool,
}

impl Planner<'_> {
    /// The node for the schema at `at`; `None` when even the general validator cannot take
    /// it (then there is no plan).
    pub(super) fn node(&mut self, at: &Loc, depth: usize) -> Option<Node> {
        let schema = self.docs.get(&at.uri, &at.pointer)?;
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            self.abandoned = true;
        }
        let covered = match schema {
            Value::Bool(true) => Some(Node::Any),
            Value::Bool(false) => Some(Node::Never),
            Value::Object(schema) if depth < MAX_DEPTH => self.object_schema(at, schema, depth),
            _ => None,
        };
        match covered {
            Some(node) => Some(node),
            None => (self.general)(at).map(Node::General),
        }
    }

    /// A schema object the plan covers, or `None` for the general validator.
    fn object_schema(
        &mut self,
        at: &Loc,
        schema: &Map<String, Value>,
        depth: usize,
    ) -> Option<Node> {
        let keys = || schema.keys().filter(|k| !ANNOTATIONS.contains(&k.as_str()));
        if keys().any(|k| k.starts_with('$') && k != "$ref") {
            self.abandoned = true;
            return None;
        }
        if keys().count() == 0 {
            return Some(Node::Any);
        }
        if let Some(Value::String(reference)) = schema.get("$ref") {
            if keys().count() != 1 {
                return None;
            }
            let (uri, pointer) = self.docs.locate(&at.uri, reference).ok()?;
            return self.node(&Loc { uri, pointer }, depth + 1);
        }
        if let Some(Value::Array(branches)) = schema.get("anyOf") {
            if keys().count() != 1 {
                return None;
            }
            return self.nullable(at, branches, depth);
        }
        let mut typed = Typed::default();
        for key in keys() {
            self.keyword(at, &mut typed, key, &schema[key.as_str()], depth)?;
        }
        // `enum`/`const` narrow `type`, and `required` names members of `properties`:
        // both read once every keyword is.
        if let Some(allowed) = typed.enum_types {
            typed.types = typed.types.intersection(allowed);
        }
        if let Some(required) = schema.get("required") {
            typed.required = required_mask(&typed.properties, required.as_array()?)?;
        }
        Some(Node::Typed(Box::new(typed)))
    }

    /// `anyOf: [X, {type: null}]` (either order), as FastAPI writes `Optional[X]`.
    fn nullable(&mut self, at: &Loc, branches: &[Value], depth: usize) -> Option<Node> {
        let is_null = |b: &Value| {
            b.as_object()
                .is_some_and(|o| o.len() == 1 && o.get("type") == Some(&Value::from("null")))
        };
        let [first, second] = branches else {
            return None;
        };
        let index = match (is_null(first), is_null(second)) {
            (false, true) => 0,
            (true, false) => 1,
            _ => return None,
        };
        match self.node(&child(at, &format!("anyOf/{index}")), depth + 1)? {
            Node::Typed(mut typed) => {
                typed.types = typed.types.union(Types::NULL);
                Some(Node::Typed(typed))
            }
            Node::Any => Some(Node::Any),
            _ => None,
        }
    }

    /// Reads one keyword into `typed`; `None` when the plan does not cover it.
    fn keyword(
        &mut self,
        at: &Loc,
        typed: &mut Typed,
        key: &str,
        value: &Value,
        depth: usize,
    ) -> Option<()> {
        match key {
            "type" => typed.types = types(value)?,
            "minimum" | "exclusiveMinimum" if typed.minimum.is_none() => {
                typed.minimum = Some(bound(value, key == "exclusiveMinimum")?);
            }
            "maximum" | "exclusiveMaximum" if typed.maximum.is_none() => {
                typed.maximum = Some(bound(value, key == "exclusiveMaximum")?);
            }
            "minLength" => typed.min_length = Some(value.as_u64()?),
            "maxLength" => typed.max_length = Some(value.as_u64()?),
            "minItems" => typed.min_items = Some(value.as_u64()?),
            "maxItems" => typed.max_items = Some(value.as_u64()?),
            "enum" if typed.strings.is_none() => strings(typed, value.as_array()?)?,
            "const" if typed.strings.is_none() => strings(typed, std::slice::from_ref(value))?,
            "items" => typed.items = self.node(&child(at, "items"), depth + 1)?,
            "properties" => typed.properties = self.properties(at, value.as_object()?, depth)?,
            "additionalProperties" => {
                typed.additional = match value {
                    Value::Bool(false) => None,
                    _ => Some(self.node(&child(at, "additionalProperties"), depth + 1)?),
                };
            }
            "required" => {}
            _ => return None,
        }
        Some(())
    }

    fn properties(
        &mut self,
        at: &Loc,
        properties: &Map<String, Value>,
        depth: usize,
    ) -> Option<Vec<(String, Node)>> {
        if properties.len() > 64 {
            return None;
        }
        let base = child(at, "properties");
        properties
            .keys()
            .map(|name| {
                let at = child(&base, &crate::spec::normalize::escape(name));
                Some((name.clone(), self.node(&at, depth + 1)?))
            })
            .collect()
    }
}

fn child(at: &Loc, segment: &str) -> Loc {
    Loc {
        uri: at.uri.clone(),
        pointer: format!("{}/{segment}", at.pointer),
    }
}

fn types(value: &Value) -> Option<Types> {
    match value {
        Value::String(name) => Types::named(name),
        Value::Array(names) => names.iter().try_fold(Types::default(), |all, name| {
            Some(all.union(Types::named(name.as_str()?)?))
        }),
        _ => None,
    }
}

fn bound(value: &Value, exclusive: bool) -> Option<Bound> {
    // A bound that is not exactly a float (a huge integer) is left to the general validator.
    let number = value.as_number()?;
    let float = number.as_f64()?;
    let exact = number.is_f64() || float.abs() <= 9_007_199_254_740_992.0;
    exact.then_some(Bound {
        value: float,
        exclusive,
    })
}

/// `enum`/`const` values: strings and `null` only.
fn strings(typed: &mut Typed, values: &[Value]) -> Option<()> {
    let mut allowed = Types::STRING;
    let mut strings = Vec::with_capacity(values.len());
    for value in values {
        match value {
            Value::String(text) => strings.push(text.clone()),
            Value::Null => allowed = allowed.union(Types::NULL),
            _ => return None,
        }
    }
    typed.enum_types = Some(allowed);
    typed.strings = Some(strings);
    Some(())
}

fn required_mask(properties: &[(String, Node)], required: &[Value]) -> Option<u64> {
    required.iter().try_fold(0u64, |mask, name| {
        let name = name.as_str()?;
        // A required member the properties do not declare: left to the general validator.
        let index = properties
            .iter()
            .position(|(declared, _)| declared == name)?;
        Some(mask | 1 << index)
    })
}
