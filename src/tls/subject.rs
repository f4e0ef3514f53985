//! The verified client certificate's subject, as `X-Moat-Client-Cert-Subject` carries it:
//! RFC 4514, escaped so one attribute reads as one, and percent-encoded to fit a header.

use http::HeaderValue;
use x509_parser::oid_registry::OidRegistry;
use x509_parser::x509::{AttributeTypeAndValue, RelativeDistinguishedName};

/// The verified client certificate's subject as an RFC 4514 string (`CN=job,O=Example`,
/// last RDN first), for `X-Moat-Client-Cert-Subject`. Written here rather than with
/// x509-parser's `Display`, which does not escape: a CN of `alice,O=admins` must not read
/// as two attributes. Values that are not strings use RFC 4514's `#hex` form; bytes outside
/// printable ASCII are percent-encoded so a UTF-8 name survives in a header.
pub fn client_subject(connection: &rustls::ServerConnection) -> Option<HeaderValue> {
    let leaf = connection.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = certificate
        .subject()
        .iter_rdn()
        .map(|rdn| relative_name(rdn, registry))
        .collect();
    let subject = rdns.into_iter().rev().collect::<Vec<_>>().join(",");
    HeaderValue::from_str(&percent_encoded(&subject)).ok()
}

/// One RDN: its attributes joined with `+`.
fn relative_name(rdn: &RelativeDistinguishedName<'_>, registry: &OidRegistry<'_>) -> String {
    rdn.iter()
        .map(|attribute| attribute_text(attribute, registry))
        .collect::<Vec<_>>()
        .join("+")
}

/// `NAME=value`: the attribute's short name (else its OID), the value escaped, or `#hex`
/// when it is not a string.
fn attribute_text(attribute: &AttributeTypeAndValue<'_>, registry: &OidRegistry<'_>) -> String {
    let oid = attribute.attr_type();
    let name = x509_parser::objects::oid2abbrev(oid, registry)
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string());
    let value = match attribute.as_str() {
        Ok(text) => escape_rfc4514(text),
        Err(_) => {
            let hex: String = attribute
                .attr_value()
                .data
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("#{hex}")
        }
    };
    format!("{name}={value}")
}

/// Printable ASCII as it is, every other byte (and `%`) as `%XX`.
fn percent_encoded(subject: &str) -> String {
    let mut encoded = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// RFC 4514 §2.4: escape `"+,;<>\`, a leading `#` or space, a trailing space, and NUL.
fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if index == 0 => out.push_str("\\#"),
            ' ' if index == 0 || index == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4514_escaping_keeps_one_attribute_one_attribute() {
        assert_eq!(escape_rfc4514("alice, O=admins"), "alice\\, O=admins");
        assert_eq!(escape_rfc4514("#x y "), "\\#x y\\ ");
        assert_eq!(escape_rfc4514("a+b\\c\"d;<e>"), "a\\+b\\\\c\\\"d\\;\\<e\\>");
        assert_eq!(escape_rfc4514("plain"), "plain");
    }
}
