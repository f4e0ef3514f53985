//! An LLM response body, metered as it passes (see [`Meter`]): its tokens counted, the
//! stream cut past its bound, and the reservation settled to what was used when the body
//! ends or is dropped — a client that goes away is charged what it was sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Feed, Grant, Meter};
use crate::metrics::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a metered response carried: its tokens and whether moat cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    pub prompt: u64,
    pub completion: u64,
    pub cut: bool,
    /// An event broke its schema (see `EventCheck`): `Some(true)` when the stream was cut
    /// before it (`enforce`), `Some(false)` when it was relayed (`shadow`).
    pub invalid_event: Option<bool>,
}

pin_project! {
    /// `B`, metered for an LLM request's grant.
    pub struct MeteredBody<B> {
        #[pin]
        state: State<B>,
        metering: Metering,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B> {
        Relaying { #[pin] body: B },
        // Cut at the bound: the last bytes (the events that fit, then moat's error and
        // `[DONE]`) still to send. The upstream body is gone: its connection closed, so the
        // model sees the request cancelled.
        Cut { last: Option<Bytes> },
    }
}

/// The meter and what it settles when the response is over.
struct Metering {
    meter: Meter,
    grant: Option<Grant>,
    metrics: Arc<Metrics>,
    ended: bool,
}

impl Metering {
    /// The body ended: what the meter still holds (an unfinished event's tail).
    fn finish(&mut self) -> Option<Bytes> {
        self.ended = true;
        self.meter.end()
    }
}

fn data_frame(data: Bytes) -> Result<Frame<Bytes>, BoxError> {
    Ok(Frame::data(data))
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

impl<B> MeteredBody<B> {
    pub fn new(body: B, grant: Grant, meter: Meter, metrics: Arc<Metrics>) -> Self {
        MeteredBody {
            state: State::Relaying { body },
            metering: Metering {
                meter,
                grant: Some(grant),
                metrics,
                ended: false,
            },
        }
    }

    /// The tokens counted so far.
    pub fn metered(&self) -> Metered {
        let meter = &self.metering.meter;
        Metered {
            prompt: meter.prompt,
            completion: meter.completion,
            cut: meter.cut,
            invalid_event: meter
                .invalid_event
                .then(|| meter.invalid_reason().is_some()),
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

impl<B> Body for MeteredBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            let body = match this.state.as_mut().project() {
                StateProj::Cut { last } => return Poll::Ready(last.take().map(data_frame)),
                StateProj::Relaying { body } => body,
            };
            let data = match ready!(body.poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                None => return Poll::Ready(this.metering.finish().map(data_frame)),
            };
            let out = match this.metering.meter.feed(data) {
                Feed::Pass(out) => Some(out),
                Feed::Hold => None,
                Feed::Cut(last) => {
                    this.state.set(State::Cut { last: Some(last) });
                    continue;
                }
            };
            // The frame that ends the body also carries the unfinished tail of an event.
            let out = match this.state.is_end() {
                true => join(out, this.metering.finish()),
                false => out,
            };
            match out {
                Some(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                None if this.metering.ended => return Poll::Ready(None),
                None => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Relaying { body } => body.size_hint(),
            State::Cut { last } => {
                SizeHint::with_exact(last.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl<B: Body> State<B> {
    fn is_end(&self) -> bool {
        match self {
            State::Relaying { body } => body.is_end_stream(),
            State::Cut { last } => last.is_none(),
        }
    }
}
