//! What the spec declares an operation answers with: per status — a code (`200`), a class
//! (`2XX`) or `default` — the media ranges its content may have, each with its compiled
//! schema (JSON ones). Read by the response checks (`respond`), which hold the model's
//! answers to it.

use std::sync::Arc;

use super::compile::Schema;
use super::declared::Declared;
use super::plan::Plan;

/// An operation's declared responses.
#[derive(Debug, Default)]
pub struct Responses {
    declared: Vec<(StatusKey, Vec<ResponseMedia>)>,
}

/// A media range a response may have, and the schema its JSON body must match (`None`:
/// not JSON, no schema, or one that did not compile — then its bodies go unchecked).
#[derive(Debug)]
pub struct ResponseMedia {
    pub range: String,
    pub schema: Option<Arc<Schema>>,
    /// The members the schema declares, for `responses.strip_undeclared` (with `schema`).
    pub declared: Option<Arc<Declared>>,
    /// The schema's plan (see `spec::plan`): an answer it accepts while parsing needs no
    /// tree — the common case of a valid answer, when nothing is to be stripped.
    pub plan: Option<Arc<Plan>>,
    /// For `text/event-stream`: the schema each event's JSON `data` must match
    /// (`x-moat-event-schema`, or `itemSchema`'s `data` `contentSchema`).
    pub events: Option<Arc<Schema>>,
    /// The events schema's plan.
    pub events_plan: Option<Arc<Plan>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusKey {
    Code(u16),
    /// `2XX`: the hundreds digit.
    Class(u16),
    Default,
}

impl StatusKey {
    fn parse(key: &str) -> Option<StatusKey> {
        let upper = key.to_ascii_uppercase();
        match upper.as_bytes() {
            b"DEFAULT" => Some(StatusKey::Default),
            [digit @ b'1'..=b'5', b'X', b'X'] => Some(StatusKey::Class(u16::from(digit - b'0'))),
            [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => upper.parse().ok().map(StatusKey::Code),
            _ => None,
        }
    }
}

impl Responses {
    /// From what `raw` read; a key that is no status is a warning, and ignored.
    pub(super) fn build(
        raw: Vec<(String, Vec<ResponseMedia>)>,
        at: &str,
        warnings: &mut Vec<String>,
    ) -> Responses {
        let declared = raw
            .into_iter()
            .filter_map(|(key, media)| match StatusKey::parse(&key) {
                Some(status) => Some((status, media)),
                None => {
                    warnings.push(format!(
                        "{at}/responses: `{key}` is not a status, a class like 2XX, or default; ignored"
                    ));
                    None
                }
            })
            .collect();
        Responses { declared }
    }

    /// Whether any declared answer has a schema (a JSON body's, or an event stream's):
    /// then `responses.mode` is `shadow` unless set.
    pub fn has_schema(&self) -> bool {
        let media = self.declared.iter().flat_map(|(_, media)| media);
        media
            .into_iter()
            .any(|m| m.schema.is_some() || m.events.is_some())
    }

    /// The media ranges declared for `status` — its code, else its class, else `default`;
    /// `None` when the spec does not declare it.
    pub fn media_for(&self, status: u16) -> Option<&[ResponseMedia]> {
        let find = |wanted: StatusKey| {
            let found = self.declared.iter().find(|(key, _)| *key == wanted);
            found.map(|(_, media)| media.as_slice())
        };
        find(StatusKey::Code(status))
            .or_else(|| find(StatusKey::Class(status / 100)))
            .or_else(|| find(StatusKey::Default))
    }
}

impl Responses {
    /// Declared responses from `(status key, media ranges)`, for unit tests elsewhere.
    #[cfg(test)]
    pub fn for_tests(declared: &[(&str, &[&str])]) -> Responses {
        Responses::build(raw(declared), "#", &mut Vec::new())
    }
}

/// `(status key, media ranges)` as `build` takes them, without schemas.
#[cfg(test)]
fn raw(declared: &[(&str, &[&str])]) -> Vec<(String, Vec<ResponseMedia>)> {
    let media = |ranges: &[&str]| {
        (ranges.iter())
            .map(|range| ResponseMedia {
                range: range.to_string(),
                schema: None,
                declared: None,
                plan: None,
                events: None,
                events_plan: None,
            })
            .collect()
    };
    (declared.iter())
        .map(|(key, ranges)| (key.to_string(), media(ranges)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(media: Option<&[ResponseMedia]>) -> Option<Vec<&str>> {
        media.map(|media| media.iter().map(|m| m.range.as_str()).collect())
    }

    #[test]
    fn a_status_is_found_by_code_then_class_then_default() {
        let mut warnings = Vec::new();
        let declared = Responses::build(
            raw(&[
                ("200", &["application/json"]),
                ("4xx", &["application/problem+json"]),
                ("default", &[]),
                ("abc", &[]),
            ]),
            "#/paths/~1p/get",
            &mut warnings,
        );
        assert_eq!(
            ranges(declared.media_for(200)),
            Some(vec!["application/json"])
        );
        let problem = Some(vec!["application/problem+json"]);
        assert_eq!(ranges(declared.media_for(422)), problem);
        assert_eq!(ranges(declared.media_for(503)), Some(vec![]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let strict = Responses::for_tests(&[("200", &[])]);
        assert!(strict.media_for(500).is_none());
    }
}
