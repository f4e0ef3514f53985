//! The response body moat hands to hyper (stage 7 and every rejection): either a small body
//! moat wrote itself, or the upstream's body streamed through frame by frame with an idle
//! timeout. It carries the request's access-log record, which is written when the body is
//! finished or dropped, so streamed responses are logged with their true duration and a
//! client that goes away is visible in the log.

use std::pin::Pin;
use std::sync::Arc;
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
use crate::llm::{Feed, Grant, Meter};
use crate::metrics::Metrics;

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
        // An LLM operation's token meter (boxed: every other response carries one null
        // pointer, not the meter).
        llm: Option<Box<Metering>>,
    }
}

/// An LLM response's meter and what it settles when the response is over.
struct Metering {
    meter: Meter,
    grant: Option<Grant>,
    metrics: Arc<Metrics>,
    ended: bool,
}

impl Drop for Metering {
    fn drop(&mut self) {
        if !self.ended {
            self.meter.end();
        }
        if let Some(grant) = self.grant.take() {
            grant.settle(&self.meter, &self.metrics);
        }
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
            llm: None,
        }
    }

    /// Meters this (upstream) body for an LLM operation's `grant`.
    pub fn meter(&mut self, grant: Grant, meter: Meter, metrics: Arc<Metrics>) {
        self.llm = Some(Box::new(Metering {
            meter,
            grant: Some(grant),
            metrics,
            ended: false,
        }));
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

/// Two optional pieces of a body as one.
fn join(first: Option<Bytes>, second: Option<Bytes>) -> Option<Bytes> {
    match (first, second) {
        (Some(a), Some(b)) => Some([a, b].concat().into()),
        (a, b) => a.or(b),
    }
}

/// The next frame of whichever body the response carries: the upstream's with its idle
/// timeout, releasing the connection when it ends cleanly.
fn poll_inner(
    inner: Pin<&mut Inner>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(match inner.project() {
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
    })
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
        let result = loop {
            let polled = ready!(poll_inner(inner.as_mut(), cx));
            let Some(metering) = this.llm.as_deref_mut().filter(|m| !m.meter.cut) else {
                break polled;
            };
            match polled {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(trailers) => break Some(Ok(trailers)),
                    };
                    let mut out = match metering.meter.feed(data) {
                        Feed::Pass(out) => Some(out),
                        Feed::Hold => None,
                        Feed::Cut(last) => {
                            // Dropping the upstream body closes its connection: the model
                            // sees the request cancelled and stops generating.
                            inner.set(Inner::Full {
                                body: Full::new(last),
                            });
                            continue;
                        }
                    };
                    if inner.is_end() {
                        metering.ended = true;
                        out = join(out, metering.meter.end());
                    }
                    match out {
                        Some(out) => break Some(Ok(Frame::data(out))),
                        None if metering.ended => break None,
                        None => continue,
                    }
                }
                None => {
                    metering.ended = true;
                    break metering.meter.end().map(|rest| Ok(Frame::data(rest)));
                }
                Some(Err(error)) => break Some(Err(error)),
            }
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
            if let Some(metering) = this.llm.as_deref() {
                completion.tokens = Some((metering.meter.prompt, metering.meter.completion));
                completion.stream_cut = metering.meter.cut;
            }
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
