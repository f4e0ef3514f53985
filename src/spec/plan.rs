//! A plan for checking a JSON body while it is parsed, without building its tree: the part
//! of JSON Schema that model specs use for tensors and requests (types, numeric bounds,
//! string lengths and enums, arrays with `items`, objects with `properties`, `required`
//! and `additionalProperties`, `anyOf: [X, null]`, `$ref`s) as a tree of plain rules.
//! Anything else in a subschema (a `pattern`, a `format`, `oneOf`, …) makes that subtree
//! `General`: its value is built and handed to the compiled validator, as before.
//!
//! A plan only ever answers "valid for certain"; any doubt sends the body down the general
//! path (`validate::body`), which gives the verdict and its errors. So a plan can be
//! incomplete without being wrong, as long as it never accepts what the schema refuses —
//! the property `tests/properties.rs` checks against the general validator.

use std::sync::Arc;

use super::compile::Schema;
use super::raw::Loc;
use super::shape::Types;
use super::source::Documents;

/// A body's plan: the root of its rules.
#[derive(Debug)]
pub struct Plan {
    pub root: Node,
}

/// The rules for one value.
#[derive(Debug)]
pub enum Node {
    /// Anything (the guard rails still apply).
    Any,
    /// Nothing: the `false` schema.
    Never,
    /// Rules the plan holds itself.
    Typed(Box<Typed>),
    /// A subschema the plan does not cover: its value is built and validated whole.
    General(Arc<Schema>),
}

/// The rules of a subschema the plan covers; each applies only to its own JSON type.
#[derive(Debug)]
pub struct Typed {
    pub types: Types,
    pub minimum: Option<Bound>,
    pub maximum: Option<Bound>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    /// `enum`/`const` of strings (and `null`): the strings allowed.
    pub strings: Option<Vec<String>>,
    /// The types `enum`/`const` allow, applied to `types` once every keyword is read.
    enum_types: Option<Types>,
    pub items: Node,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    /// At most 64, so a request's members are tracked in one `u64`.
    pub properties: Vec<(String, Node)>,
    /// Bit `i` set: `properties[i]` is required.
    pub required: u64,
    /// Members not in `properties`: `None` when `additionalProperties: false`.
    pub additional: Option<Node>,
}

/// A numeric bound; `exclusive` for `exclusiveMinimum`/`exclusiveMaximum`.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub value: f64,
    pub exclusive: bool,
}

/// Keywords that only document a schema.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "example",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
];

/// How deep `$ref`s are followed before a subtree is left to the general validator.
const MAX_DEPTH: usize = 32;

/// The plan for the schema at `at`; `None` when the plan would be all `General` (nothing
/// gained). `general` compiles a subschema the plan does not cover (shared with the
/// operation's own compiled schemas).
pub(super) fn build(
    docs: &Documents,
    at: &Loc,
    general: &mut dyn FnMut(&Loc) -> Option<Arc<Schema>>,
) -> Option<Plan> {
    let mut planner = planner::Planner {
        docs,
        general,
        nodes: 0,
        abandoned: false,
    };
    let root = planner.node(at, 0)?;
    if planner.abandoned || matches!(root, Node::General(_)) {
        return None;
    }
    Some(Plan { root })
}

/// The most nodes a plan holds; a bigger schema is left to the general validator.
const MAX_NODES: usize = 4096;

impl Default for Typed {
    fn default() -> Self {
        Typed {
            types: Types::ANY,
            minimum: None,
            maximum: None,
            min_length: None,
            max_length: None,
            strings: None,
            enum_types: None,
            items: Node::Any,
            min_items: None,
            max_items: None,
            properties: Vec::new(),
            required: 0,
            additional: Some(Node::Any),
        }
    }
}

mod planner;

#[cfg(test)]
mod tests;
