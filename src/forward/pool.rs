//! The upstream's idle HTTP/1.1 connections: per proxy thread, a stack of them, the most
//! recently used on top. A request leases one (or opens one), and its response body hands
//! it back when it ends, so a connection serves one request at a time — and one that
//! ended badly (body dropped early, an error) is closed instead of reused.
//!
//! Hand-written over hyper's `client::conn` because hyper_util's legacy `Client`, on every
//! request, locks a pool all threads share, hashes the pool key, boxes its futures and
//! spawns a task just to return the connection; here a lease is a pop and a push on this
//! thread's stack, and no task runs besides each connection's own.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;

pub type Sender = SendRequest<super::OutboundBody>;

pub struct Pool {
    /// One stack per proxy thread: a connection's task runs on the runtime that opened
    /// it, so a request taking another thread's connection would wake that core.
    stacks: ThreadLocal<Arc<Stack>>,
    host: String,
    port: u16,
    connect_timeout: Duration,
    /// A connection idle this long is closed instead of reused: below the model server's
    /// keep-alive (uvicorn's is 5 s), so moat never sends on a connection being closed.
    idle_timeout: Duration,
}

#[derive(Default)]
struct Stack {
    // Never held across an await; a lock only other threads' leases returning late take.
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// A connection lent to one request; [`release`](Lease::release) gives it back.
pub struct Lease {
    pub sender: Sender,
    /// Whether it served a request before: only such a connection can have gone stale.
    pub reused: bool,
    home: Arc<Stack>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(host: &str, port: u16, connect_timeout: Duration, idle_timeout: Duration) -> Self {
        // `Uri::host` keeps an IPv6 literal's brackets; connecting wants the address.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Pool {
            stacks: ThreadLocal::new(),
            host: host.to_owned(),
            port,
            connect_timeout,
            idle_timeout,
        }
    }

    /// This thread's most recently used live connection, or a new one.
    pub async fn lease(&self) -> io::Result<Lease> {
        let home = self.stacks.get_or(Arc::default).clone();
        while let Some(idle) = home.pop(self.idle_timeout) {
            let mut sender = idle.sender;
            // Ready at once unless the model closed it (then it is dropped here).
            if sender.ready().await.is_ok() {
                return Ok(self.lend(sender, home, true));
            }
        }
        let sender = self.connect().await?;
        Ok(self.lend(sender, home, false))
    }

    fn lend(&self, sender: Sender, home: Arc<Stack>, reused: bool) -> Lease {
        Lease {
            sender,
            reused,
            home,
            idle_timeout: self.idle_timeout,
        }
    }

    async fn connect(&self) -> io::Result<Sender> {
        let stream = open(&self.host, self.port, self.connect_timeout).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        drive(connection);
        Ok(sender)
    }
}

/// A TCP connection to the model, within `timeout`, without Nagle's delay.
pub(super) async fn open(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let connect = async {
        match host.parse::<IpAddr>() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await,
            // A name (`model:8080` in compose): resolved on every connect, as Kubernetes
            // and compose expect when the model is replaced.
            Err(_) => TcpStream::connect((host, port)).await,
        }
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs a connection to the model on this thread's runtime until it closes.
pub(super) fn drive<C>(connection: C)
where
    C: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "upstream connection ended");
        }
    });
}

impl Lease {
    /// Its response ended cleanly: the connection goes back on its thread's stack.
    pub fn release(self) {
        self.home.push(
            Idle {
                sender: self.sender,
                since: Instant::now(),
            },
            self.idle_timeout,
        );
    }
}

impl Stack {
    fn pop(&self, idle_timeout: Duration) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let top = idle.pop_back()?;
        if top.since.elapsed() >= idle_timeout {
            // Everything below the top is older still: close them all.
            idle.clear();
            return None;
        }
        Some(top)
    }

    fn push(&self, returned: Idle, idle_timeout: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The oldest ones, at the bottom, are never reached while traffic lasts: close
        // those past their time as new ones come back, so the model can let them go.
        while idle
            .front()
            .is_some_and(|oldest| oldest.since.elapsed() >= idle_timeout)
        {
            idle.pop_front();
        }
        idle.push_back(returned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_reused_after_its_release_and_expired_ones_are_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream); // keeps them open, answering nothing
            }
        });
        let pool = Pool::new(
            "127.0.0.1",
            port,
            Duration::from_secs(1),
            Duration::from_millis(200),
        );
        let first = pool.lease().await.unwrap();
        assert!(!first.reused);
        first.release();
        let again = pool.lease().await.unwrap();
        assert!(again.reused, "a released connection is lent again");
        again.release();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let fresh = pool.lease().await.unwrap();
        assert!(!fresh.reused, "one idle past the timeout is not");
        drop(fresh);
        let after_drop = pool.lease().await.unwrap();
        assert!(
            !after_drop.reused,
            "a lease dropped without release is closed"
        );
        accepted.abort();
    }

    #[tokio::test]
    async fn an_ipv6_literal_host_connects() {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            return; // no IPv6 loopback on this machine
        };
        let port = listener.local_addr().unwrap().port();
        let pool = Pool::new(
            "[::1]",
            port,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let (lease, accepted) = tokio::join!(pool.lease(), listener.accept());
        assert!(lease.is_ok() && accepted.is_ok());
    }
}
