//! The response body with the request's access record riding on it: the bytes that reach
//! the client, whether the body ended, how it broke, and — for an LLM answer — the tokens
//! it carried. The record is written when this body ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::AccessRecord;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An LLM answer's tokens, as its meter counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    /// moat ended the stream at its bound (or before an event that broke its schema).
    pub cut: bool,
    /// An event broke the spec's event schema (see `llm::EventCheck`): `Some(true)` when
    /// the stream was cut before it (`enforce`), `Some(false)` when it was relayed.
    pub invalid_event: Option<bool>,
}

/// A body that may count tokens: what the record asks of the body it rides on.
pub trait TokensOf {
    /// The tokens counted so far; `None` for a body that is not metered.
    fn tokens(&self) -> Option<Tokens>;
}

pin_project! {
    pub struct Recorded<B> {
        #[pin]
        body: B,
        record: AccessRecord,
    }
}

impl<B: Body + TokensOf> Recorded<B> {
    pub fn new(body: B, mut record: AccessRecord) -> Self {
        // hyper never polls a body that is already at its end (204, HEAD): it is complete
        // as soon as it is handed over.
        record.finished = body.is_end_stream();
        if let Some(tokens) = body.tokens() {
            record.tokens = Some(tokens);
        }
        Recorded { body, record }
    }
}

impl<B> Body for Recorded<B>
where
    B: Body<Data = Bytes> + TokensOf,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let result = ready!(this.body.as_mut().poll_frame(cx)).map(|r| r.map_err(Into::into));
        let record = this.record;
        match &result {
            Some(Ok(frame)) => match frame.trailers_ref() {
                Some(trailers) => record.grpc_status_in(trailers),
                None => record.sent(frame.data_ref().map_or(0, Bytes::len)),
            },
            Some(Err(error)) => record.stream_error = Some(error.to_string()),
            None => {}
        }
        record.finished = result.is_none() || this.body.is_end_stream();
        if let Some(tokens) = this.body.tokens() {
            record.tokens = Some(tokens);
        }
        Poll::Ready(result)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
