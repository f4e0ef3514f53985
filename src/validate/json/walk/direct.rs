//! The walk over the body's bytes by hand, for the common shape of a large body: numbers,
//! plain strings, arrays and objects. serde_json hands each number to a visitor through
//! several layers, which was two thirds of a tensor's walk; here a number is read and
//! compared in one loop. It reads only a conservative subset of JSON — strings without
//! escapes or control characters, numbers of at most 15 significant digits with a decimal
//! exponent within ±22 (exactly what serde_json computes for them: one correctly rounded
//! multiplication or division), nesting under serde_json's own recursion limit — and says
//! `Unsupported` for anything else, which the serde walk then reads.

use std::collections::HashSet;

use super::Walk;
use super::members::Members;
use crate::spec::plan::Node;
use crate::spec::shape::Types;

/// Why the walk stopped short of "valid".
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The body breaks a rule the walk read exactly: the serde walk would say so too.
    Refused,
    /// The walk cannot tell (a subset it does not read, a `General` subschema).
    Unsupported,
}

type Step = Result<(), Stop>;

/// Checks `body` against `walk`'s node; `Ok` only when it is valid for certain.
pub(super) fn check(body: &[u8], walk: Walk<'_>) -> Step {
    let mut bytes = Bytes { body, at: 0 };
    bytes.value(walk)?;
    bytes.skip_whitespace();
    if bytes.at == body.len() {
        Ok(())
    } else {
        Err(Stop::Refused)
    }
}

/// serde_json refuses nesting past 128 levels whatever the guard rail says; stay under it.
const MAX_NESTING: usize = 120;

struct Bytes<'b> {
    body: &'b [u8],
    at: usize,
}

impl<'b> Bytes<'b> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `expected` after optional whitespace.
    fn eat(&mut self, expected: u8) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(expected);
        self.at += usize::from(found);
        found
    }

    fn value(&mut self, walk: Walk<'_>) -> Step {
        match walk.node {
            Node::General(_) => return Err(Stop::Unsupported),
            Node::Never => return Err(Stop::Refused),
            Node::Any | Node::Typed(_) => {}
        }
        self.skip_whitespace();
        let kind = match self.peek().ok_or(Stop::Refused)? {
            b'{' => return self.object(walk),
            b'[' => return self.array(walk),
            b'"' => return self.string(walk),
            b'-' | b'0'..=b'9' => return self.number(walk),
            b't' => self.literal(b"true", Types::BOOLEAN),
            b'f' => self.literal(b"false", Types::BOOLEAN),
            b'n' => self.literal(b"null", Types::NULL),
            _ => None,
        };
        let kind = kind.ok_or(Stop::Refused)?;
        walk.admits(kind).then_some(()).ok_or(Stop::Refused)
    }

    fn literal(&mut self, text: &[u8], kind: Types) -> Option<Types> {
        let found = self.body[self.at..].starts_with(text);
        self.at += text.len();
        found.then_some(kind)
    }

    /// A string's text, without its quotes.
    fn text(&mut self) -> Result<&'b str, Stop> {
        let start = self.at + 1;
        let rest = self.body.get(start..).ok_or(Stop::Refused)?;
        // memchr, then a loop the compiler vectorises: a 1 MiB base64 string byte by byte
        // through one closure halved the req/s of such bodies.
        let length = memchr::memchr2(b'"', b'\\', rest).ok_or(Stop::Refused)?;
        if rest[length] == b'\\' {
            return Err(Stop::Unsupported);
        }
        let text = &rest[..length];
        if text.iter().fold(false, |control, &b| control | (b < 0x20)) {
            return Err(Stop::Refused);
        }
        self.at = start + length + 1;
        std::str::from_utf8(text).map_err(|_| Stop::Refused)
    }

    fn string(&mut self, walk: Walk<'_>) -> Step {
        let text = self.text()?;
        walk.string(text).then_some(()).ok_or(Stop::Refused)
    }

    fn array(&mut self, walk: Walk<'_>) -> Step {
        self.at += 1;
        let items = walk.items().ok_or(Stop::Refused)?;
        if items.depth > MAX_NESTING {
            return Err(Stop::Unsupported);
        }
        let mut count = 0u64;
        if !self.eat(b']') {
            loop {
                self.value(items)?;
                count += 1;
                if count > walk.limits.max_array_items as u64 {
                    return Err(Stop::Refused);
                }
                if self.eat(b']') {
                    break;
                }
                if !self.eat(b',') {
                    return Err(Stop::Refused);
                }
            }
        }
        walk.item_count_fits(count)
            .then_some(())
            .ok_or(Stop::Refused)
    }

    fn object(&mut self, walk: Walk<'_>) -> Step {
        self.at += 1;
        if !walk.opens_object() {
            return Err(Stop::Refused);
        }
        if walk.depth + 1 > MAX_NESTING {
            return Err(Stop::Unsupported);
        }
        let mut members: Members<'_, &str> = Members::new(walk.typed(), HashSet::new());
        if !self.eat(b'}') {
            loop {
                self.skip_whitespace();
                if self.peek() != Some(b'"') {
                    return Err(Stop::Refused);
                }
                let key = self.text()?;
                let node = members.node(key, walk.limits).ok_or(Stop::Refused)?;
                if !self.eat(b':') {
                    return Err(Stop::Refused);
                }
                self.value(walk.down(node).ok_or(Stop::Refused)?)?;
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return Err(Stop::Refused);
                }
            }
        }
        members.complete().then_some(()).ok_or(Stop::Refused)
    }
}

mod number;

#[cfg(test)]
mod tests;
