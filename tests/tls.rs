//! TLS end to end, with a CA, server and client certificates generated here: HTTP/1.1 and
//! HTTP/2 chosen by ALPN, mTLS accepted and refused with the subject forwarded, a
//! certificate swapped while serving, and an HTTP/2 stream reset that reaches the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code: a panic is the failure report; case tables run long

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Moat, Upstream, config, eventually};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

/// A leaf signed by `ca`: (certificate PEM, key PEM, certificate DER).
fn leaf(ca: &Ca, common_name: &str, names: &[&str]) -> (String, String, Vec<u8>) {
    leaf_until(ca, common_name, names, None)
}

/// The same, valid until `not_after` (rcgen's default: 4096-01-01).
fn leaf_until(
    ca: &Ca,
    common_name: &str,
    names: &[&str],
    not_after: Option<(i32, u8, u8)>,
) -> (String, String, Vec<u8>) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Moat Tests");
    if let Some((year, month, day)) = not_after {
        params.not_after = rcgen::date_time_ymd(year, month, day);
    }
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server_der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("Moat Test CA");
        let (cert, key, server_der) = leaf(&ca, "localhost", &["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("server.crt"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.pem).unwrap();
        Pki {
            dir,
            ca,
            server_der,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn tls_config(&self, mtls: bool) -> String {
        let mut text = format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            self.path("server.crt"),
            self.path("server.key")
        );
        if mtls {
            text.push_str(&format!("  client_ca_file: {}\n", self.path("ca.crt")));
        }
        text
    }
}

fn client_config(
    ca_pem: &str,
    alpn: &[&[u8]],
    identity: Option<(&str, &str)>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One GET over an established TLS stream, by HTTP/1.1 or HTTP/2 as ALPN chose.
async fn get(
    stream: TlsStream<TcpStream>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, hyper::Version), hyper::Error> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut request = Request::get(format!("https://localhost{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        sender.send_request(request).await?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        let mut request = request;
        request
            .headers_mut()
            .insert("host", "localhost".parse().unwrap());
        sender.send_request(request).await?
    };
    let status = response.status().as_u16();
    let version = response.version();
    response.into_body().collect().await?;
    Ok((status, version))
}

use support::runtime;

#[test]
fn http1_and_http2_are_served_over_tls_by_alpn() {
    let pki = Pki::new();
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), &pki.tls_config(false)));
    runtime().block_on(async {
        for (alpn, version) in [
            (&b"http/1.1"[..], hyper::Version::HTTP_11),
            (&b"h2"[..], hyper::Version::HTTP_2),
        ] {
            let stream = connect(moat.addr, client_config(&pki.ca.pem, &[alpn], None))
                .await
                .unwrap();
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
            let presented = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
            assert_eq!(presented, pki.server_der);
            let forged = [("x-moat-client-cert-subject", "CN=admin")];
            let (status, seen_version) = get(stream, "/x", &forged).await.unwrap();
            assert_eq!((status, seen_version), (200, version));
        }
    });
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.header("x-forwarded-proto"), Some("https"));
        assert_eq!(request.header("x-moat-client-cert-subject"), None);
    }
}

/// `curl http://` on the TLS port: a 400 that says to use https://, one log line naming
/// the client, nothing forwarded; and the start-up line says TLS is on, with which
/// certificate until when.
#[test]
fn plain_http_on_the_tls_port_is_told_to_use_https() {
    let pki = Pki::new();
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), &pki.tls_config(false)));
    let listening: serde_json::Value = moat
        .lines()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .find(|json: &serde_json::Value| json["message"] == "listening")
        .unwrap();
    assert_eq!(listening["scheme"], "https", "{listening}");
    assert_eq!(listening["tls_cert"], pki.path("server.crt"), "{listening}");
    // rcgen's default notAfter.
    assert_eq!(
        listening["tls_not_after"], "4096-01-01T00:00:00Z",
        "{listening}"
    );
    let answer = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tcp = TcpStream::connect(moat.addr).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let mut buffer = Vec::new();
            tcp.read_to_end(&mut buffer).await.unwrap();
            String::from_utf8(buffer).unwrap()
        })
        .await
        .unwrap()
    });
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nthis port speaks TLS; use https://\n"),
        "{answer}"
    );
    assert!(
        eventually(|| moat.lines().iter().any(|line| {
            line.contains("plain HTTP on the TLS port") && line.contains("\"client\":\"127.0.0.1\"")
        })),
        "{:#?}",
        moat.lines()
    );
    // A TLS client is served as before.
    runtime().block_on(async {
        let stream = connect(moat.addr, client_config(&pki.ca.pem, &[b"http/1.1"], None))
            .await
            .unwrap();
        assert_eq!(get(stream, "/x", &[]).await.unwrap().0, 200);
    });
    assert_eq!(upstream.count(), 1, "only the TLS request is forwarded");
    assert_eq!(
        support::metric(
            &moat,
            "moat_connections_closed_total{reason=\"plain_http_on_tls\"}"
        ),
        1
    );
}

#[test]
fn mtls_forwards_the_verified_subject_and_refuses_other_clients() {
    let pki = Pki::new();
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), &pki.tls_config(true)));
    // A common name that tries to smuggle a second attribute.
    let (client_cert, client_key, _) = leaf(&pki.ca, "scoring-job, O=admins", &["scoring-job"]);
    let stranger_ca = ca("Someone Else");
    let (stranger_cert, stranger_key, _) = leaf(&stranger_ca, "intruder", &["intruder"]);
    runtime().block_on(async {
        let identity = Some((client_cert.as_str(), client_key.as_str()));
        let stream = connect(moat.addr, client_config(&pki.ca.pem, &[b"h2"], identity))
            .await
            .unwrap();
        let forged = [("x-moat-client-cert-subject", "CN=admin")];
        assert_eq!(get(stream, "/a", &forged).await.unwrap().0, 200);

        // No certificate, or one from another CA: the TLS 1.3 client learns it on first use.
        let stranger = Some((stranger_cert.as_str(), stranger_key.as_str()));
        for identity in [None, stranger] {
            let config = client_config(&pki.ca.pem, &[b"http/1.1"], identity);
            let refused = match connect(moat.addr, config).await {
                Err(_) => true,
                Ok(stream) => get(stream, "/b", &[]).await.is_err(),
            };
            assert!(refused, "a client without a valid certificate was served");
        }
    });
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "a refused client reached the upstream");
    let subject = seen[0].header("x-moat-client-cert-subject").unwrap();
    // RFC 4514: last RDN first, the comma inside the common name escaped.
    assert_eq!(subject, r"O=Moat Tests,CN=scoring-job\, O=admins");
}

#[test]
fn a_renewed_certificate_is_served_to_new_connections_while_old_ones_continue() {
    let pki = Pki::new();
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), &pki.tls_config(false)));
    runtime().block_on(async {
        let config = client_config(&pki.ca.pem, &[b"h2"], None);
        let old = connect(moat.addr, config.clone()).await.unwrap();
        let io = TokioIo::new(old);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        let first = Request::get("https://localhost/one")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(sender.send_request(first).await.unwrap().status(), 200);

        // Renewal: write the new pair beside the old and rename over it, as cert tools do.
        let (cert, key, renewed_der) =
            leaf_until(&pki.ca, "localhost", &["localhost"], Some((2031, 5, 17)));
        replace(pki.dir.path(), "server.key", &key);
        replace(pki.dir.path(), "server.crt", &cert);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stream = connect(moat.addr, config.clone()).await.unwrap();
            if stream.get_ref().1.peer_certificates().unwrap()[0].as_ref() == renewed_der {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the renewed certificate never appeared"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The connection opened before the renewal still serves requests.
        let second = Request::get("https://localhost/two")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(sender.send_request(second).await.unwrap().status(), 200);
    });
    assert!(support::metric(&moat, r#"moat_config_reloads_total{result="success"}"#) >= 1);
    // The status page shows the certificate being served, and when it expires.
    let status = support::admin_get(moat.admin, "/status.json").json();
    let tls = &status["snapshot"]["tls"];
    assert_eq!(tls["not_after"], "2031-05-17T00:00:00Z", "{status}");
    let days = (1_936_742_400 - support::now()) / 86_400;
    assert_eq!(tls["days_left"].as_u64(), Some(days));
}

fn replace(dir: &Path, name: &str, text: &str) {
    let temporary = dir.join(format!(".{name}.new"));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join(name)).unwrap();
}

#[test]
fn an_http2_stream_reset_by_the_client_cancels_the_upstream_request() {
    let pki = Pki::new();
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), &pki.tls_config(false)));
    runtime().block_on(async {
        let stream = connect(moat.addr, client_config(&pki.ca.pem, &[b"h2"], None))
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = Request::get("https://localhost/forever")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        // Dropping the body resets the stream; the connection stays open.
        drop(body);
        let again = Request::get("https://localhost/ok")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(sender.send_request(again).await.unwrap().status(), 200);
    });
    assert!(
        eventually(|| upstream.cancelled.load(Ordering::SeqCst) == 1),
        "the upstream kept streaming for a reset stream"
    );
}

#[test]
fn bad_tls_files_are_reported_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.crt");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let path = dir.path().join("moat.yaml");
    let tls = format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n",
        cert.display(),
        dir.path().join("missing.key").display(),
        cert.display()
    );
    std::fs::write(&path, config("http://127.0.0.1:1", &tls)).unwrap();
    let output = support::run_moat(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = support::text(&output);
    for expected in [
        "tls.cert_file",
        "tls.key_file",
        "tls.client_ca_file",
        "3 problems",
    ] {
        assert!(report.contains(expected), "`{expected}` missing:\n{report}");
    }
}

/// With one connection slot, a client that connects and sends nothing — before or after
/// the TLS handshake, after the HTTP/2 preface, or on plain HTTP — is cut off by
/// `header_read_timeout` and the next client is served; a slow request is not idle.
#[test]
fn silent_clients_do_not_hold_connection_slots() {
    let pki = Pki::new();
    let upstream = Upstream::start();
    let limits = "limits:\n  max_connections: 1\n  header_read_timeout: 1s\n";
    let tls_moat = Moat::start(&config(
        &upstream.url(),
        &format!("{}{limits}", pki.tls_config(false)),
    ));
    let plain_moat = Moat::start(&config(&upstream.url(), limits));
    runtime().block_on(async {
        let client = client_config(&pki.ca.pem, &[b"http/1.1"], None);
        let served = |addr: SocketAddr| {
            let client = client.clone();
            async move {
                let stream = connect(addr, client).await.unwrap();
                get(stream, "/next", &[]).await.unwrap().0
            }
        };
        // Silent before the handshake.
        let _silent = TcpStream::connect(tls_moat.addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(8), served(tls_moat.addr)).await;
        assert_eq!(next.expect("the silent TCP client kept the slot"), 200);
        // Silent after the handshake.
        let _idle = connect(tls_moat.addr, client.clone()).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(8), served(tls_moat.addr)).await;
        assert_eq!(next.expect("the idle TLS client kept the slot"), 200);
        // HTTP/2 preface and settings, then nothing: hyper has no idle timer for h2.
        let h2_client = client_config(&pki.ca.pem, &[b"h2"], None);
        let stream = connect(tls_moat.addr, h2_client.clone()).await.unwrap();
        let (_sender, connection) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        let idle_h2 = tokio::spawn(connection);
        let next = tokio::time::timeout(Duration::from_secs(8), served(tls_moat.addr)).await;
        assert_eq!(next.expect("the idle HTTP/2 client kept the slot"), 200);
        assert!(
            idle_h2.is_finished(),
            "the idle HTTP/2 connection is still open"
        );
        // A request slower than the idle limit on HTTP/2 is not cut off: it is not idle.
        let stream = connect(tls_moat.addr, h2_client).await.unwrap();
        let (status, _) = get(stream, "/slow/1800", &[]).await.unwrap();
        assert_eq!(status, 200);
        // Silent on plain HTTP.
        let _silent = TcpStream::connect(plain_moat.addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(8), async {
            tokio::task::spawn_blocking(move || support::get(plain_moat.addr, "/next", &[]).status)
                .await
                .unwrap()
        })
        .await;
        assert_eq!(next.expect("the silent plain client kept the slot"), 200);
    });
}

/// TLS cannot be switched on or off by a reload: it is refused, counted, and the old
/// listener keeps serving TLS.
#[test]
fn a_reload_that_turns_tls_off_is_refused() {
    let pki = Pki::new();
    let upstream = Upstream::start();
    let moat = Moat::start(&config(&upstream.url(), &pki.tls_config(false)));
    std::fs::write(&moat.config_path, config(&upstream.url(), "")).unwrap();
    assert!(eventually(|| support::metric(
        &moat,
        r#"moat_config_reloads_total{result="failure"}"#
    ) >= 1));
    runtime().block_on(async {
        let stream = connect(moat.addr, client_config(&pki.ca.pem, &[b"h2"], None))
            .await
            .unwrap();
        assert_eq!(get(stream, "/still-tls", &[]).await.unwrap().0, 200);
    });
    assert!(eventually(|| moat
        .lines()
        .join("\n")
        .contains("turning TLS on or off needs a restart")));
}

/// Whoever can write the client CA file can let any client in: world-writable is refused.
#[test]
fn a_world_writable_client_ca_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    std::fs::set_permissions(pki.path("ca.crt"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let path = pki.dir.path().join("moat.yaml");
    std::fs::write(&path, config("http://127.0.0.1:1", &pki.tls_config(true))).unwrap();
    let output = support::run_moat(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = support::text(&output);
    assert!(
        report.contains("client CA file (tls.client_ca_file) is world-writable"),
        "{report}"
    );
}
