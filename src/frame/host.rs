//! The authority a request is addressed to, by the Host rules of RFC 9112 §3.2 (and RFC
//! 9113 §8.3.1 for HTTP/2), and the `host[:port]` syntax it must have.

use http::header::HOST;
use http::{HeaderMap, Uri, Version};

use super::decode_escape;
use crate::reject::HostProblem;

/// The authority a request is addressed to, by RFC 9112 §3.2 (and RFC 9113 §8.3.1 for
/// HTTP/2): one `Host` line, required on HTTP/1.1, of valid `host[:port]` syntax; the
/// request target's own authority (absolute-form, or HTTP/2's `:authority`) wins over
/// `Host`, and on HTTP/2 the two must agree. `None`: an HTTP/1.0 request without one.
pub fn authority<'a>(
    uri: &'a Uri,
    version: Version,
    headers: &'a HeaderMap,
) -> Result<Option<&'a str>, HostProblem> {
    let host = single_host(headers)?;
    match (uri.authority(), host) {
        (Some(target), Some(host))
            if version >= Version::HTTP_2 && !target.as_str().eq_ignore_ascii_case(host) =>
        {
            Err(HostProblem::Conflicting)
        }
        (None, None) if version == Version::HTTP_11 => Err(HostProblem::Missing),
        (Some(_), None) if version == Version::HTTP_11 => Err(HostProblem::Missing),
        (Some(target), _) => Ok(Some(target.as_str())),
        (None, host) => Ok(host),
    }
}

/// The one `Host` line, if there is one, of valid syntax.
fn single_host(headers: &HeaderMap) -> Result<Option<&str>, HostProblem> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostProblem::Twice);
    }
    let host = host
        .map(|value| value.to_str().map_err(|_| HostProblem::Malformed))
        .transpose()?;
    if host.is_some_and(|host| !valid_authority(host)) {
        return Err(HostProblem::Malformed);
    }
    Ok(host)
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a bracketed IPv6 (or
/// IPvFuture) literal, or a reg-name / IPv4 of unreserved, sub-delims and `%XX`; then
/// digits after one colon. An empty value is valid (a target without authority).
fn valid_authority(value: &str) -> bool {
    let (host_ok, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((literal, after)) => (valid_ip_literal(literal), after),
            None => return false,
        },
        None => match value.rsplit_once(':') {
            Some((host, _)) => (valid_reg_name(host), &value[host.len()..]),
            None => (valid_reg_name(value), ""),
        },
    };
    let port_ok = match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    };
    host_ok && port_ok
}

fn valid_ip_literal(literal: &str) -> bool {
    if literal.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    // IPvFuture: "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
    let Some((version, rest)) = literal
        .strip_prefix(['v', 'V'])
        .and_then(|future| future.split_once('.'))
    else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b == b':' || is_unreserved(b) || is_sub_delim(b))
}

fn valid_reg_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if decode_escape(bytes, i).is_none() {
                    return false;
                }
                i += 3;
            }
            b if is_unreserved(b) || is_sub_delim(b) => i += 1,
            _ => return false,
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}
