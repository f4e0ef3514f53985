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

/// Powers of ten a `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The most significant digits read here: below 2^53, so the digits are exact as a float.
const MAX_DIGITS: u32 = 15;

/// Integers of more digits are left to the serde walk (it knows 64-bit overflow).
const MAX_INTEGER_DIGITS: u32 = 18;

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
        if !walk.admits(Types::ARRAY) {
            return Err(Stop::Refused);
        }
        let typed = walk.typed();
        let items = walk.down(typed.map_or(&Node::Any, |t| &t.items));
        let items = items.ok_or(Stop::Refused)?;
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
        let fits = typed.is_none_or(|t| {
            t.min_items.is_none_or(|min| count >= min) && t.max_items.is_none_or(|max| count <= max)
        });
        fits.then_some(()).ok_or(Stop::Refused)
    }

    fn object(&mut self, walk: Walk<'_>) -> Step {
        self.at += 1;
        if !walk.admits(Types::OBJECT) || walk.depth + 1 > walk.limits.max_depth {
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

    /// Digits from here on: how many, and their value (exact while `count` ≤ 19).
    fn digits(&mut self) -> (u32, u64) {
        let mut count = 0;
        let mut value = 0u64;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
            count += 1;
            self.at += 1;
        }
        (count, value)
    }

    fn number(&mut self, walk: Walk<'_>) -> Step {
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(negative);
        let first = self.peek();
        let (whole_digits, whole) = self.digits();
        if whole_digits == 0 || (first == Some(b'0') && whole_digits > 1) {
            return Err(Stop::Refused);
        }
        let mut digits = whole_digits;
        let mut significand = whole;
        let mut exponent = 0i32;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integer = false;
            let (count, fraction) = self.digits();
            if count == 0 {
                return Err(Stop::Refused);
            }
            digits += count;
            significand = whole
                .wrapping_mul(POW10_U64.get(count as usize).copied().unwrap_or(0))
                .wrapping_add(fraction);
            exponent = -i32::try_from(count).map_err(|_| Stop::Unsupported)?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            exponent += self.exponent()?;
        }
        if integer {
            return integer_value(walk, negative, digits, significand);
        }
        if digits > MAX_DIGITS {
            return Err(Stop::Unsupported);
        }
        let value = decimal(walk, negative, significand, exponent)?;
        let fits = walk.number(value, false, true);
        fits.then_some(()).ok_or(Stop::Refused)
    }

    /// The exponent part of a number, from its `e`.
    fn exponent(&mut self) -> Result<i32, Stop> {
        self.at += 1;
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(matches!(self.peek(), Some(b'-' | b'+')));
        let (count, value) = self.digits();
        if count == 0 {
            return Err(Stop::Refused);
        }
        let value = i32::try_from(value)
            .ok()
            .filter(|_| count <= 3)
            .ok_or(Stop::Unsupported)?;
        Ok(if negative { -value } else { value })
    }
}

/// `±significand × 10^exponent` as serde_json computes it (one correctly rounded
/// multiplication or division), or a value that compares with the node's bounds as that one
/// does.
fn decimal(walk: Walk<'_>, negative: bool, significand: u64, exponent: i32) -> Result<f64, Stop> {
    let index = exponent.unsigned_abs() as usize;
    let power = *POW10.get(index).ok_or(Stop::Unsupported)?;
    // Through `i64`: x86-64 converts signed integers in one instruction, unsigned in
    // several (a tenth of the walk).
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)] // under 2^53: exact
    let magnitude = significand as i64 as f64;
    let sign = if negative { -1.0 } else { 1.0 };
    if exponent >= 0 {
        let value = sign * magnitude * power;
        return if super::huge(value) {
            Err(Stop::Unsupported)
        } else {
            Ok(value)
        };
    }
    // A division per number was a quarter of a tensor's walk. The product with the
    // reciprocal is within 3·10^-16 of the quotient, relative: it is used only when no bound
    // lies within 10^-12 of it (relative to the bound), so every comparison comes out as
    // the quotient's would.
    let close = sign * magnitude * INVERSE_POW10[index];
    if walk.near_a_bound(close) {
        Ok(sign * (magnitude / power))
    } else {
        Ok(close)
    }
}

/// `1 / POW10[i]`, each rounded once.
const INVERSE_POW10: [f64; 23] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22,
];

/// Powers of ten up to 10^19, for joining a number's whole and fractional digits.
const POW10_U64: [u64; 20] = {
    let mut powers = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// An integer literal: what serde_json reads as `u64` or `i64` (`-0` it reads as a float).
fn integer_value(walk: Walk<'_>, negative: bool, digits: u32, value: u64) -> Step {
    if digits > MAX_INTEGER_DIGITS || (negative && value == 0) {
        return Err(Stop::Unsupported);
    }
    #[allow(clippy::cast_precision_loss)] // `exact` says when it is
    let magnitude = value as f64;
    let value_f64 = if negative { -magnitude } else { magnitude };
    let fits = walk.number(value_f64, true, value <= super::EXACT);
    fits.then_some(()).ok_or(Stop::Refused)
}

#[cfg(test)]
mod tests;
