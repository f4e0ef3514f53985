//! Counting an LLM response's tokens as it streams through, and ending a stream that
//! reaches its reservation.
//!
//! Server-sent events are cut only between events, so a frame is passed on as whole
//! events: a frame that ends on an event boundary (what vLLM, TGI and llama.cpp write, one
//! `data:` event per chunk) goes through as the same `Bytes`, uncopied; the tail of an event
//! split across frames waits for its end. Nothing is ever merged across events or
//! compressed, and the first event leaves as soon as it is read.

mod check;
mod count;
mod events;
pub(crate) mod fuzz;

use bytes::{Bytes, BytesMut};

pub use self::check::EventCheck;
use self::count::{Text, Whole};

/// The largest JSON response kept to read its `usage` from; a bigger one is estimated.
pub const MAX_JSON_BYTES: usize = 4 << 20;

/// What to do with one frame of the upstream's body.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    /// Send these bytes (the frame itself, or the whole events it completed).
    Pass(Bytes),
    /// Nothing to send yet: the frame holds only part of an event.
    Hold,
    /// Send these bytes — the events that still fit, then moat's final error event and
    /// `data: [DONE]` — and end the response: the upstream request is closed.
    Cut(Bytes),
}

/// Where the completion bound moat admitted came from: what a cut says was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The request's own `max_tokens` (or another spelling of it).
    Asked,
    /// The key's `max_tokens` cap, written into a request that asked for none.
    Cap,
    /// What was left of the key's token budget, for a request bounded by neither.
    Budget,
}

/// The most completion tokens a response may carry before moat ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub completion: u64,
    pub bound: Bound,
}

/// How the response body is read.
#[derive(Debug)]
enum Shape {
    /// `text/event-stream`: events, counted as they pass.
    Events { carry: BytesMut },
    /// Anything else: kept (refcounted, not copied) to read `usage` at the end; `text`
    /// counts the whole body, kept or not.
    Json { frames: Vec<Bytes>, text: Text },
    /// The upstream refused (not 2xx): nothing was generated.
    Refused,
}

/// The token count of one response.
#[derive(Debug)]
pub struct Meter {
    shape: Shape,
    pub prompt: u64,
    pub completion: u64,
    /// The model reported its own count (`usage`): the estimates are replaced by it.
    pub reported: bool,
    /// moat's count of a stream, until the model reports one.
    counted: Text,
    /// The completion tokens the response may carry before the stream is cut; `None`:
    /// never cut.
    limit: Option<Limit>,
    /// moat asked for the usage event; the client did not, so it is not passed on.
    hide_usage: bool,
    pub cut: bool,
    done: bool,
    /// Each event's JSON `data` held to the spec's event schema (see `check`).
    check: Option<EventCheck>,
    /// Why the stream was cut, when an event did not match its schema (not a bound).
    invalid: Option<String>,
    /// An event did not match its schema (cut or, in shadow, relayed).
    pub invalid_event: bool,
}

impl Meter {
    /// `events`: the response is `text/event-stream`; `success`: its status is 2xx.
    pub fn new(
        events: bool,
        success: bool,
        prompt_estimate: u64,
        limit: Option<Limit>,
        hide_usage: bool,
    ) -> Self {
        let shape = match (success, events) {
            (false, _) => Shape::Refused,
            (true, true) => Shape::Events {
                carry: BytesMut::new(),
            },
            (true, false) => Shape::Json {
                frames: Vec::new(),
                text: Text::default(),
            },
        };
        Meter {
            shape,
            prompt: if success { prompt_estimate } else { 0 },
            completion: 0,
            reported: false,
            counted: Text::default(),
            limit,
            hide_usage,
            cut: false,
            done: false,
            check: None,
            invalid: None,
            invalid_event: false,
        }
    }

    /// Why the stream was cut at an event that broke its schema, if it was.
    pub fn invalid_reason(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    /// The same meter, holding each event to `check` (an event stream's only).
    pub fn checking(mut self, check: Option<EventCheck>) -> Self {
        self.check = check;
        self
    }

    /// Tokens to charge: what the model reported, else moat's count.
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }

    /// The answer is read as events (`text/event-stream`, successful).
    pub fn reads_events(&self) -> bool {
        matches!(self.shape, Shape::Events { .. })
    }

    /// The answer is read whole (not an event stream) and was successful.
    pub fn is_json(&self) -> bool {
        matches!(self.shape, Shape::Json { .. })
    }

    /// The answer carries more completion tokens than its limit allows.
    pub fn over_limit(&self) -> bool {
        self.limit
            .is_some_and(|limit| self.completion > limit.completion)
    }

    pub fn feed(&mut self, data: Bytes) -> Feed {
        if self.cut {
            return Feed::Hold;
        }
        match &mut self.shape {
            Shape::Refused => Feed::Pass(data),
            Shape::Json { frames, text } => {
                text.add(&data);
                if (text.ascii + text.other) as usize <= MAX_JSON_BYTES {
                    frames.push(data.clone());
                } else {
                    frames.clear();
                }
                Feed::Pass(data)
            }
            // After `[DONE]` nothing more is counted (nor read, unless events are checked).
            Shape::Events { carry } if self.done && carry.is_empty() && self.check.is_none() => {
                Feed::Pass(data)
            }
            Shape::Events { carry } => {
                let mut buffer = if carry.is_empty() {
                    data
                } else {
                    carry.extend_from_slice(&data);
                    std::mem::take(carry).freeze()
                };
                self.events(&mut buffer)
            }
        }
    }

    /// The body ended: read a JSON response's `usage` (or estimate it), and hand back the
    /// unfinished tail of an event stream, which is passed on as it is.
    /// The unfinished last event of a stream, passed on as it is — held to its schema
    /// first: an event without its blank line must not walk around the check.
    fn unfinished(&mut self, tail: Bytes) -> Option<Bytes> {
        if tail.is_empty() {
            return None;
        }
        let data = events::data_of(&tail).map(std::borrow::Cow::into_owned);
        if data.is_some_and(|data| self.breaks_schema(&data)) {
            self.cut = true;
            return Some(Bytes::from(self.cut_events()));
        }
        Some(tail)
    }

    pub fn end(&mut self) -> Option<Bytes> {
        let (frames, text) = match &mut self.shape {
            Shape::Json { frames, text } => (frames, *text),
            Shape::Events { carry } => {
                let tail = std::mem::take(carry).freeze();
                return self.unfinished(tail);
            }
            Shape::Refused => return None,
        };
        let frames = std::mem::take(frames);
        let kept = (text.ascii + text.other) as usize <= MAX_JSON_BYTES;
        let joined: Bytes = match frames.as_slice() {
            [one] => one.clone(),
            many => many.iter().flat_map(|b| b.iter().copied()).collect(),
        };
        let usage = serde_json::from_slice::<Whole>(&joined)
            .ok()
            .filter(|_| kept)
            .and_then(|whole| whole.usage?.counts());
        match usage {
            Some((prompt, completion)) => {
                self.prompt = prompt;
                self.completion = completion;
                self.reported = true;
            }
            // No `usage` (or too big to keep): counted from the answer's bytes.
            None => self.completion = text.tokens(),
        }
        self.shape = Shape::Refused;
        None
    }
}

#[cfg(test)]
mod tests;
