//! Numbers on the walk by hand: read digit by digit and compared with the node's bounds as
//! the value serde_json would compute, or left to the serde walk (`Unsupported`) past the
//! digits and exponents where that value is one correctly rounded operation.

use super::{Bytes, Step, Stop, Walk};
use crate::validate::json::walk::{EXACT, huge};

impl Bytes<'_> {
    /// Digits from here on, appended to the digits of `value`: how many, and the value of
    /// all of them (exact while there are at most 19 in all).
    fn digits(&mut self, mut value: u64) -> (u32, u64) {
        let mut count = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
            count += 1;
            self.at += 1;
        }
        (count, value)
    }

    pub(super) fn number(&mut self, walk: Walk<'_>) -> Step {
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(negative);
        let first = self.peek();
        let (whole_digits, whole) = self.digits(0);
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
            let (count, joined) = self.digits(whole);
            if count == 0 {
                return Err(Stop::Refused);
            }
            digits += count;
            significand = joined;
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
        let (count, value) = self.digits(0);
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

/// Integers of more digits are left to the serde walk (it knows 64-bit overflow).
const MAX_INTEGER_DIGITS: u32 = 18;

/// The most significant digits read here: below 2^53, so the digits are exact as a float.
const MAX_DIGITS: u32 = 15;

/// Powers of ten a `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `±significand × 10^exponent` as serde_json computes it — one correctly rounded
/// multiplication or division, since both the significand (under 2^53) and the power
/// (≤ 10^22) are exact floats: its simple reader does just that, and its exact one
/// (`float_roundtrip`, which `jsonschema` turns on here) takes the same first step for such
/// numbers. Or a value that compares with the node's bounds as that one does.
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
        return if huge(value) {
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

/// An integer literal: what serde_json reads as `u64` or `i64` (`-0` it reads as a float).
fn integer_value(walk: Walk<'_>, negative: bool, digits: u32, value: u64) -> Step {
    if digits > MAX_INTEGER_DIGITS || (negative && value == 0) {
        return Err(Stop::Unsupported);
    }
    #[allow(clippy::cast_precision_loss)] // `exact` says when it is
    let magnitude = value as f64;
    let value_f64 = if negative { -magnitude } else { magnitude };
    let fits = walk.number(value_f64, true, value <= EXACT);
    fits.then_some(()).ok_or(Stop::Refused)
}
