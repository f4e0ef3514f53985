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
use crate::admit::CutSlot;
use crate::reject::Audience;

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
        // A gRPC call's request stream, once cut: the call ends with the cut's status.
        cut: Option<CutSlot>,
        ended: bool,
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
            cut: None,
            ended: false,
        }
    }

    /// A gRPC response whose call ends with the status of its request stream's cut, if it
    /// is cut: in the trailers, in place of the model's (or of the reset the cut caused).
    pub fn ending_with(mut self, cut: Option<CutSlot>) -> Self {
        self.cut = cut;
        self
    }
}

/// The trailers of a cut gRPC call: its refusal's `grpc-status`, message and `moat-code`.
fn cut_trailers(cut: Option<&CutSlot>) -> Option<http::HeaderMap> {
    let rejection = cut?.get()?.rejection();
    let (parts, _) = rejection.into_response("", Audience::Grpc).into_parts();
    let mut trailers = parts.headers;
    trailers.remove(http::header::CONTENT_TYPE);
    Some(trailers)
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
        if *this.ended {
            return Poll::Ready(None);
        }
        let polled = this.body.as_mut().poll_frame(cx);
        let ending = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.is_trailers(),
            Poll::Ready(Some(Err(_)) | None) => true,
            Poll::Pending => false,
        };
        if ending {
            if let Some(trailers) = cut_trailers(this.cut.as_ref()) {
                *this.ended = true;
                this.lease.take();
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
        }
        Poll::Ready(match polled {
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
        self.ended || (self.body.is_end_stream() && self.cut.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
