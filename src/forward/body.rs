//! The upstream's response body as stage 7 relays it: frame by frame, failed when the model
//! sends nothing for `upstream.idle_timeout` in the middle of it, and its pooled connection
//! given back when it ends cleanly — dropped (closed) if it fails or is abandoned.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream sent nothing for `upstream.idle_timeout` in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no data for {0:?}")]
pub struct IdleTimeout(Duration);

pin_project! {
    pub struct UpstreamBody {
        #[pin]
        body: Incoming,
        #[pin]
        idle: Sleep,
        timeout: Duration,
        // The connection it arrives on, given back to the pool once the body has ended
        // cleanly; dropped (closing it) if the body fails or is abandoned.
        lease: Option<Lease>,
    }
}

impl UpstreamBody {
    /// Relays `body`, failing it if no frame arrives for `idle_timeout`, and releases
    /// `lease` when it ends.
    pub fn new(body: Incoming, idle_timeout: Duration, lease: Option<Lease>) -> Self {
        UpstreamBody {
            body,
            idle: tokio::time::sleep(idle_timeout),
            timeout: idle_timeout,
            lease,
        }
    }
}

fn release(lease: &mut Option<Lease>) {
    if let Some(lease) = lease.take() {
        lease.release();
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        Poll::Ready(match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.body.is_end_stream() {
                    release(this.lease);
                } else {
                    this.idle.as_mut().reset(Instant::now() + *this.timeout);
                }
                Some(Ok(frame))
            }
            Poll::Ready(Some(Err(error))) => {
                this.lease.take();
                Some(Err(error.into()))
            }
            Poll::Ready(None) => {
                release(this.lease);
                None
            }
            Poll::Pending => {
                std::task::ready!(this.idle.poll(cx));
                this.lease.take();
                Some(Err(IdleTimeout(*this.timeout).into()))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
