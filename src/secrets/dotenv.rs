//! Plain dotenv text (dotenvy's syntax), as every format reads once decrypted: variables in
//! file order, a name set twice refused, a `$` outside single quotes refused rather than
//! substituted, and parse errors that never quote a line.

use std::collections::HashMap;

use zeroize::Zeroizing;

/// A dotenv file's variables in file order, values wiped on drop.
pub type Variables = Vec<(String, Zeroizing<String>)>;

/// The variables of a dotenv text, each failure naming `origin`.
pub fn parse_dotenv(text: &[u8], origin: &str) -> Result<HashMap<String, String>, String> {
    let variables = parse_dotenv_ordered(text).map_err(|e| format!("{origin}: {e}"))?;
    Ok(variables
        .into_iter()
        .map(|(name, value)| (name, value.as_str().to_owned()))
        .collect())
}

/// The variables of a dotenv text (dotenvy's syntax), in order; a name set twice is an
/// error (which one was meant is ambiguous).
pub fn parse_dotenv_ordered(text: &[u8]) -> Result<Variables, String> {
    refuse_substitution(text)?;
    let mut variables: Variables = Vec::new();
    let mut names = std::collections::HashSet::new();
    for entry in dotenvy::from_read_iter(text) {
        let (name, value) = entry.map_err(|e| dotenv_error(&e, text))?;
        if !names.insert(name.clone()) {
            return Err(format!("`{name}` is set twice; keep one"));
        }
        variables.push((name, Zeroizing::new(value)));
    }
    Ok(variables)
}

/// dotenvy expands `$NAME` inside unquoted and double-quoted values, so a generated secret
/// containing `$` would silently lose part of itself or take another variable's value.
/// Such values are refused; single quotes keep a value literal.
fn refuse_substitution(text: &[u8]) -> Result<(), String> {
    for (index, line) in String::from_utf8_lossy(text).lines().enumerate() {
        let Some((name, value)) = assignment(line) else {
            continue;
        };
        if !value.starts_with('\'') && value.contains('$') {
            return Err(format!(
                "line {}: the value of `{}` contains `$`, which dotenv files \
                 substitute; put the value in single quotes to keep it literal",
                index + 1,
                name.trim()
            ));
        }
    }
    Ok(())
}

/// A `NAME=value` line's name and value (an `export ` before it dropped, the value's leading
/// blanks too); `None` for a comment or a line without `=`.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line);
    if line.starts_with('#') {
        return None;
    }
    let (name, value) = line.split_once('=')?;
    Some((name, value.trim_start()))
}

/// dotenvy's parse errors quote the offending line, which in a secrets file is a secret:
/// keep only where it is (the line number, found by matching the quoted text back).
fn dotenv_error(error: &dotenvy::Error, text: &[u8]) -> String {
    match error {
        dotenvy::Error::LineParse(quoted, index) => {
            let text = String::from_utf8_lossy(text);
            let quoted = quoted.trim();
            match text.lines().position(|line| line.trim() == quoted) {
                Some(line) => format!(
                    "line {}: cannot parse it (at character {index}); expected NAME=value",
                    line + 1
                ),
                None => format!("cannot parse a line (at character {index}); expected NAME=value"),
            }
        }
        other => other.to_string(),
    }
}

/// Letters, digits and `_`, not starting with a digit: what a `${VAR}` can name.
#[cfg_attr(not(feature = "age"), allow(dead_code))]
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dollar_outside_single_quotes_is_refused_not_substituted() {
        let error = parse_dotenv(b"A=1\nSECRET=ab$cd\n", "x.env").unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("`SECRET`"),
            "{error}"
        );
        assert!(!error.contains("ab$cd"), "{error}");
        assert!(parse_dotenv(b"SECRET=\"x$y\"\n", "x.env").is_err());
        let literal = parse_dotenv(b"SECRET='ab$cd'\n# c $ d\n", "x.env").unwrap();
        assert_eq!(literal["SECRET"], "ab$cd");
    }

    #[test]
    fn dotenv_errors_do_not_quote_the_line() {
        let error = parse_dotenv(b"GOOD=1\nthis is s3cr3t-value\n", "x.env").unwrap_err();
        assert!(!error.contains("s3cr3t"), "{error}");
        assert!(error.starts_with("x.env"), "{error}");
    }
}
