//! Errors that name the typo. serde-saphyr, once any `${VAR}` has been expanded in a
//! document, hides every unknown field or variant name behind "an interpolated field" (it
//! cannot tell a key from an expanded secret), and for an internally tagged enum (`type: jwt`)
//! it points at the parent's line. The names it hides are keys and enum values the operator
//! typed, never expanded values, so they are read back from the config text at the error's
//! location — the misspelled name, its own line, and the nearest valid one.
//!
//! Hand-written: no YAML library reports this, and the text scan is limited to what serde
//! already located (a block-style key or scalar); anything else keeps the library's message.

/// A serde-saphyr message rewritten to name the typo, or `None` to keep the original.
pub fn explain(message: &str, text: &str) -> Option<String> {
    let report = UnknownName::parse(message)?;
    let lines: Vec<&str> = text.lines().collect();
    let (line, name) = match report.kind {
        Kind::Field => find_field(&lines, report.line, report.column, &report.expected)?,
        Kind::Variant => find_variant(&lines, report.line, report.column, &report.expected)?,
    };
    let what = match report.kind {
        Kind::Field => "field",
        Kind::Variant => "value",
    };
    let hint = nearest(&name, &report.expected)
        .map(|near| format!("; did you mean `{near}`?"))
        .unwrap_or_default();
    let source = lines.get(line - 1).map_or("", |l| l.trim_end());
    Some(format!(
        "line {line}: unknown {what} `{name}`{hint} Expected one of: {}\n  {line:>4} | {source}",
        report.expected.join(", ")
    ))
}

/// Appends "did you mean" to serde's own unknown-field message (no interpolation involved).
pub fn suggest(message: &str) -> Option<String> {
    let report = UnknownName::parse(message)?;
    let name = report.named?;
    let near = nearest(&name, &report.expected)?;
    let first = message.lines().next().unwrap_or(message);
    let rest: String = message
        .lines()
        .skip(1)
        .map(|line| format!("\n{line}"))
        .collect();
    Some(format!("{first}; did you mean `{near}`?{rest}"))
}

#[derive(Debug, PartialEq)]
enum Kind {
    Field,
    Variant,
}

#[derive(Debug)]
struct UnknownName {
    kind: Kind,
    line: usize,
    column: usize,
    /// The name serde printed, when it was not redacted.
    named: Option<String>,
    expected: Vec<String>,
}

impl UnknownName {
    /// `line L column C: unknown field `X`, expected one of a, b, c` (or `expected a`).
    fn parse(message: &str) -> Option<UnknownName> {
        let first = message.lines().next()?;
        let at = first.find("line ")?;
        let rest = &first[at + "line ".len()..];
        let (line, rest) = rest.split_once(" column ")?;
        let (column, rest) = rest.split_once(": unknown ")?;
        let (kind, rest) = if let Some(rest) = rest.strip_prefix("field `") {
            (Kind::Field, rest)
        } else {
            (Kind::Variant, rest.strip_prefix("variant `")?)
        };
        let (name, rest) = rest.split_once("`, expected ")?;
        let list = rest.strip_prefix("one of ").unwrap_or(rest);
        let expected = list
            .split(", ")
            .map(|item| item.trim().trim_matches('`').to_owned())
            .filter(|item| !item.is_empty())
            .collect();
        let named = (!name.starts_with("an interpolated ")).then(|| name.to_owned());
        Some(UnknownName {
            kind,
            line: line.trim().parse().ok()?,
            column: column.trim().parse().ok()?,
            named,
            expected,
        })
    }
}

/// The key at (`line`, `column`); but when that key opens a `type:`-tagged block (serde
/// reports an internally tagged enum at its parent), the first child key that is not valid.
fn find_field(
    lines: &[&str],
    line: usize,
    column: usize,
    expected: &[String],
) -> Option<(usize, String)> {
    let text = lines.get(line - 1)?;
    if opens_tagged_block(lines, line, column) {
        return children(lines, line).find_map(|(number, text)| {
            // The tag itself is not one of the variant's fields.
            let key = key_at(text, indent(text) + 1).filter(|key| key != "type")?;
            (!expected.contains(&key)).then_some((number, key))
        });
    }
    let here = key_at(text, column)?;
    (!expected.contains(&here)).then_some((line, here))
}

/// The scalar at (`line`, `column`); or, when a `type:`-tagged block opens there, its tag.
fn find_variant(
    lines: &[&str],
    line: usize,
    column: usize,
    expected: &[String],
) -> Option<(usize, String)> {
    if opens_tagged_block(lines, line, column) {
        let (number, text) = tag_line(lines, line)?;
        let value = clean_scalar(text.split_once(':')?.1);
        return (!expected.contains(&value)).then_some((number, value));
    }
    let value = scalar_at(lines.get(line - 1)?, column)?;
    (!expected.contains(&value)).then_some((line, value))
}

/// True when `line` holds `key:` with nothing after it but a comment, and a `type:` child.
fn opens_tagged_block(lines: &[&str], line: usize, column: usize) -> bool {
    let Some(text) = lines.get(line - 1) else {
        return false;
    };
    let Some(rest) = text
        .get(column.saturating_sub(1)..)
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, rest)| rest.trim())
    else {
        return false;
    };
    (rest.is_empty() || rest.starts_with('#')) && tag_line(lines, line).is_some()
}

fn tag_line<'a>(lines: &'a [&'a str], line: usize) -> Option<(usize, &'a str)> {
    children(lines, line)
        .find(|(_, text)| key_at(text, indent(text) + 1).as_deref() == Some("type"))
}

/// The direct children of the block mapping entry on `line` (1-based), with line numbers.
fn children<'a>(lines: &'a [&'a str], line: usize) -> impl Iterator<Item = (usize, &'a str)> {
    let parent = lines.get(line - 1).map_or(0, |text| indent(text));
    let mut child_indent = None;
    lines
        .iter()
        .enumerate()
        .skip(line)
        .map(|(index, text)| (index + 1, *text))
        .filter(|(_, text)| !text.trim().is_empty() && !text.trim_start().starts_with('#'))
        .take_while(move |(_, text)| indent(text) > parent)
        .filter(move |(_, text)| {
            let indent = indent(text);
            *child_indent.get_or_insert(indent) == indent
        })
}

fn indent(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

/// The mapping key starting at 1-based `column`: `name:` or `- name:`.
fn key_at(text: &str, column: usize) -> Option<String> {
    let rest = text.get(column.saturating_sub(1)..)?;
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (key, _) = rest.split_once(':')?;
    let key = key.trim().trim_matches('"').trim_matches('\'');
    (!key.is_empty() && !key.contains(' ')).then(|| key.to_owned())
}

/// The scalar starting at 1-based `column`, without quotes or a trailing comment.
fn scalar_at(text: &str, column: usize) -> Option<String> {
    let value = clean_scalar(text.get(column.saturating_sub(1)..)?);
    (!value.is_empty()).then_some(value)
}

fn clean_scalar(value: &str) -> String {
    let value = value.split(" #").next().unwrap_or(value).trim();
    let value = value.split([',', ']', '}']).next().unwrap_or(value).trim();
    value.trim_matches('"').trim_matches('\'').to_owned()
}

/// The closest valid name, if it is close enough to be what was meant.
fn nearest<'a>(name: &str, expected: &'a [String]) -> Option<&'a str> {
    expected
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(candidate.len() / 3) && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "listen: \"${L:-0.0.0.0:8080}\"\nupstream:\n  url: http://127.0.0.1:8000\n  connect_timout: 2s\nauth:\n  schemes:\n    bearer:\n      type: jwt\n      issuer: x\n      audiences: [a]\npolicy:\n  mode: enfroce   # typo\n";

    #[test]
    fn a_hidden_field_is_found_on_its_own_line_with_a_suggestion() {
        let message = "line 4 column 3: unknown field `an interpolated field`, expected one of url, connect_timeout, response_timeout\n  --> <input>:4:3";
        let explained = explain(message, CONFIG).unwrap();
        assert!(
            explained.starts_with(
                "line 4: unknown field `connect_timout`; did you mean `connect_timeout`?"
            ),
            "{explained}"
        );
        assert!(explained.contains("connect_timout: 2s"), "{explained}");
    }

    #[test]
    fn a_tagged_enum_reported_at_its_parent_is_found_in_its_children() {
        let message = "line 7 column 5: unknown field `an interpolated field`, expected one of issuer, audience, algorithms";
        let explained = explain(message, CONFIG).unwrap();
        assert!(
            explained.starts_with("line 10: unknown field `audiences`; did you mean `audience`?"),
            "{explained}"
        );
    }

    #[test]
    fn a_hidden_variant_is_named_with_a_suggestion() {
        let message = "line 12 column 9: unknown variant `an interpolated variant`, expected one of enforce, shadow";
        let explained = explain(message, CONFIG).unwrap();
        assert!(
            explained.starts_with("line 12: unknown value `enfroce`; did you mean `enforce`?"),
            "{explained}"
        );
        let tag = "schemes:\n  k:\n    type: apikey\n    store: x\n";
        let message = "line 2 column 3: unknown variant `an interpolated variant`, expected one of jwt, api_key";
        assert!(
            explain(message, tag)
                .unwrap()
                .starts_with("line 3: unknown value `apikey`; did you mean `api_key`?")
        );
    }

    #[test]
    fn serdes_own_message_gets_a_suggestion_and_far_names_get_none() {
        let message =
            "line 4 column 3: unknown field `connect_timout`, expected one of url, connect_timeout";
        assert!(
            suggest(message)
                .unwrap()
                .contains("did you mean `connect_timeout`?")
        );
        assert_eq!(
            nearest("colour", &["url".into(), "connect_timeout".into()]),
            None
        );
        assert_eq!(nearest("mod", &["mode".into()]), Some("mode"));
    }
}
