//! What the public listener answers with, one type for hyper: moat's own bytes (a refusal,
//! an `OPTIONS` answer), or the model's body — relayed as it is, metered as an LLM answer,
//! or read whole first and then metered (see `hold`). Each concern lives in its own body:
//! the upstream's (`forward`), the meter's (`llm`), and the access record's around this
//! one (`access::Recorded`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::access::{Tokens, TokensOf};
use crate::forward::UpstreamBody;
use crate::llm::{Metered, MeteredBody};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = AnswerProj]
    pub enum Answer {
        Moat { #[pin] body: Own },
        Upstream { #[pin] body: UpstreamBody },
        Metered { #[pin] body: MeteredBody<UpstreamBody> },
        Held { #[pin] body: MeteredBody<Full<Bytes>> },
    }
}

impl Answer {
    pub fn moat(bytes: Bytes) -> Answer {
        Answer::Moat {
            body: Own::new(bytes, None),
        }
    }

    /// moat's own gRPC answer: its message, then the trailers that carry its status.
    pub fn moat_with_trailers(bytes: Bytes, trailers: HeaderMap) -> Answer {
        Answer::Moat {
            body: Own::new(bytes, Some(trailers)),
        }
    }

    pub fn upstream(body: UpstreamBody) -> Answer {
        Answer::Upstream { body }
    }

    pub fn metered(body: MeteredBody<UpstreamBody>) -> Answer {
        Answer::Metered { body }
    }

    pub fn held(body: MeteredBody<Full<Bytes>>) -> Answer {
        Answer::Held { body }
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            AnswerProj::Moat { body } => body.poll_frame(cx),
            AnswerProj::Upstream { body } => body.poll_frame(cx),
            AnswerProj::Metered { body } => body.poll_frame(cx),
            AnswerProj::Held { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Answer::Moat { body } => body.is_end_stream(),
            Answer::Upstream { body } => body.is_end_stream(),
            Answer::Metered { body } => body.is_end_stream(),
            Answer::Held { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Answer::Moat { body } => body.size_hint(),
            Answer::Upstream { body } => body.size_hint(),
            Answer::Metered { body } => body.size_hint(),
            Answer::Held { body } => body.size_hint(),
        }
    }
}

/// moat's own bytes, and the trailers a gRPC answer ends with (`Full` carries none).
pub struct Own {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Own {
    fn new(bytes: Bytes, trailers: Option<HeaderMap>) -> Own {
        Own {
            data: (!bytes.is_empty()).then_some(bytes),
            trailers,
        }
    }
}

impl Body for Own {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = match (self.data.take(), self.trailers.take()) {
            (Some(data), trailers) => {
                self.trailers = trailers;
                Frame::data(data)
            }
            (None, Some(trailers)) => Frame::trailers(trailers),
            (None, None) => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |data| data.len() as u64))
    }
}

impl TokensOf for Answer {
    fn tokens(&self) -> Option<Tokens> {
        let metered = match self {
            Answer::Moat { .. } | Answer::Upstream { .. } => return None,
            Answer::Metered { body } => body.metered(),
            Answer::Held { body } => body.metered(),
        };
        let Metered {
            prompt,
            completion,
            cut,
            invalid_event,
        } = metered;
        Some(Tokens {
            prompt,
            completion,
            cut,
            invalid_event,
        })
    }
}
