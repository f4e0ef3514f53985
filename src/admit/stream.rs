//! A request body moat relays to the model as it arrives instead of reading it first:
//! one no check needs whole (no spec, or a media type moat does not parse — images,
//! audio, `application/octet-stream` tensors). Buffering those would only cost memory and
//! latency: nothing is parsed. The body's limits still hold, counted as it passes —
//! `limits.max_body_bytes` and `limits.body_read_timeout` — and a body that breaks one
//! fails in the middle: the model sees a request cut short (never a complete one), and
//! `forward` answers the client with the limit's own refusal (413, 408, 400), read back
//! from the [`Cut`] error the upstream exchange failed with.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::grpc::framing::{Framing, FramingError};
use crate::reject::Rejection;

/// The body stage 7 sends: read whole and checked by stage 6, or streamed (see the module).
#[derive(Debug)]
pub enum RequestBody<B> {
    Whole(Bytes),
    Streamed(Bounded<B>),
}

/// Why a streamed body was cut; [`Cut::rejection`] is what the client is told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cut {
    #[error("the request body went past {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body was not received in time")]
    Timeout,
    #[error("the request body broke off")]
    Unreadable,
    #[error("the required request body was empty")]
    Empty,
    #[error("the gRPC messages broke their framing")]
    Grpc(FramingError),
}

impl Cut {
    pub fn rejection(&self) -> Rejection {
        match self {
            Cut::TooLarge { limit } => Rejection::BodyTooLarge { limit: *limit },
            Cut::Timeout => Rejection::BodyTimeout,
            Cut::Unreadable => Rejection::BodyUnreadable,
            Cut::Empty => Rejection::BodyRequired,
            Cut::Grpc(error) => error.clone().rejection(),
        }
    }
}

pin_project! {
    /// A client's body within its limits, checked frame by frame.
    #[derive(Debug)]
    pub struct Bounded<B> {
        #[pin]
        body: B,
        // When the client's time runs out if it keeps the body waiting from `waiting_since`.
        #[pin]
        deadline: Sleep,
        // `limits.body_read_timeout`, counted only while the body waits on the client: the
        // time it keeps the body waiting, summed, so a model that reads slowly (hyper then
        // does not ask for the next frame) never makes the client's upload late.
        timeout: Duration,
        waited: Duration,
        waiting_since: Option<Instant>,
        limit: u64,
        read: u64,
        // The operation requires a body: one that ends empty is refused (a chunked
        // request can announce a body and send none).
        required: bool,
        // A gRPC call's messages, checked as they pass (see `grpc::framing`); boxed, as only
        // streaming calls have one.
        grpc: Option<Box<GrpcStream>>,
        failed: bool,
    }
}

impl<B> Bounded<B> {
    pub fn new(body: B, limit: u64, timeout: Duration, required: bool) -> Self {
        Bounded {
            body,
            deadline: tokio::time::sleep(timeout),
            timeout,
            waited: Duration::ZERO,
            waiting_since: None,
            limit,
            read: 0,
            required,
            grpc: None,
            failed: false,
        }
    }

    /// The same, with the body read as a gRPC call's messages.
    pub fn with_framing(mut self, framing: Framing) -> Self {
        self.grpc = Some(Box::new(GrpcStream {
            framing,
            cut: CutSlot::default(),
        }));
        self
    }

    /// Where a gRPC stream's cut is kept, for the forward stage to tell the client why.
    pub fn cut_slot(&self) -> Option<CutSlot> {
        self.grpc.as_ref().map(|grpc| grpc.cut.clone())
    }
}

/// Why a streamed body was cut, kept where the response side can read it: once the model
/// has answered, a cut request stream can only end the response, and a gRPC client is then
/// told the cut's own status in the trailers (see `forward::UpstreamBody`).
pub type CutSlot = Arc<OnceLock<Cut>>;

/// A gRPC stream's framing and the slot its cut goes to.
#[derive(Debug)]
struct GrpcStream {
    framing: Framing,
    cut: CutSlot,
}

impl<B> Body for Bounded<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let polled = this.body.as_mut().poll_frame(cx);
        if polled.is_ready() {
            if let Some(since) = this.waiting_since.take() {
                *this.waited += since.elapsed();
            }
        }
        let verdict = match polled {
            Poll::Ready(Some(Ok(frame))) => {
                *this.read += frame.data_ref().map_or(0, |data| data.len() as u64);
                let ended = this.body.is_end_stream();
                match *this.read > *this.limit {
                    true => Err(Cut::TooLarge { limit: *this.limit }),
                    false => relayed(this.grpc, frame, ended).map(Some),
                }
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(error = %error.into(), "client body unreadable");
                Err(Cut::Unreadable)
            }
            Poll::Ready(None) if *this.required && *this.read == 0 => Err(Cut::Empty),
            Poll::Ready(None) => framed(this.grpc, None, true).map(|_| None),
            Poll::Pending => {
                if this.waiting_since.is_none() {
                    let now = Instant::now();
                    *this.waiting_since = Some(now);
                    let left = this.timeout.saturating_sub(*this.waited);
                    this.deadline.as_mut().reset(now + left);
                }
                std::task::ready!(this.deadline.poll(cx));
                Err(Cut::Timeout)
            }
        };
        Poll::Ready(match verdict {
            Ok(frame) => frame.map(Ok),
            Err(cut) => {
                *this.failed = true;
                keep(this.grpc, &cut);
                Some(Err(cut))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.failed || (self.body.is_end_stream() && !(self.required && self.read == 0))
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A gRPC stream's cut, kept for the response side (see [`CutSlot`]).
fn keep(grpc: &Option<Box<GrpcStream>>, cut: &Cut) {
    if let Some(grpc) = grpc {
        let _ = grpc.cut.set(cut.clone());
    }
}

/// A frame that passed the limit, as it goes on: a compressed gRPC message decompressed
/// (see `grpc::framing`), anything else as it came.
fn relayed(
    grpc: &mut Option<Box<GrpcStream>>,
    frame: Frame<Bytes>,
    ended: bool,
) -> Result<Frame<Bytes>, Cut> {
    let relayed = framed(grpc, frame.data_ref(), ended)?;
    Ok(relayed.map_or(frame, Frame::data))
}

/// Feeds a gRPC call's bytes to its framing, and checks it ends between messages when the
/// body has `ended` (hyper asks no further once a body says it has ended). `Some` bytes to
/// forward in place of `data` (see [`Framing::feed`]).
fn framed(
    grpc: &mut Option<Box<GrpcStream>>,
    data: Option<&Bytes>,
    ended: bool,
) -> Result<Option<Bytes>, Cut> {
    let Some(GrpcStream { framing, .. }) = grpc.as_deref_mut() else {
        return Ok(None);
    };
    let relayed = match data {
        Some(data) => framing.feed(data).map_err(Cut::Grpc)?,
        None => None,
    };
    if ended {
        framing.finish().map_err(Cut::Grpc)?;
    }
    Ok(relayed)
}

/// The refusal a failed upstream exchange carries, when it failed because the client's
/// streamed body broke a limit (hyper keeps the body's error as the cause).
pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<Rejection> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(cut) = error.downcast_ref::<Cut>() {
            return Some(cut.rejection());
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = std::io::Error> {
        let frames = parts
            .iter()
            .map(|part| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(part.as_bytes()))));
        StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()))
    }

    async fn relay(
        body: impl Body<Data = Bytes, Error = std::io::Error>,
        limit: u64,
        required: bool,
    ) -> Result<Bytes, Rejection> {
        let bounded = Bounded::new(body, limit, Duration::from_secs(5), required);
        match bounded.collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(cut) => Err(cut.rejection()),
        }
    }

    #[tokio::test]
    async fn a_body_within_its_limit_passes_unchanged() {
        let body = relay(chunks(&["ab", "cd"]), 4, true).await;
        assert_eq!(body, Ok(Bytes::from_static(b"abcd")));
    }

    #[tokio::test]
    async fn a_body_past_its_limit_fails_at_the_frame_that_crosses_it() {
        let body = relay(chunks(&["ab", "cd", "e"]), 4, false).await;
        assert_eq!(body, Err(Rejection::BodyTooLarge { limit: 4 }));
    }

    #[tokio::test]
    async fn a_required_body_that_ends_empty_is_refused() {
        assert_eq!(
            relay(chunks(&[]), 4, true).await,
            Err(Rejection::BodyRequired)
        );
        assert_eq!(relay(chunks(&[]), 4, false).await, Ok(Bytes::new()));
    }

    #[tokio::test]
    async fn a_client_that_stalls_past_the_read_timeout_is_refused() {
        let stalled = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >());
        let bounded = Bounded::new(stalled, 4, Duration::from_millis(20), false);
        let cut = bounded.collect().await.err();
        assert_eq!(cut, Some(Cut::Timeout));
    }

    #[tokio::test]
    async fn time_the_model_takes_to_ask_for_the_next_frame_is_not_the_clients() {
        let (sender, frames) = tokio::sync::mpsc::channel::<Bytes>(4);
        let frames = futures_util::stream::unfold(frames, |mut frames| async move {
            let data = frames.recv().await?;
            Some((Ok::<_, std::io::Error>(Frame::data(data)), frames))
        });
        let bounded = Bounded::new(
            StreamBody::new(frames),
            100,
            Duration::from_millis(50),
            false,
        );
        let mut bounded = std::pin::pin!(bounded);
        // The client is quick: each frame is there before it is asked for, but the body
        // waits (pending) a moment between them as a socket's would.
        let send = |data: &'static [u8]| {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(Bytes::from_static(data)).await })
        };
        send(b"ab");
        assert!(bounded.as_mut().frame().await.unwrap().is_ok());
        // The reader (the model's side) takes longer than the whole timeout to come back.
        tokio::time::sleep(Duration::from_millis(120)).await;
        send(b"cd");
        assert!(bounded.as_mut().frame().await.unwrap().is_ok());
        drop(sender);
        assert!(bounded.as_mut().frame().await.is_none());
    }

    /// As hyper reports a body's error: its own error, the body's as the source.
    #[derive(Debug, thiserror::Error)]
    #[error("error writing a body to connection")]
    struct Sending(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn the_refusal_is_found_under_the_errors_that_wrap_it() {
        let wrapped = Sending(Box::new(Sending(Box::new(Cut::Timeout))));
        assert_eq!(refusal_in(&wrapped), Some(Rejection::BodyTimeout));
        let reset = Sending(Box::new(std::io::Error::other("reset")));
        assert_eq!(refusal_in(&reset), None);
    }
}
