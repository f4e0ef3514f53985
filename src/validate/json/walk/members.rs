//! An object's members on the walk: each declared one at most once and by its own node,
//! the others by `additionalProperties`, each at most once too (a repeated member name is
//! what strict parsing refuses), and every required one present.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::{Walk, unsure};
use crate::spec::plan::Typed;

/// The rules of an object no schema constrains.
pub(super) static ANY_OBJECT: std::sync::LazyLock<Typed> = std::sync::LazyLock::new(Typed::default);

impl Walk<'_> {
    /// An object's members: each declared one at most once and by its own node, the others
    /// by `additionalProperties` (each at most once too), every required one present.
    pub(super) fn members<'de, A: MapAccess<'de>>(
        self,
        mut map: A,
        typed: &Typed,
    ) -> Result<(), A::Error> {
        let mut seen = 0u64;
        let mut others: HashSet<Key<'de>> = HashSet::new();
        let mut count = 0usize;
        while let Some(key) = map.next_key_seed(KeySeed(self.limits.max_string_bytes))? {
            count += 1;
            if count > self.limits.max_object_members {
                return Err(unsure());
            }
            let declared = typed
                .properties
                .iter()
                .position(|(name, _)| *name == *key.0);
            let node = match declared {
                Some(index) if seen & (1 << index) == 0 => {
                    seen |= 1 << index;
                    &typed.properties[index].1
                }
                Some(_) => return Err(unsure()),
                None => match &typed.additional {
                    Some(node) if others.insert(key) => node,
                    _ => return Err(unsure()),
                },
            };
            map.next_value_seed(self.down(node).ok_or_else(unsure)?)?;
        }
        (seen & typed.required == typed.required)
            .then_some(())
            .ok_or_else(unsure)
    }
}

/// A member name, borrowed from the body when it has no escapes.
#[derive(PartialEq, Eq, Hash)]
struct Key<'de>(std::borrow::Cow<'de, str>);

/// Reads a member name, refusing one over `limits.max_string_bytes`.
struct KeySeed(usize);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Key<'de>, E> {
        (text.len() <= self.0)
            .then_some(Key(text.into()))
            .ok_or_else(unsure)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Key<'de>, E> {
        (text.len() <= self.0)
            .then(|| Key(text.to_owned().into()))
            .ok_or_else(unsure)
    }
}
