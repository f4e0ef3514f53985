//! Idle connections give their slot back. HTTP/1 keep-alive connections are closed by
//! hyper's header-read timeout, but HTTP/2 has no such timer: a client could open
//! `max_connections` h2 connections, send the preface and nothing else, and starve everyone.
//! So every public connection counts its open requests ([`Connection`]), and its I/O
//! ([`IdleIo`]) reports end-of-stream once no request has been open for the limit — safe to
//! do abruptly, since there is nothing in flight to lose. Hand-written: hyper exposes no
//! idle timeout for HTTP/2 servers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::connection::Connection;

pin_project! {
    /// A connection's I/O that reads as closed once it has been idle for `limit`.
    pub struct IdleIo<I> {
        #[pin]
        inner: I,
        // Boxed so the I/O stays `Unpin`, as hyper's connections want it.
        timer: Pin<Box<Sleep>>,
        connection: Arc<Connection>,
        limit: Duration,
    }
}

impl<I> IdleIo<I> {
    pub fn new(inner: I, connection: Arc<Connection>, limit: Duration) -> IdleIo<I> {
        IdleIo {
            inner,
            timer: Box::pin(tokio::time::sleep(limit)),
            connection,
            limit,
        }
    }
}

impl<I: AsyncRead> AsyncRead for IdleIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll_read(cx, buf) {
            return Poll::Ready(result);
        }
        // Nothing to read. While a request is open, only ask to be woken when the last one
        // ends.
        if parked_while_busy(this.connection, cx) {
            return Poll::Pending;
        }
        // Idle: check whenever the timer fires, and re-arm it.
        poll_idle_timer(this.timer, this.connection, *this.limit, cx)
    }
}

/// True while a request is open, with the reader registered to be woken when the last one
/// ends (registered before the second look, so that end cannot be missed).
fn parked_while_busy(connection: &Connection, cx: &mut Context<'_>) -> bool {
    if !connection.is_busy() {
        return false;
    }
    connection.reader.register(cx.waker());
    connection.is_busy()
}

/// Ready — the end of the stream — once the connection has been idle for `limit`; until
/// then the timer is re-armed for the rest of the limit whenever it fires.
fn poll_idle_timer(
    timer: &mut Pin<Box<Sleep>>,
    connection: &Connection,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while timer.as_mut().poll(cx).is_ready() {
        let wait = match connection.idle_for() {
            Some(idle) if idle >= limit => return Poll::Ready(Ok(())), // EOF
            Some(idle) => limit - idle,
            None => limit,
        };
        timer.as_mut().reset(tokio::time::Instant::now() + wait);
    }
    Poll::Pending
}

impl<I: AsyncWrite> AsyncWrite for IdleIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
