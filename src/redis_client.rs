//! A Redis client from a URL secret and an optional CA file, as the limit store and the key
//! store both configure one. The URL's own text never goes into a message: it may carry a
//! password.

use std::path::Path;

use crate::config::Secret;

/// Plain, or TLS trusting `ca_file` (else the system's roots).
pub fn client(url: &Secret, ca_file: Option<&Path>) -> Result<redis::Client, String> {
    let url = url.expose();
    let Some(ca_file) = ca_file else {
        return redis::Client::open(url).map_err(|_| {
            "`url` is not a Redis URL: write redis://[user:password@]host:port[/db], or \
             rediss://… for TLS"
                .to_owned()
        });
    };
    if !url.starts_with("rediss://") {
        return Err("`ca_file` is for TLS: the `url` must start with rediss://".into());
    }
    let root_cert = crate::input::read(ca_file, crate::input::Kind::KeyMaterial)
        .map_err(|e| format!("ca_file: {e}"))?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    redis::Client::build_with_tls(url, certificates).map_err(|_| {
        format!(
            "`url` is not a rediss:// URL, or ca_file {} holds no PEM certificate",
            ca_file.display()
        )
    })
}
