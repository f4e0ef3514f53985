//! TLS termination (design §4): rustls with TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`, and optionally client certificates verified against `client_ca_file`. The
//! server config is built per snapshot, so a reload with new PEM files serves them to new
//! connections while established ones keep theirs. All rustls setup lives here.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

mod subject;
mod summary;

pub use self::subject::client_subject;
pub use self::summary::Leaf;
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
    let mut problems = permission_problems(tls);
    let certs = certificate_chain(&tls.cert_file).map_err(|e| problems.push(e));
    let key = private_key(&tls.key_file).map_err(|e| problems.push(e));
    let verifier = tls
        .client_ca_file
        .as_deref()
        .map(client_verifier)
        .transpose()
        .map_err(|e| problems.push(e));
    let (Ok(certs), Ok(key), Ok(verifier), true) = (certs, key, verifier, problems.is_empty())
    else {
        return Err(problems);
    };
    let not_after = certs.first().and_then(|leaf| leaf_not_after(leaf));
    let config = rustls_config(tls, certs, key, verifier)?;
    Ok(ServerTls {
        config: Arc::new(config),
        not_after,
    })
}

/// Whoever can write these files can impersonate moat or, for the CA file, any client.
fn permission_problems(tls: &TlsConfig) -> Vec<String> {
    let permissions = [
        crate::secrets::check_permissions(&tls.key_file, "TLS private key (tls.key_file)"),
        crate::secrets::refuse_world_writable(&tls.cert_file, "certificate (tls.cert_file)")
            .map(drop),
    ];
    let ca_permission = tls.client_ca_file.as_deref().map(|path| {
        crate::secrets::refuse_world_writable(path, "client CA file (tls.client_ca_file)").map(drop)
    });
    permissions
        .into_iter()
        .chain(ca_permission)
        .filter_map(Result::err)
        .collect()
}

/// `tls.cert_file`: at least one certificate, the leaf first.
fn certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_certs(path, "tls.cert_file")?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert_file ({}): no CERTIFICATE block; give the PEM certificate chain, leaf first",
            path.display()
        ));
    }
    Ok(certs)
}

/// `tls.key_file`: the private key, its PEM wiped once parsed.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = crate::input::read(path, crate::input::Kind::KeyMaterial)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| format!("tls.key_file: {e}"))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "tls.key_file ({}): no usable private key ({e}); give a PEM PKCS#8, PKCS#1 \
             or SEC1 key",
            path.display()
        )
    })
}

/// `tls.client_ca_file`: the CAs a client certificate must chain to.
fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
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
}

/// TLS 1.3 and 1.2, client certificates if `verifier`, ALPN `h2` then `http/1.1`.
fn rustls_config(
    tls: &TlsConfig,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, Vec<String>> {
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
    Ok(config)
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
