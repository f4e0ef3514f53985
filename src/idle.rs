//! Idle connections give their slot back. HTTP/1 keep-alive connections are closed by
//! hyper's header-read timeout, but HTTP/2 has no such timer: a client could open
//! `max_connections` h2 connections, send the preface and nothing else, and starve everyone.
//! So every public connection counts its open requests ([`Streams`]), and its I/O
//! ([`IdleIo`]) reports end-of-stream once no request has been open for the limit — safe to
//! do abruptly, since there is nothing in flight to lose. Hand-written: hyper exposes no
//! idle timeout for HTTP/2 servers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The open requests of one connection, and since when it has had none.
#[derive(Debug)]
pub struct Streams {
    open: AtomicUsize,
    /// The connection's reader, parked while requests are open; woken when the last one
    /// ends, so it can start the idle timer. The timer is never polled on a busy connection.
    reader: AtomicWaker,
    epoch: Instant,
    /// Milliseconds after `epoch` when the last request ended (or the connection began).
    idle_since: AtomicU64,
}

impl Streams {
    pub fn new() -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            reader: AtomicWaker::new(),
            epoch: Instant::now(),
            idle_since: AtomicU64::new(0),
        })
    }

    /// Counts a request as open until the guard drops (with its response body).
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        StreamGuard(self.clone())
    }

    /// How long the connection has had no open request; `None` while one is open.
    fn idle_for(&self) -> Option<Duration> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since.load(Ordering::Acquire));
        Some(self.epoch.elapsed().saturating_sub(since))
    }
}

/// One open request; dropped when its response has been sent or abandoned.
#[derive(Debug)]
pub struct StreamGuard(Arc<Streams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since.store(now, Ordering::Release);
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

pin_project! {
    /// A connection's I/O that reads as closed once it has been idle for `limit`.
    pub struct IdleIo<I> {
        #[pin]
        inner: I,
        // Boxed so the I/O stays `Unpin`, as hyper's connections want it.
        timer: Pin<Box<Sleep>>,
        streams: Arc<Streams>,
        limit: Duration,
    }
}

impl<I> IdleIo<I> {
    pub fn new(inner: I, streams: Arc<Streams>, limit: Duration) -> IdleIo<I> {
        IdleIo {
            inner,
            timer: Box::pin(tokio::time::sleep(limit)),
            streams,
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
        // ends (registered before the second look, so that end cannot be missed).
        if this.streams.open.load(Ordering::Acquire) > 0 {
            this.streams.reader.register(cx.waker());
            if this.streams.open.load(Ordering::Acquire) > 0 {
                return Poll::Pending;
            }
        }
        // Idle: check whenever the timer fires, and re-arm it.
        while this.timer.as_mut().poll(cx).is_ready() {
            let wait = match this.streams.idle_for() {
                Some(idle) if idle >= *this.limit => return Poll::Ready(Ok(())), // EOF
                Some(idle) => *this.limit - idle,
                None => *this.limit,
            };
            this.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
        }
        Poll::Pending
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_without_open_requests() {
        let streams = Streams::new();
        assert!(streams.idle_for().is_some());
        let first = streams.open();
        let second = streams.open();
        assert_eq!(streams.idle_for(), None);
        drop(first);
        assert_eq!(streams.idle_for(), None);
        drop(second);
        assert!(
            streams
                .idle_for()
                .is_some_and(|idle| idle < Duration::from_secs(5))
        );
    }
}
