//! What the spec declares an operation answers with: per status — a code (`200`), a class
//! (`2XX`) or `default` — the media ranges its content may have. Read by the response
//! checks (`respond`), which hold the model's answers to it.

use super::raw::RawResponses;

/// An operation's declared responses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Responses {
    declared: Vec<(StatusKey, Vec<String>)>,
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
    pub(super) fn build(raw: RawResponses, at: &str, warnings: &mut Vec<String>) -> Responses {
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

    /// The media ranges declared for `status` — its code, else its class, else `default`;
    /// `None` when the spec does not declare it.
    pub fn media_for(&self, status: u16) -> Option<&[String]> {
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
        let raw = declared
            .iter()
            .map(|(key, media)| {
                (
                    key.to_string(),
                    media.iter().map(|m| m.to_string()).collect(),
                )
            })
            .collect();
        Responses::build(raw, "#", &mut Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responses(keys: &[(&str, &[&str])]) -> (Responses, Vec<String>) {
        let raw = keys
            .iter()
            .map(|(key, media)| {
                (
                    key.to_string(),
                    media.iter().map(|m| m.to_string()).collect(),
                )
            })
            .collect();
        let mut warnings = Vec::new();
        (
            Responses::build(raw, "#/paths/~1p/get", &mut warnings),
            warnings,
        )
    }

    #[test]
    fn a_status_is_found_by_code_then_class_then_default() {
        let (declared, warnings) = responses(&[
            ("200", &["application/json"]),
            ("4xx", &["application/problem+json"]),
            ("default", &[]),
            ("abc", &[]),
        ]);
        assert_eq!(
            declared.media_for(200),
            Some(&["application/json".to_owned()][..])
        );
        assert_eq!(
            declared.media_for(422),
            Some(&["application/problem+json".to_owned()][..])
        );
        assert_eq!(declared.media_for(503), Some(&[][..]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let (strict, _) = responses(&[("200", &[])]);
        assert_eq!(strict.media_for(500), None);
    }
}
