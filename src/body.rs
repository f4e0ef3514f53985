//! The response body moat hands to hyper (stage 7 and every rejection): either a small body
//! moat wrote itself, or the upstream's body streamed through frame by frame with an idle
//! timeout. It carries the request's access-log record, which is written when the body is
//! finished or dropped, so streamed responses are logged with their true duration and a
//! client that goes away is visible in the log.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::access::Completion;
use crate::forward::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream sent nothing for `upstream.idle_timeout` in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no data for {0:?}")]
pub struct IdleTimeout(Duration);

pin_project! {
    pub struct ResponseBody {
        #[pin]
        inner: Inner,
        completion: Option<Completion>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner {
        Full { #[pin] body: Full<Bytes> },
        Upstream {
            #[pin] body: Incoming,
            #[pin] idle: Sleep,
            timeout: Duration,
            // The connection it arrives on, given back to the pool once the body has
            // ended cleanly; dropped (closing it) if the body fails or is abandoned.
            lease: Option<Lease>,
        },
    }
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        Self::from_inner(Inner::Full {
            body: Full::new(bytes),
        })
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// Streams `body`, failing the stream if no frame arrives for `idle_timeout`, and
    /// releases `lease` when it ends.
    pub fn upstream(body: Incoming, idle_timeout: Duration, lease: Option<Lease>) -> Self {
        Self::from_inner(Inner::Upstream {
            body,
            idle: tokio::time::sleep(idle_timeout),
            timeout: idle_timeout,
            lease,
        })
    }

    fn from_inner(inner: Inner) -> Self {
        Self {
            inner,
            completion: None,
        }
    }

    pub fn attach(&mut self, mut completion: Completion) {
        // hyper never polls a body that is already at its end (204, HEAD): it is complete
        // as soon as it is handed over.
        completion.finished = self.inner.is_end();
        self.completion = Some(completion);
    }
}

fn release(lease: &mut Option<Lease>) {
    if let Some(lease) = lease.take() {
        lease.release();
    }
}

impl Inner {
    fn is_end(&self) -> bool {
        match self {
            Inner::Full { body } => body.is_end_stream(),
            Inner::Upstream { body, .. } => body.is_end_stream(),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let mut inner = this.inner;
        let result: Option<Result<Frame<Bytes>, BoxError>> = match inner.as_mut().project() {
            InnerProj::Full { body } => match ready!(body.poll_frame(cx)) {
                Some(Ok(frame)) => Some(Ok(frame)),
                Some(Err(never)) => match never {},
                None => None,
            },
            InnerProj::Upstream {
                mut body,
                mut idle,
                timeout,
                lease,
            } => match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if body.is_end_stream() {
                        release(lease);
                    } else {
                        idle.as_mut().reset(Instant::now() + *timeout);
                    }
                    Some(Ok(frame))
                }
                Poll::Ready(Some(Err(error))) => {
                    lease.take();
                    Some(Err(error.into()))
                }
                Poll::Ready(None) => {
                    release(lease);
                    None
                }
                Poll::Pending => {
                    ready!(idle.poll(cx));
                    lease.take();
                    Some(Err(IdleTimeout(*timeout).into()))
                }
            },
        };
        if let Some(completion) = this.completion.as_mut() {
            match &result {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        completion.bytes_sent += data.len() as u64;
                    }
                }
                Some(Err(error)) => completion.stream_error = Some(error.to_string()),
                None => {}
            }
            completion.finished = result.is_none() || inner.is_end();
        }
        Poll::Ready(result)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full { body } => body.size_hint(),
            Inner::Upstream { body, .. } => body.size_hint(),
        }
    }
}
