//! The public listener's TLS as `moat check` states it: off (plain HTTP and h2c on the
//! listen address), or on with the certificate's names and expiry — and a warning when
//! that expiry is near or past, which rustls would serve regardless.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use super::findings::{Finding, Severity};
use super::locate::Location;
use crate::config::Config;
use crate::tls::Leaf;

/// A certificate closer than this to its end gets a warning.
const RENEW_WITHIN_DAYS: i64 = 30;

#[derive(Debug, Clone)]
pub struct TlsStatus {
    pub listen: SocketAddr,
    /// `tls.cert_file`, when TLS is on.
    pub cert_file: Option<PathBuf>,
    /// Its leaf certificate, if it could be read (an error says why not).
    pub leaf: Option<Leaf>,
    /// `tls.client_ca_file`: client certificates are required.
    pub client_ca: Option<PathBuf>,
}

impl TlsStatus {
    pub fn of(config: &Config) -> TlsStatus {
        let tls = config.tls.as_ref();
        TlsStatus {
            listen: config.listen,
            cert_file: tls.map(|tls| tls.cert_file.clone()),
            leaf: tls.and_then(|tls| Leaf::read(&tls.cert_file).ok()),
            client_ca: tls.and_then(|tls| tls.client_ca_file.clone()),
        }
    }

    /// One line: `off: plain HTTP …` or `on: FILE, CN=…, names …; expires …`.
    pub fn describe(&self, now: SystemTime) -> String {
        let Some(cert_file) = &self.cert_file else {
            return format!("off: plain HTTP (and h2c) on {}", self.listen);
        };
        let mut line = format!("on ({}): {}", self.listen, cert_file.display());
        if let Some(leaf) = &self.leaf {
            if let Some(cn) = &leaf.common_name {
                line.push_str(&format!(", CN={cn}"));
            }
            if !leaf.names.is_empty() {
                line.push_str(&format!(", names {}", leaf.names.join(" ")));
            }
            line.push_str(&format!("; {}", expiry(leaf, now)));
        }
        if let Some(ca) = &self.client_ca {
            line.push_str(&format!(
                "; client certificates required ({})",
                ca.display()
            ));
        }
        line
    }

    /// A warning when the certificate has expired or expires within 30 days.
    pub fn findings(&self, now: SystemTime) -> Option<Finding> {
        let (leaf, cert_file) = (self.leaf.as_ref()?, self.cert_file.as_ref()?);
        let days = leaf.days_left(now);
        let (code, what) = match days {
            ..0 => ("tls_certificate_expired", "clients refuse it"),
            0..RENEW_WITHIN_DAYS => ("tls_certificate_expiring", "renew it"),
            _ => return None,
        };
        let at = Location {
            file: cert_file.display().to_string(),
            ..Location::default()
        };
        let message = format!(
            "tls.cert_file: the certificate {}: {what}",
            expiry(leaf, now)
        );
        Some(Finding::at(Severity::Warning, code, at, &message))
    }
}

/// `expires 2026-01-01T00:00:00Z (in 30 days)`, or `expired … (3 days ago)`.
fn expiry(leaf: &Leaf, now: SystemTime) -> String {
    let date = humantime::format_rfc3339_seconds(leaf.not_after);
    match leaf.days_left(now) {
        days @ 0.. => format!("expires {date} (in {days} day{})", plural(days)),
        days => format!("expired {date} ({} day{} ago)", -days, plural(-days)),
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn status(days: u64) -> (TlsStatus, SystemTime) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let leaf = Leaf {
            common_name: Some("moat.example".into()),
            names: vec!["moat.example".into(), "127.0.0.1".into()],
            not_after: now + Duration::from_secs(days * 86_400 + 60),
        };
        let status = TlsStatus {
            listen: "0.0.0.0:8443".parse().unwrap(),
            cert_file: Some("cert.pem".into()),
            leaf: Some(leaf),
            client_ca: None,
        };
        (status, now)
    }

    #[test]
    fn tls_is_described_with_names_and_expiry_and_warned_about_near_its_end() {
        let (on, now) = status(90);
        assert_eq!(
            on.describe(now),
            "on (0.0.0.0:8443): cert.pem, CN=moat.example, names moat.example 127.0.0.1; \
             expires 2024-02-12T22:14:20Z (in 90 days)"
        );
        assert!(on.findings(now).is_none());
        let (soon, now) = status(3);
        assert_eq!(soon.findings(now).unwrap().code, "tls_certificate_expiring");
        let off = TlsStatus {
            cert_file: None,
            leaf: None,
            ..on
        };
        assert_eq!(
            off.describe(now),
            "off: plain HTTP (and h2c) on 0.0.0.0:8443"
        );
    }
}
