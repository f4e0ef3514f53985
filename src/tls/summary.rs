//! What `moat check` says of the public listener's TLS: the leaf certificate's names and
//! when it stops being valid — what an operator checks before a deploy, and what a
//! handshake error would otherwise be the first to tell.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use x509_parser::extensions::GeneralName;

/// The leaf certificate of `tls.cert_file`, as far as a person deploying it cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The subject's common name, if it has one.
    pub common_name: Option<String>,
    /// The DNS names and IP addresses of its subjectAltName: what clients match.
    pub names: Vec<String>,
    pub not_after: SystemTime,
}

impl Leaf {
    /// Reads the first certificate of the PEM chain at `path`.
    pub fn read(path: &Path) -> Result<Leaf, String> {
        let certs = super::read_certs(path, "tls.cert_file")?;
        let leaf = certs
            .first()
            .ok_or_else(|| format!("tls.cert_file ({}): no CERTIFICATE block", path.display()))?;
        let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| format!("tls.cert_file ({}): {e}", path.display()))?;
        let common_name = certificate
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let names = match certificate.subject_alternative_name() {
            Ok(Some(san)) => san.value.general_names.iter().filter_map(name).collect(),
            _ => Vec::new(),
        };
        let seconds = u64::try_from(certificate.validity().not_after.timestamp()).unwrap_or(0);
        Ok(Leaf {
            common_name,
            names,
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
        })
    }

    /// Whole days until `not_after` from `now`; negative once it has passed.
    pub fn days_left(&self, now: SystemTime) -> i64 {
        let days = |d: Duration| i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX);
        match self.not_after.duration_since(now) {
            Ok(left) => days(left),
            Err(past) => -days(past.duration()) - 1,
        }
    }
}

/// A DNS name or an IP address of the subjectAltName; the other kinds do not name a server.
fn name(general: &GeneralName<'_>) -> Option<String> {
    match general {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
            _ => None,
        }
        .map(|ip| ip.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_gives_its_names_and_end() {
        let mut params =
            rcgen::CertificateParams::new(vec!["moat.test".into(), "127.0.0.1".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "moat leaf");
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        let leaf = Leaf::read(&path).unwrap();
        assert_eq!(leaf.common_name.as_deref(), Some("moat leaf"));
        assert_eq!(leaf.names, ["moat.test", "127.0.0.1"]);
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_542_400);
        assert_eq!(leaf.not_after, end);
        assert_eq!(leaf.days_left(end - Duration::from_secs(86_400 * 3)), 3);
        assert_eq!(leaf.days_left(end + Duration::from_secs(60)), -1);
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(Leaf::read(&path).is_err());
    }
}
