//! Plain HTTP sent to the TLS port (`curl http://` where `https://` was meant): instead of
//! a failed handshake the client cannot explain — curl's "Empty reply from server" — it
//! gets a `400` that says what to change, and the connection is closed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::ReasonLabels;
use crate::snapshot::State;

/// The first byte of every TLS connection: a handshake record.
const HANDSHAKE: u8 = 0x16;

const BODY: &str = "this port speaks TLS; use https://\n";

/// How long the request is read and thrown away after the answer, and how much of it: a
/// socket closed with unread data sends a reset, which can destroy the answer before the
/// client has read it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024;

/// Whether a connection whose first byte is `first` starts a TLS handshake.
pub(super) fn is_tls(first: u8) -> bool {
    first == HANDSHAKE
}

/// Answers `400 Bad Request` with a short plain-text body saying to use `https://`, logs
/// one line with the client's address, counts the connection, and closes it.
pub(super) async fn refuse(state: &State, mut stream: TcpStream, client: std::net::IpAddr) {
    tracing::info!(
        %client,
        "plain HTTP on the TLS port: answered 400 (use https://) and closed the connection"
    );
    state
        .metrics
        .connections_closed
        .get_or_create(&ReasonLabels {
            reason: "plain_http_on_tls",
        })
        .inc();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let written = tokio::time::timeout(LINGER, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        let _ = tokio::time::timeout(LINGER, drain(&mut stream)).await;
    }
}

/// Reads until the client closes, or `LINGER_BYTES` were read.
async fn drain(stream: &mut TcpStream) {
    let mut buffer = [0u8; 4096];
    let mut read = 0;
    while read < LINGER_BYTES {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}
