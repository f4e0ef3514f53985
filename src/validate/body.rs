//! Stage 6, body: the content type must be one the operation lists (else 415), a required
//! body must be there, and JSON and form bodies must parse strictly and match their schema.
//! The bytes checked are the bytes forwarded; nothing is re-serialised.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use super::json;
use super::params::{coerce, types_of};
use crate::reject::{FieldError, Rejection};
use crate::spec::shape::Types;
use crate::spec::{BodyKind, Media, Operation};

pub fn check(
    operation: &Operation,
    headers: &HeaderMap,
    body: &Bytes,
    limits: &json::JsonLimits,
    errors: &mut Vec<FieldError>,
) -> Result<(), Rejection> {
    match (&operation.body, body.is_empty()) {
        (None, true) => Ok(()),
        (None, false) => Err(Rejection::UnexpectedBody),
        (Some(declared), true) if declared.required => Err(Rejection::BodyRequired),
        (Some(_), true) => Ok(()),
        (Some(declared), false) => {
            let media = negotiate(&declared.media, headers)?;
            check_media(media, body, limits, errors)
        }
    }
}

/// Whether a body the operation declares can go to the model unread, relayed as it
/// arrives: when the request's content type selects a media type moat does not parse
/// (`BodyKind::Opaque`), reading it first would check nothing. `Some(required)` when so;
/// `None` sends the body through [`check`] (which also refuses what is wrong with it).
pub fn unparsed(operation: &Operation, headers: &HeaderMap) -> Option<bool> {
    let declared = operation.body.as_ref()?;
    let media = negotiate(&declared.media, headers).ok()?;
    (media.kind == BodyKind::Opaque).then_some(declared.required)
}

/// Parses the body as its media type says and checks it against the media's schema.
fn check_media(
    media: &Media,
    body: &[u8],
    limits: &json::JsonLimits,
    errors: &mut Vec<FieldError>,
) -> Result<(), Rejection> {
    // The fast path: a body its plan accepts while parsing needs no tree. Any doubt, and
    // the general path below gives the verdict and the errors.
    if let Some(plan) = &media.plan {
        if json::certainly_valid(body, plan, limits) {
            return Ok(());
        }
    }
    let value = match media.kind {
        BodyKind::Json => {
            let value = json::parse(body, limits.max_depth).map_err(Rejection::InvalidJson)?;
            json::guard(&value, limits, errors);
            value
        }
        BodyKind::Form => form_object(body, &media.form_shape),
        BodyKind::Opaque => return Ok(()),
    };
    if let Some(schema) = &media.schema {
        schema.check(&value, "body", "", errors);
    }
    Ok(())
}

/// The declared media entry the request's one `Content-Type` selects (a JSON one only in
/// UTF-8), else 415.
fn negotiate<'m>(declared: &'m [Media], headers: &HeaderMap) -> Result<&'m Media, Rejection> {
    let mut content_types = headers.get_all(CONTENT_TYPE).iter();
    let (Some(content_type), None) = (content_types.next(), content_types.next()) else {
        return Err(unsupported(declared));
    };
    let content_type = content_type.to_str().map_err(|_| unsupported(declared))?;
    match select(declared, content_type) {
        Some(media) if media.kind != BodyKind::Json || charset_is_utf8(content_type) => Ok(media),
        _ => Err(unsupported(declared)),
    }
}

/// The declared media entry for a request content type: exact match first, then `type/*`,
/// then `*/*` (RFC 9110 §12.5.1 precedence). Parameters such as `charset` do not take part.
/// Media types compare case-insensitively, without lowercasing copies: this runs on every
/// request with a body.
pub fn select<'m>(media: &'m [Media], content_type: &str) -> Option<&'m Media> {
    select_by(media, |m| &m.range, content_type)
}

/// [`select`] over anything that declares a media range (a response's content too).
pub fn select_by<'m, T>(
    declared: &'m [T],
    range: impl Fn(&T) -> &str,
    content_type: &str,
) -> Option<&'m T> {
    let (kind, subtype) = concrete(content_type)?;
    // The first of the most specific: `min_by_key` keeps the first of equals.
    declared
        .iter()
        .filter_map(|m| Some((precedence(range(m), kind, subtype)?, m)))
        .min_by_key(|(level, _)| *level)
        .map(|(_, m)| m)
}

/// A content type's type and subtype, when it names one (not a range).
fn concrete(content_type: &str) -> Option<(&str, &str)> {
    let (kind, subtype) = essence(content_type).split_once('/')?;
    match kind.is_empty() || subtype.is_empty() || kind == "*" || subtype == "*" {
        true => None,
        false => Some((kind, subtype)),
    }
}

/// How specifically `range` admits `kind/subtype`: 0 exactly, 1 by a `type/*+suffix`
/// range, 2 by `type/*`, 3 by `*/*`; `None` when it does not.
fn precedence(range: &str, kind: &str, subtype: &str) -> Option<u8> {
    let (k, s) = essence(range).split_once('/')?;
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match (k, s) {
        ("*", "*") => Some(3),
        _ if !same(k, kind) => None,
        (_, "*") => Some(2),
        _ if same(s, subtype) => Some(0),
        // `application/*+json` style suffix ranges.
        _ if s.starts_with("*+") && ends_with_ignoring_case(subtype, &s[1..]) => Some(1),
        _ => None,
    }
}

/// A media type without its parameters.
fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

fn ends_with_ignoring_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// JSON is UTF-8 (RFC 8259 §8.1); any other declared charset is refused.
fn charset_is_utf8(content_type: &str) -> bool {
    content_type
        .split(';')
        .skip(1)
        .all(|parameter| match parameter.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                let value = value.trim().trim_matches('"');
                value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
            }
            _ => true,
        })
}

fn unsupported(media: &[Media]) -> Rejection {
    let accepted: Vec<&str> = media.iter().map(|m| m.range.as_str()).collect();
    Rejection::UnsupportedMediaType {
        accepted: accepted.join(", "),
    }
}

/// `a=1&b=x&b=y` → an object, values coerced by the schema's property types; a key given
/// more than once becomes an array.
fn form_object(body: &[u8], shape: &[(String, Types)]) -> Value {
    let mut object = Map::new();
    for (name, value) in form_urlencoded::parse(body) {
        let types = types_of(shape, &name).unwrap_or(Types::ANY);
        // The items of an array property may be anything its schema allows.
        let value = coerce(
            &value,
            if types == Types::ARRAY {
                Types::ANY
            } else {
                types
            },
        );
        add_form_value(&mut object, name, value, types);
    }
    Value::Object(object)
}

/// Adds one pair's value: an array property's values, and those of a name given again,
/// gather into an array.
fn add_form_value(object: &mut Map<String, Value>, name: Cow<'_, str>, value: Value, types: Types) {
    match object.get_mut(name.as_ref()) {
        Some(Value::Array(items)) if types.contains(Types::ARRAY) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None if types == Types::ARRAY => {
            object.insert(name.into_owned(), Value::Array(vec![value]));
        }
        None => {
            object.insert(name.into_owned(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(ranges: &[&str]) -> Vec<Media> {
        ranges
            .iter()
            .map(|range| Media {
                range: range.to_string(),
                kind: BodyKind::Opaque,
                schema: None,
                plan: None,
                form_shape: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_most_specific_declared_range_wins() {
        let declared = media(&["*/*", "image/*", "application/json", "application/*+json"]);
        let pick = |ct: &str| select(&declared, ct).map(|m| m.range.clone());
        assert_eq!(
            pick("application/json").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            pick("Application/JSON; charset=utf-8").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            pick("application/problem+json").as_deref(),
            Some("application/*+json")
        );
        assert_eq!(pick("image/png").as_deref(), Some("image/*"));
        assert_eq!(pick("text/plain").as_deref(), Some("*/*"));
        assert_eq!(pick("nonsense"), None);
        assert_eq!(pick("*/*"), None);
        let strict = media(&["application/json"]);
        assert!(select(&strict, "text/plain").is_none());
        assert!(select(&strict, "application/jsonx").is_none());
    }

    #[test]
    fn json_bodies_must_be_utf8() {
        assert!(charset_is_utf8("application/json"));
        assert!(charset_is_utf8("application/json; charset=UTF-8"));
        assert!(charset_is_utf8("application/json;charset=\"utf-8\""));
        assert!(!charset_is_utf8("application/json; charset=latin1"));
    }

    #[test]
    fn form_bodies_become_typed_objects() {
        let shape = vec![
            ("n".to_owned(), Types::INTEGER),
            ("tags".to_owned(), Types::ARRAY),
        ];
        assert_eq!(
            form_object(b"n=5&name=a+b&tags=x&tags=y", &shape),
            serde_json::json!({"n": 5, "name": "a b", "tags": ["x", "y"]})
        );
    }
}
