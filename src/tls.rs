//! TLS termination (design §4): rustls with TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`, and optionally client certificates verified against `client_ca_file`. The
//! server config is built per snapshot, so a reload with new PEM files serves them to new
//! connections while established ones keep theirs. All rustls setup lives here.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsConfig;

/// The crypto provider, passed explicitly rather than installed process-wide, so another
/// crate's provider can never make rustls pick one at random (or panic).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The public listener's TLS, as one snapshot serves it.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// The leaf certificate's `notAfter`, for the status page (`None` if it won't parse:
    /// rustls accepted it, so moat serves it all the same).
    pub not_after: Option<SystemTime>,
}

/// Reads the PEM files and builds the server config; every problem names its file.
pub fn server_config(tls: &TlsConfig) -> Result<ServerTls, Vec<String>> {
    let mut problems = Vec::new();
    // Whoever can write these can impersonate moat or, for the CA file, any client.
    let permissions = [
        crate::secrets::check_permissions(&tls.key_file, "TLS private key (tls.key_file)"),
        crate::secrets::refuse_world_writable(&tls.cert_file, "certificate (tls.cert_file)")
            .map(drop),
    ];
    let ca_permission = tls.client_ca_file.as_deref().map(|path| {
        crate::secrets::refuse_world_writable(path, "client CA file (tls.client_ca_file)").map(drop)
    });
    for result in permissions.into_iter().chain(ca_permission) {
        if let Err(problem) = result {
            problems.push(problem);
        }
    }
    let certs = read_certs(&tls.cert_file, "tls.cert_file").map_err(|e| problems.push(e));
    if let Ok(certs) = &certs
        && certs.is_empty()
    {
        problems.push(format!(
            "tls.cert_file ({}): no CERTIFICATE block; give the PEM certificate chain, leaf first",
            tls.cert_file.display()
        ));
    }
    let key = crate::input::read(&tls.key_file, crate::input::Kind::KeyMaterial)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| format!("tls.key_file: {e}"))
        .and_then(|pem| {
            PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                format!(
                    "tls.key_file ({}): no usable private key ({e}); give a PEM PKCS#8, PKCS#1 \
                     or SEC1 key",
                    tls.key_file.display()
                )
            })
        })
        .map_err(|problem| problems.push(problem));
    let verifier = tls.client_ca_file.as_deref().map(|path| {
        let roots = read_certs(path, "tls.client_ca_file")?;
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots);
        if added == 0 {
            return Err(format!(
                "tls.client_ca_file ({}): no usable CA certificate",
                path.display()
            ));
        }
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .map_err(|e| format!("tls.client_ca_file ({}): {e}", path.display()))
    });
    let verifier = match verifier.transpose() {
        Ok(verifier) => verifier,
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let (Ok(certs), Ok(key), true) = (certs, key, problems.is_empty()) else {
        return Err(problems);
    };
    let not_after = certs.first().and_then(|leaf| leaf_not_after(leaf));
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| vec![format!("tls: {e}")])?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        vec![format!(
            "tls: the key in {} does not fit the certificate in {} ({e})",
            tls.key_file.display(),
            tls.cert_file.display()
        )]
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        not_after,
    })
}

fn leaf_not_after(leaf: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let seconds = u64::try_from(certificate.validity().not_after.timestamp()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(seconds))
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = crate::input::read(path, crate::input::Kind::KeyMaterial)
        .map_err(|e| format!("{key}: {e}"))?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} ({}): {e}", path.display()))
}

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
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
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
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    let subject = rdns.into_iter().rev().collect::<Vec<_>>().join(",");
    let mut encoded = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&encoded).ok()
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
