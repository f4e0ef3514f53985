//! Stage 1, frame: size limits and the canonical path check of design §1 "One
//! interpretation". A path is refused, never normalised, when moat and the model could read
//! it differently; what passes is decoded once for routing while the original bytes are
//! what gets forwarded.

pub(crate) mod fuzz;
mod host;

use std::borrow::Cow;

use http::{HeaderMap, Uri, Version};

pub use self::host::authority;
use crate::config::Limits;
use crate::reject::{PathProblem, Rejection};

/// Applies the URI and header size limits, the Host rules, then the path and query checks.
/// Returns the percent-decoded path (borrowed when it had no escapes, which is the common
/// case).
pub fn check<'a>(
    uri: &'a Uri,
    version: Version,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<Cow<'a, str>, Rejection> {
    check_sizes(uri, headers, limits)?;
    authority(uri, version, headers).map_err(Rejection::InvalidHost)?;
    let Some(path_and_query) = uri.path_and_query() else {
        return Err(Rejection::InvalidPath(PathProblem::NotOriginForm));
    };
    if let Some(query) = path_and_query.query() {
        check_query(query.as_bytes()).map_err(Rejection::InvalidPath)?;
    }
    canonical_path(path_and_query.path()).map_err(Rejection::InvalidPath)
}

/// `limits.max_uri_bytes` on the request target, `limits.max_header_bytes` on the headers.
fn check_sizes(uri: &Uri, headers: &HeaderMap, limits: &Limits) -> Result<(), Rejection> {
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(Rejection::UriTooLong {
            limit: limits.max_uri_bytes,
        });
    }
    if header_bytes(headers) > limits.max_header_bytes {
        return Err(Rejection::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    Ok(())
}

/// Header bytes as HTTP/1.1 would carry them (`name: value\r\n`), the measure
/// `limits.max_header_bytes` is written in, so h1 and h2 clients meet the same limit.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Checks a path against design §1 and returns it decoded.
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathProblem> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathProblem::NotOriginForm);
    }
    let has_escape = check_path_bytes(bytes)?;
    check_segments(&path[1..])?;
    if !has_escape {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = percent_decode(bytes);
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| PathProblem::InvalidUtf8)
}

/// Refuses the bytes that have no single meaning in a path; true when it has escapes to
/// decode.
fn check_path_bytes(bytes: &[u8]) -> Result<bool, PathProblem> {
    let mut has_escape = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(PathProblem::Backslash),
            0..=0x1f | 0x7f => return Err(PathProblem::ControlByte),
            0x80..=0xff => return Err(PathProblem::NonAscii),
            // RFC 3986 pchar: anything else (space, quotes, braces, `|`, `^`, …) has no
            // single meaning and well-behaved clients percent-encode it.
            b'"' | b'<' | b'>' | b'{' | b'}' | b'|' | b'^' | b'`' | b' ' | b'[' | b']' | b'#'
            | b'?' => return Err(PathProblem::InvalidCharacter),
            b'%' => {
                check_escape(bytes, i)?;
                has_escape = true;
            }
            _ => {}
        }
    }
    Ok(has_escape)
}

/// The escape at `percent_at` must decode, and not to structure.
fn check_escape(bytes: &[u8], percent_at: usize) -> Result<(), PathProblem> {
    let decoded = decode_escape(bytes, percent_at).ok_or(PathProblem::BadPercentEncoding)?;
    // Each of these decodes to something a router, a file system or a second decoder
    // treats as structure; the model would not see what moat checked.
    if matches!(decoded, b'/' | b'\\' | b'.' | b'%' | 0..=0x1f | 0x7f) {
        return Err(PathProblem::EncodedDelimiter);
    }
    Ok(())
}

/// The segments after the leading '/'. A trailing '/' is a distinct path (routing decides),
/// but an empty segment anywhere else is an ambiguity.
fn check_segments(rest: &str) -> Result<(), PathProblem> {
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment.is_empty() && !last {
            return Err(PathProblem::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(PathProblem::DotSegment);
        }
    }
    Ok(())
}

/// The query is forwarded byte for byte and parsed later; here only what no parser could
/// agree on is refused: control bytes, raw non-ASCII and broken escapes.
fn check_query(query: &[u8]) -> Result<(), PathProblem> {
    for (i, &b) in query.iter().enumerate() {
        match b {
            0..=0x1f | 0x7f | 0x80..=0xff => return Err(PathProblem::QueryByte),
            b'%' if decode_escape(query, i).is_none() => return Err(PathProblem::QueryByte),
            _ => {}
        }
    }
    Ok(())
}

fn decode_escape(bytes: &[u8], percent_at: usize) -> Option<u8> {
    let hi = hex(*bytes.get(percent_at + 1)?)?;
    let lo = hex(*bytes.get(percent_at + 2)?)?;
    Some(hi << 4 | lo)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes already validated by [`canonical_path`].
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], decode_escape(bytes, i)) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HOST;

    use crate::reject::HostProblem;

    #[test]
    fn ordinary_paths_pass_borrowed() {
        for path in [
            "/",
            "/v1/models",
            "/v1/models/iris:predict",
            "/a/b/",
            "/a-b_c~d",
        ] {
            assert!(
                matches!(canonical_path(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn escapes_of_ordinary_characters_are_decoded_for_routing() {
        assert_eq!(canonical_path("/a%20b").unwrap(), "/a b");
        assert_eq!(canonical_path("/caf%C3%A9").unwrap(), "/café");
        assert_eq!(canonical_path("/%7Euser").unwrap(), "/~user");
    }

    /// Every ambiguity of design §1, each one sentence.
    #[test]
    fn ambiguous_paths_are_refused_with_the_rule_they_break() {
        let cases = [
            ("/a/./b", PathProblem::DotSegment),
            ("/a/../b", PathProblem::DotSegment),
            ("/..", PathProblem::DotSegment),
            ("/a/.", PathProblem::DotSegment),
            ("/a//b", PathProblem::EmptySegment),
            ("//a", PathProblem::EmptySegment),
            ("/a\\b", PathProblem::Backslash),
            ("/a\tb", PathProblem::ControlByte),
            ("/a\u{7f}", PathProblem::ControlByte),
            ("/caf\u{e9}", PathProblem::NonAscii),
            ("/a%2", PathProblem::BadPercentEncoding),
            ("/a%zz", PathProblem::BadPercentEncoding),
            ("/a%", PathProblem::BadPercentEncoding),
            ("/a%2Fb", PathProblem::EncodedDelimiter),
            ("/a%2fb", PathProblem::EncodedDelimiter),
            ("/a%5Cb", PathProblem::EncodedDelimiter),
            ("/%2e%2e/b", PathProblem::EncodedDelimiter),
            ("/a%2E", PathProblem::EncodedDelimiter),
            ("/a%25", PathProblem::EncodedDelimiter),
            ("/a%2500", PathProblem::EncodedDelimiter),
            ("/a%00", PathProblem::EncodedDelimiter),
            ("/a%0A", PathProblem::EncodedDelimiter),
            ("/a%C3", PathProblem::InvalidUtf8),
            ("/a%FF", PathProblem::InvalidUtf8),
            ("/a\"b", PathProblem::InvalidCharacter),
            ("/a{b}", PathProblem::InvalidCharacter),
            ("/a|b", PathProblem::InvalidCharacter),
            ("/a b", PathProblem::InvalidCharacter),
            ("*", PathProblem::NotOriginForm),
            ("", PathProblem::NotOriginForm),
        ];
        for (path, problem) in cases {
            assert_eq!(canonical_path(path), Err(problem), "{path:?}");
        }
    }

    #[test]
    fn queries_with_control_or_raw_non_ascii_bytes_or_broken_escapes_are_refused() {
        assert!(check_query(b"a=1&b=%20x+y").is_ok());
        assert!(check_query(b"a=%2F").is_ok());
        for bad in [&b"a=\x01"[..], b"a=\xc3\xa9", b"a=%", b"a=%g1"] {
            assert_eq!(check_query(bad), Err(PathProblem::QueryByte), "{bad:?}");
        }
    }

    #[test]
    fn limits_come_before_the_path_rules() {
        let limits = Limits {
            max_uri_bytes: 10,
            max_header_bytes: 30,
            ..Limits::default()
        };
        let long: Uri = "/aaaaaaaaaaaaaaaaa".parse().unwrap();
        let v10 = Version::HTTP_10;
        assert_eq!(
            check(&long, v10, &HeaderMap::new(), &limits),
            Err(Rejection::UriTooLong { limit: 10 })
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-big", "v".repeat(30).parse().unwrap());
        let short: Uri = "/a/../b".parse().unwrap();
        assert_eq!(
            check(&short, v10, &headers, &limits),
            Err(Rejection::HeadersTooLarge { limit: 30 })
        );
        assert_eq!(
            check(&short, v10, &HeaderMap::new(), &limits),
            Err(Rejection::InvalidPath(PathProblem::DotSegment))
        );
    }

    fn host_of(
        target: &str,
        version: Version,
        hosts: &[&str],
    ) -> Result<Option<String>, HostProblem> {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, host.parse().unwrap());
        }
        authority(&uri, version, &headers).map(|a| a.map(str::to_owned))
    }

    #[test]
    fn host_follows_rfc_9112() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            host_of("/", v11, &["127.0.0.1:9090"]),
            Ok(Some("127.0.0.1:9090".into()))
        );
        assert_eq!(
            host_of("/", v11, &["[::1]:9090"]),
            Ok(Some("[::1]:9090".into()))
        );
        assert_eq!(host_of("/", v11, &[""]), Ok(Some(String::new())));
        assert_eq!(host_of("/", v11, &[]), Err(HostProblem::Missing));
        assert_eq!(host_of("/", Version::HTTP_10, &[]), Ok(None));
        assert_eq!(host_of("/", v11, &["a", "a"]), Err(HostProblem::Twice));
        for malformed in [
            "[::1]evil.example",
            "[::1",
            "[evil]",
            "a b",
            "a:b:c",
            "host:80x",
            "a%zz",
            "user@host",
        ] {
            assert_eq!(
                host_of("/", v11, &[malformed]),
                Err(HostProblem::Malformed),
                "{malformed}"
            );
        }
        // The absolute-form target's authority wins over Host (RFC 9112 §3.2.2).
        assert_eq!(
            host_of("http://evil.example/status.json", v11, &["127.0.0.1"]),
            Ok(Some("evil.example".into()))
        );
        // HTTP/2: `:authority`, and a Host beside it must agree.
        assert_eq!(
            host_of("http://moat.test/", Version::HTTP_2, &[]),
            Ok(Some("moat.test".into()))
        );
        assert_eq!(
            host_of("http://moat.test/", Version::HTTP_2, &["other.test"]),
            Err(HostProblem::Conflicting)
        );
    }
}
