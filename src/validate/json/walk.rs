//! A JSON body checked against its [`Plan`] while serde_json parses it, without building a
//! tree: the numbers of a 1 MiB tensor are compared with their bounds as they are read.
//! The walk holds the body to everything the general path does — the guard rails, no
//! duplicate key, the depth limit, no integer beyond 64 bits, no byte-order mark — and
//! answers only "valid" or "not sure": any failure, of the JSON or of the schema, sends the
//! body down the general path, which gives the verdict and its errors. Written by hand
//! because no JSON Schema crate validates from parser events.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::JsonLimits;
use super::strict::Strict;
use crate::spec::plan::{Bound, Node, Plan, Typed};
use crate::spec::shape::Types;

/// True when `body` is certainly valid JSON that the plan's schema accepts within the
/// guard rails; false when unsure.
pub fn certainly_valid(body: &[u8], plan: &Plan, limits: &JsonLimits) -> bool {
    if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return false;
    }
    let walk = Walk {
        node: &plan.root,
        limits,
        depth: 0,
    };
    // By hand first (a tensor's numbers at a fraction of the cost), serde_json for the JSON
    // and the subschemas that walk leaves alone.
    match direct::check(body, walk) {
        Ok(()) => return true,
        Err(direct::Stop::Refused) => return false,
        Err(direct::Stop::Unsupported) => {}
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    walk.deserialize(&mut deserializer).is_ok() && deserializer.end().is_ok()
}

/// One value to check: its node and how deep it sits.
#[derive(Clone, Copy)]
struct Walk<'p> {
    node: &'p Node,
    limits: &'p JsonLimits,
    depth: usize,
}

/// The error of a walk: its text is never read.
fn unsure<E: de::Error>() -> E {
    E::custom("")
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.node {
            Node::General(schema) => {
                let value = Strict.deserialize(deserializer)?;
                let mut errors = Vec::new();
                super::guard(&value, self.limits, &mut errors);
                let fits =
                    depth_of(&value).is_some_and(|d| self.depth + d <= self.limits.max_depth);
                if fits && errors.is_empty() && schema.is_valid(&value) {
                    Ok(())
                } else {
                    Err(unsure())
                }
            }
            Node::Never => Err(unsure()),
            _ => deserializer.deserialize_any(self),
        }
    }
}

/// How many arrays and objects deep `value` goes (0 for a scalar); `None` when it holds an
/// integral float as big as an integer literal beyond 64 bits would read (see `visit_f64`).
fn depth_of(value: &serde_json::Value) -> Option<usize> {
    use serde_json::Value;
    fn deepest<'v>(mut values: impl Iterator<Item = &'v Value>) -> Option<usize> {
        values.try_fold(0, |deepest, value| Some(deepest.max(depth_of(value)?)))
    }
    match value {
        Value::Array(items) => Some(1 + deepest(items.iter())?),
        Value::Object(members) => Some(1 + deepest(members.values())?),
        Value::Number(number) => number.as_f64().is_none_or(|f| !huge(f)).then_some(0),
        _ => Some(0),
    }
}

/// An integral float at or past 2^63: what an integer literal too big for 64 bits becomes.
fn huge(value: f64) -> bool {
    // The magnitude first: `fract` costs a `trunc` call, a seventh of a tensor's walk.
    value.abs() >= 9.2e18 && value.fract() == 0.0
}

impl Walk<'_> {
    fn typed(&self) -> Option<&Typed> {
        match self.node {
            Node::Typed(typed) => Some(typed),
            _ => None,
        }
    }

    /// True when the node admits a value of type `kind`.
    fn admits(&self, kind: Types) -> bool {
        self.typed().is_none_or(|typed| typed.types.overlaps(kind))
    }

    /// A number against the node's type and bounds; `integer`: written without fraction or
    /// exponent; `exact`: `value` is exactly the number written (else bounds are not
    /// compared here).
    fn number(&self, value: f64, integer: bool, exact: bool) -> bool {
        let kind = if integer {
            Types::INTEGER.union(Types::NUMBER)
        } else {
            Types::NUMBER
        };
        let Some(typed) = self.typed() else {
            return true;
        };
        let bounded = typed.minimum.is_some() || typed.maximum.is_some();
        typed.types.overlaps(kind)
            && (exact || !bounded)
            && typed.minimum.is_none_or(|b| above(value, b))
            && typed.maximum.is_none_or(|b| below(value, b))
    }

    fn string(&self, text: &str) -> bool {
        if text.len() > self.limits.max_string_bytes || !self.admits(Types::STRING) {
            return false;
        }
        let Some(typed) = self.typed() else {
            return true;
        };
        // Every keyword applies: a listed string must still meet the length bounds.
        if let Some(allowed) = &typed.strings {
            if !allowed.iter().any(|s| s == text) {
                return false;
            }
        }
        if typed.min_length.is_none() && typed.max_length.is_none() {
            return true;
        }
        // JSON Schema counts code points.
        let length = text.chars().count() as u64;
        typed.min_length.is_none_or(|min| length >= min)
            && typed.max_length.is_none_or(|max| length <= max)
    }

    /// True when `value` lies within 10^-12 of one of the node's bounds, relative to the
    /// bound (a bound of 0 is near only 0).
    fn near_a_bound(&self, value: f64) -> bool {
        let Some(typed) = self.typed() else {
            return false;
        };
        let near = |bound: Bound| (value - bound.value).abs() <= 1e-12 * bound.value.abs();
        typed.minimum.is_some_and(near) || typed.maximum.is_some_and(near)
    }

    /// The walk into an array's items; `None` when the node admits no array, or its items
    /// would sit past the depth limit.
    fn items(&self) -> Option<Walk<'_>> {
        if !self.admits(Types::ARRAY) {
            return None;
        }
        self.down(self.typed().map_or(&Node::Any, |t| &t.items))
    }

    /// True when an array of `count` items meets the node's `minItems` and `maxItems`.
    fn item_count_fits(&self, count: u64) -> bool {
        self.typed().is_none_or(|t| {
            t.min_items.is_none_or(|min| count >= min) && t.max_items.is_none_or(|max| count <= max)
        })
    }

    /// True when an object may open here: the node admits one, within the depth limit.
    fn opens_object(&self) -> bool {
        self.admits(Types::OBJECT) && self.depth < self.limits.max_depth
    }

    /// The walk one level down, into `node`; unsure past the depth limit.
    fn down<'q>(&self, node: &'q Node) -> Option<Walk<'q>>
    where
        Self: 'q,
    {
        let depth = self.depth + 1;
        (depth <= self.limits.max_depth).then_some(Walk {
            node,
            limits: self.limits,
            depth,
        })
    }
}

fn above(value: f64, bound: Bound) -> bool {
    if bound.exclusive {
        value > bound.value
    } else {
        value >= bound.value
    }
}

fn below(value: f64, bound: Bound) -> bool {
    if bound.exclusive {
        value < bound.value
    } else {
        value <= bound.value
    }
}

/// Integers beyond ±2^53 are not compared with bounds as floats: the general path decides.
const EXACT: u64 = 1 << 53;

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.admits(Types::BOOLEAN).then_some(()).ok_or_else(unsure)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.admits(Types::NULL).then_some(()).ok_or_else(unsure)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        #[allow(clippy::cast_precision_loss)] // `exact` says when it is
        let fits = self.number(value as f64, true, value <= EXACT);
        fits.then_some(()).ok_or_else(unsure)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        #[allow(clippy::cast_precision_loss)] // `exact` says when it is
        let fits = self.number(value as f64, true, value.unsigned_abs() <= EXACT);
        fits.then_some(()).ok_or_else(unsure)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        // An integer literal too big for 64 bits arrives here as a float; the general path
        // refuses it, so every integral float that large is left to it.
        (!huge(value) && value.is_finite() && self.number(value, false, true))
            .then_some(())
            .ok_or_else(unsure)
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<(), E> {
        self.visit_str(text)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        self.string(text).then_some(()).ok_or_else(unsure)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let walk = self.items().ok_or_else(unsure)?;
        let mut count = 0u64;
        while seq.next_element_seed(walk)?.is_some() {
            count += 1;
            if count > self.limits.max_array_items as u64 {
                return Err(unsure());
            }
        }
        self.item_count_fits(count).then_some(()).ok_or_else(unsure)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if !self.opens_object() {
            return Err(unsure());
        }
        self.members(map)
    }
}

mod direct;
mod members;

#[cfg(test)]
mod tests;
