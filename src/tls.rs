//! TLS termination (design §4): rustls with TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`, and optionally client certificates verified against `client_ca_file`. The
//! server config is built per snapshot, so a reload with new PEM files serves them to new
//! connections while established ones keep theirs. All rustls setup lives here.

use std::path::Path;
use std::sync::Arc;

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

/// Reads the PEM files and builds the server config; every problem names its file.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, Vec<String>> {
    let mut problems = Vec::new();
    let certs = read_certs(&tls.cert_file, "tls.cert_file").map_err(|e| problems.push(e));
    if let Ok(certs) = &certs
        && certs.is_empty()
    {
        problems.push(format!(
            "tls.cert_file ({}): no CERTIFICATE block; give the PEM certificate chain, leaf first",
            tls.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| {
        problems.push(format!(
            "tls.key_file ({}): no usable private key ({e}); give a PEM PKCS#8, PKCS#1 or SEC1 key",
            tls.key_file.display()
        ))
    });
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
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} ({}): {e}", path.display()))
}

/// The verified client certificate's subject (RFC 4514 order as x509-parser prints it),
/// as a header value: bytes outside visible ASCII are percent-encoded so a UTF-8 name
/// survives and nothing can break the header.
pub fn client_subject(connection: &rustls::ServerConnection) -> Option<HeaderValue> {
    let leaf = connection.peer_certificates()?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = certificate.subject().to_string();
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
