//! An object's members on the walk: each declared one at most once and by its own node,
//! the others by `additionalProperties`, each at most once too (a repeated member name is
//! what strict parsing refuses), and every required one present. [`Members`] keeps that
//! count for both walks: serde_json's and the one over the bytes by hand.

use std::borrow::{Borrow, Cow};
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::{JsonLimits, Walk, unsure};
use crate::spec::plan::{Node, Typed};

/// The rules of an object no schema constrains.
static ANY_OBJECT: std::sync::LazyLock<Typed> = std::sync::LazyLock::new(Typed::default);

/// The members of one object seen so far.
pub(super) struct Members<'t, K> {
    typed: &'t Typed,
    /// Bit `i`: `properties[i]` was seen.
    seen: u64,
    /// The undeclared members seen (allocates only when there is one).
    others: HashSet<K>,
    count: usize,
}

impl<'t, K: Borrow<str> + Hash + Eq> Members<'t, K> {
    /// An object under `typed` (`None`: no schema constrains it).
    pub(super) fn new(typed: Option<&'t Typed>, others: HashSet<K>) -> Self {
        Members {
            typed: typed.unwrap_or(&ANY_OBJECT),
            seen: 0,
            others,
            count: 0,
        }
    }

    /// The node for the member named `key`; `None` when it may not be there: repeated,
    /// undeclared where `additionalProperties` is false, or past `max_object_members`.
    pub(super) fn node(&mut self, key: K, limits: &JsonLimits) -> Option<&'t Node> {
        self.count += 1;
        if self.count > limits.max_object_members || key.borrow().len() > limits.max_string_bytes {
            return None;
        }
        let typed = self.typed;
        let declared = typed
            .properties
            .iter()
            .position(|(name, _)| name == key.borrow());
        match declared {
            Some(index) if self.seen & (1 << index) == 0 => {
                self.seen |= 1 << index;
                Some(&typed.properties[index].1)
            }
            Some(_) => None,
            None => typed
                .additional
                .as_ref()
                .filter(|_| self.others.insert(key)),
        }
    }

    /// True when every required member was seen.
    pub(super) fn complete(&self) -> bool {
        self.seen & self.typed.required == self.typed.required
    }
}

impl Walk<'_> {
    /// An object's members, read by serde_json.
    pub(super) fn members<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut members: Members<'_, Cow<'de, str>> = Members::new(self.typed(), HashSet::new());
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let node = members.node(key, self.limits).ok_or_else(unsure)?;
            map.next_value_seed(self.down(node).ok_or_else(unsure)?)?;
        }
        members.complete().then_some(()).ok_or_else(unsure)
    }
}

/// Reads a member name, borrowed from the body when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }
}
