//! Query parameters: the query string read once into pairs, each parameter's value
//! gathered from them by its style, and (when asked) every pair no parameter used refused.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::text::{coerce, delimited, property_types, types_of};
use super::{failure, missing, repeated, validate};
use crate::reject::FieldError;
use crate::spec::shape::{Shape, Types};
use crate::spec::{Param, Style};

/// One `name=value` of the query, percent-decoded.
type Pair<'q> = (Cow<'q, str>, Cow<'q, str>);

/// What the query holds for one parameter.
enum Found {
    Value(Value),
    Missing,
    /// Given more than once, but not an exploded array.
    Repeated,
}

/// Checks the query parameters against the query string; with `reject_unknown`, a pair
/// no parameter takes is a failure too.
pub(super) fn check(
    params: &[Param],
    query: &str,
    reject_unknown: bool,
    errors: &mut Vec<FieldError>,
) {
    if params.is_empty() && !reject_unknown {
        return;
    }
    let pairs: Vec<Pair<'_>> = form_urlencoded::parse(query.as_bytes()).collect();
    let mut used = vec![false; pairs.len()];
    for param in params {
        match value_of(param, &pairs, &mut used) {
            Found::Value(value) => validate(param, Some(value), "query", errors),
            Found::Missing => missing(param, "query", errors),
            Found::Repeated => repeated(param, "query", errors),
        }
    }
    if reject_unknown {
        undeclared(&pairs, &used, errors);
    }
}

/// The parameter's value, gathered by its style; the pairs it takes are marked `used`.
fn value_of(param: &Param, pairs: &[Pair<'_>], used: &mut [bool]) -> Found {
    let object = match (param.style, &param.shape) {
        (Style::DeepObject, shape) => deep_object(param, shape, pairs, used),
        (Style::Form, Shape::Object(properties)) if param.explode => {
            exploded_object(properties, pairs, used)
        }
        _ => return named(param, pairs, used),
    };
    object.map_or(Found::Missing, Found::Value)
}

/// A parameter given under its own name: once, or as many times as an exploded form array
/// has items.
fn named(param: &Param, pairs: &[Pair<'_>], used: &mut [bool]) -> Found {
    let found: Vec<usize> = (0..pairs.len())
        .filter(|&i| pairs[i].0 == param.name)
        .collect();
    for &i in &found {
        used[i] = true;
    }
    match (found.as_slice(), &param.shape) {
        ([], _) => Found::Missing,
        (many, Shape::Array(items)) if param.explode && param.style == Style::Form => Found::Value(
            Value::Array(many.iter().map(|&i| coerce(&pairs[i].1, *items)).collect()),
        ),
        ([one], _) => delimited(param, &pairs[*one].1, separator(param.style))
            .map_or(Found::Missing, Found::Value),
        _ => Found::Repeated,
    }
}

/// What separates the items of a style's array or object value.
fn separator(style: Style) -> char {
    match style {
        Style::SpaceDelimited => ' ',
        Style::PipeDelimited => '|',
        _ => ',',
    }
}

/// `?filter[kind]=a&filter[limit]=5` → `{"kind": "a", "limit": 5}`.
fn deep_object(
    param: &Param,
    shape: &Shape,
    pairs: &[Pair<'_>],
    used: &mut [bool],
) -> Option<Value> {
    let mut object = Map::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        let Some(key) = deep_key(name, &param.name) else {
            continue;
        };
        used[i] = true;
        object.insert(key.to_owned(), coerce(value, property_types(shape, key)));
    }
    (!object.is_empty()).then_some(Value::Object(object))
}

/// `filter[kind]` → `kind`, for the parameter called `filter`.
fn deep_key<'n>(name: &'n str, param: &str) -> Option<&'n str> {
    name.strip_prefix(param)?
        .strip_prefix('[')?
        .strip_suffix(']')
}

/// An exploded form object: each property is its own query parameter.
fn exploded_object(
    properties: &[(String, Types)],
    pairs: &[Pair<'_>],
    used: &mut [bool],
) -> Option<Value> {
    let mut object = Map::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if let Some(types) = types_of(properties, name) {
            used[i] = true;
            object.insert(name.to_string(), coerce(value, types));
        }
    }
    (!object.is_empty()).then_some(Value::Object(object))
}

/// A failure for each pair no parameter took.
fn undeclared(pairs: &[Pair<'_>], used: &[bool], errors: &mut Vec<FieldError>) {
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !used[i] {
            let message = "this query parameter is not declared by the operation".to_owned();
            errors.push(failure("query", name, message));
        }
    }
}
