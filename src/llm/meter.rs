//! Counting an LLM response's tokens as it streams through, and ending a stream that
//! reaches its reservation.
//!
//! Server-sent events are cut only between events, so a frame is passed on as whole
//! events: a frame that ends on an event boundary (what vLLM, TGI and llama.cpp write, one
//! `data:` event per chunk) goes through as the same `Bytes`, uncopied; the tail of an event
//! split across frames waits for its end. Nothing is ever merged across events or
//! compressed, and the first event leaves as soon as it is read.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::request::estimate;

/// The largest JSON response kept to read its `usage` from; a bigger one is estimated.
const MAX_JSON_BYTES: usize = 4 << 20;

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

/// How the response body is read.
#[derive(Debug)]
enum Shape {
    /// `text/event-stream`: events, counted as they pass.
    Events { carry: BytesMut },
    /// Anything else: kept (refcounted, not copied) to read `usage` at the end; `bytes`
    /// counts the whole body, kept or not.
    Json { frames: Vec<Bytes>, bytes: usize },
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
    /// Tokens the response may use before the stream is cut; `None`: never cut.
    limit: Option<u64>,
    /// moat asked for the usage event; the client did not, so it is not passed on.
    hide_usage: bool,
    pub cut: bool,
    done: bool,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    /// `/v1/completions` streams `text`, not `delta`.
    #[serde(borrow)]
    text: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    reasoning_content: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    reasoning: Option<&'a serde_json::value::RawValue>,
    tool_calls: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Whole {
    usage: Option<Usage>,
}

/// A string field that carries text: present, and not `""` or `null`.
fn has_text(raw: Option<&serde_json::value::RawValue>) -> bool {
    raw.is_some_and(|raw| !matches!(raw.get(), "\"\"" | "null"))
}

impl Usage {
    fn counts(&self) -> Option<(u64, u64)> {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let completion = self
            .completion_tokens
            .or_else(|| Some(self.total_tokens?.saturating_sub(prompt)))
            .unwrap_or(0);
        (self.prompt_tokens.is_some() || self.total_tokens.is_some())
            .then_some((prompt, completion))
    }
}

impl Meter {
    /// `events`: the response is `text/event-stream`; `success`: its status is 2xx.
    pub fn new(
        events: bool,
        success: bool,
        prompt_estimate: u64,
        limit: Option<u64>,
        hide_usage: bool,
    ) -> Self {
        let shape = match (success, events) {
            (false, _) => Shape::Refused,
            (true, true) => Shape::Events {
                carry: BytesMut::new(),
            },
            (true, false) => Shape::Json {
                frames: Vec::new(),
                bytes: 0,
            },
        };
        Meter {
            shape,
            prompt: if success { prompt_estimate } else { 0 },
            completion: 0,
            reported: false,
            limit,
            hide_usage,
            cut: false,
            done: false,
        }
    }

    /// Tokens to charge: what the model reported, else moat's count.
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }

    pub fn feed(&mut self, data: Bytes) -> Feed {
        if self.cut {
            return Feed::Hold;
        }
        match &mut self.shape {
            Shape::Refused => Feed::Pass(data),
            Shape::Json { frames, bytes } => {
                *bytes += data.len();
                if *bytes <= MAX_JSON_BYTES {
                    frames.push(data.clone());
                } else {
                    frames.clear();
                }
                Feed::Pass(data)
            }
            // After `[DONE]` nothing more is counted.
            Shape::Events { carry } if self.done && carry.is_empty() => Feed::Pass(data),
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

    /// Counts the whole events at the start of `buffer`; keeps its unfinished tail for the
    /// next frame.
    fn events(&mut self, buffer: &mut Bytes) -> Feed {
        let mut end = 0;
        // Ranges of `buffer` to pass on, when an event must be left out (the usage event
        // the client did not ask for): the common case passes one slice.
        let mut dropped: Option<Vec<(usize, usize)>> = None;
        while let Some((event_end, next)) = next_event(&buffer[end..]) {
            let (start, stop) = (end, end + next);
            match self.event(&buffer[start..start + event_end]) {
                Event::Pass => {
                    if let Some(kept) = &mut dropped {
                        kept.push((start, stop));
                    }
                }
                Event::Drop => {
                    dropped.get_or_insert_with(|| vec![(0, start)]);
                }
                Event::Cut => {
                    self.cut = true;
                    let mut out = BytesMut::new();
                    match &dropped {
                        Some(kept) => kept
                            .iter()
                            .for_each(|&(a, b)| out.extend_from_slice(&buffer[a..b])),
                        None => out.extend_from_slice(&buffer[..start]),
                    }
                    out.extend_from_slice(CUT_EVENTS);
                    return Feed::Cut(out.freeze());
                }
            }
            end = stop;
        }
        let tail = buffer.split_off(end);
        if let Shape::Events { carry } = &mut self.shape
            && !tail.is_empty()
        {
            carry.extend_from_slice(&tail);
        }
        let whole = std::mem::take(buffer);
        let out = match dropped {
            None => whole,
            Some(kept) => {
                let mut out = BytesMut::new();
                kept.iter()
                    .for_each(|&(a, b)| out.extend_from_slice(&whole[a..b]));
                out.freeze()
            }
        };
        if out.is_empty() {
            Feed::Hold
        } else {
            Feed::Pass(out)
        }
    }

    /// One event (without its blank line): count it, and say whether it may pass.
    fn event(&mut self, event: &[u8]) -> Event {
        let Some(data) = data_of(event) else {
            return Event::Pass;
        };
        if data.as_ref() == b"[DONE]" {
            self.done = true;
            return Event::Pass;
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(&data) else {
            return Event::Pass;
        };
        let before = (self.prompt, self.completion, self.reported);
        let usage = chunk.usage.as_ref().and_then(Usage::counts);
        match usage {
            Some((prompt, completion)) => {
                self.prompt = prompt;
                self.completion = completion;
                self.reported = true;
            }
            None if !self.reported => {
                let generated = chunk.choices.iter().filter(|choice| {
                    choice.delta.as_ref().is_some_and(|d| {
                        has_text(d.content)
                            || has_text(d.reasoning_content)
                            || has_text(d.reasoning)
                            || d.tool_calls.is_some()
                    }) || has_text(choice.text)
                });
                self.completion += generated.count() as u64;
            }
            None => {}
        }
        if self.limit.is_some_and(|limit| self.total() > limit) {
            // Not sent, so not charged: the client is charged what it received.
            (self.prompt, self.completion, self.reported) = before;
            return Event::Cut;
        }
        if self.hide_usage && usage.is_some() && chunk.choices.is_empty() {
            return Event::Drop;
        }
        Event::Pass
    }

    /// The body ended: read a JSON response's `usage` (or estimate it), and hand back the
    /// unfinished tail of an event stream, which is passed on as it is.
    pub fn end(&mut self) -> Option<Bytes> {
        let (frames, bytes) = match &mut self.shape {
            Shape::Json { frames, bytes } => (frames, bytes),
            Shape::Events { carry } => {
                return (!carry.is_empty()).then(|| std::mem::take(carry).freeze());
            }
            Shape::Refused => return None,
        };
        let frames = std::mem::take(frames);
        let length = *bytes;
        let kept = length <= MAX_JSON_BYTES;
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
            // No `usage` (or too big to keep): a quarter of the response's length.
            None => self.completion = estimate(length),
        }
        self.shape = Shape::Refused;
        None
    }
}

enum Event {
    Pass,
    Drop,
    Cut,
}

/// moat's last events of a stream cut at its reservation: an error object as OpenAI-style
/// servers send one mid-stream (the SDKs raise it), then the end marker.
const CUT_EVENTS: &[u8] = b"data: {\"error\":{\"message\":\"the API key's token budget is spent; \
the stream was ended by moat\",\"type\":\"token_budget_exceeded\",\"param\":null,\
\"code\":\"token_budget_exceeded\"}}\n\ndata: [DONE]\n\n";

/// The end of the first event in `buffer` (its blank line excluded) and where the next
/// begins; `None` when no event ends in it. Lines end in LF or CRLF.
fn next_event(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    while let Some(offset) = buffer[at..].iter().position(|&b| b == b'\n') {
        let newline = at + offset;
        match &buffer[newline + 1..] {
            [b'\n', ..] => return Some((newline, newline + 2)),
            [b'\r', b'\n', ..] => return Some((newline, newline + 3)),
            _ => at = newline + 1,
        }
    }
    None
}

/// The `data` of an event: its `data:` lines joined by LF (one space after the colon
/// dropped), or `None` when it has none.
fn data_of(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut lines = event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value));
    let first = lines.next()?;
    match lines.next() {
        None => Some(std::borrow::Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = [first, second].join(&b'\n');
            for line in lines {
                joined.push(b'\n');
                joined.extend_from_slice(line);
            }
            Some(std::borrow::Cow::Owned(joined))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]}}\n\n"
        )
    }

    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n";

    fn pass(feed: Feed) -> Bytes {
        match feed {
            Feed::Pass(bytes) => bytes,
            other => panic!("expected Pass, got {other:?}"),
        }
    }

    #[test]
    fn whole_events_pass_as_the_same_bytes_and_the_usage_event_replaces_the_count() {
        let mut meter = Meter::new(true, true, 10, None, false);
        let frame = Bytes::from(chunk("hel") + &chunk("lo"));
        let passed = pass(meter.feed(frame.clone()));
        assert_eq!(passed.as_ptr(), frame.as_ptr(), "a whole frame was copied");
        assert_eq!((meter.prompt, meter.completion), (10, 2));
        pass(meter.feed(Bytes::from(chunk(""))));
        assert_eq!(meter.completion, 2, "an empty delta is no token");
        pass(meter.feed(Bytes::from(USAGE)));
        assert_eq!(
            (meter.prompt, meter.completion, meter.reported),
            (3, 4, true)
        );
        pass(meter.feed(Bytes::from_static(b"data: [DONE]\n\n")));
        assert_eq!(meter.total(), 7);
    }

    #[test]
    fn an_event_split_across_frames_waits_for_its_end_and_crlf_ends_events_too() {
        let mut meter = Meter::new(true, true, 0, None, false);
        let event = chunk("a").replace("\n\n", "\r\n\r\n");
        let (head, tail) = event.split_at(20);
        assert_eq!(meter.feed(Bytes::from(head.to_owned())), Feed::Hold);
        let second = chunk("b");
        let passed = pass(meter.feed(Bytes::from(format!("{tail}{}", &second[..5]))));
        assert_eq!(passed, event.as_bytes());
        assert_eq!(
            pass(meter.feed(Bytes::from(second[5..].to_owned()))),
            second.as_bytes()
        );
        assert_eq!(meter.completion, 2);
    }

    #[test]
    fn a_stream_is_cut_at_its_limit_with_an_error_event_and_done() {
        let mut meter = Meter::new(true, true, 2, Some(5), false);
        pass(meter.feed(Bytes::from(chunk("a") + &chunk("b"))));
        assert_eq!(meter.total(), 4);
        let Feed::Cut(last) = meter.feed(Bytes::from(chunk("c") + &chunk("d"))) else {
            panic!("the sixth token passed a limit of five");
        };
        let text = String::from_utf8(last.to_vec()).unwrap();
        assert!(text.starts_with(&chunk("c")), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let error: serde_json::Value = serde_json::from_str(
            text.split("\n\n")
                .nth(1)
                .unwrap()
                .strip_prefix("data: ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(error["error"]["code"], "token_budget_exceeded");
        assert!(meter.cut);
        assert_eq!(meter.total(), 5, "charged what was sent");
        assert_eq!(meter.feed(Bytes::from(chunk("e"))), Feed::Hold);
    }

    #[test]
    fn a_usage_event_moat_asked_for_is_not_passed_on() {
        let mut meter = Meter::new(true, true, 1, None, true);
        let frame = chunk("a") + USAGE + "data: [DONE]\n\n";
        let passed = pass(meter.feed(Bytes::from(frame)));
        assert_eq!(passed, (chunk("a") + "data: [DONE]\n\n").as_bytes());
        assert_eq!(meter.total(), 7);
    }

    #[test]
    fn json_reads_usage_at_the_end_or_estimates_and_a_refusal_costs_nothing() {
        let body = r#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#;
        let mut meter = Meter::new(false, true, 40, None, false);
        let (a, b) = body.split_at(30);
        pass(meter.feed(Bytes::from(a.to_owned())));
        pass(meter.feed(Bytes::from(b.to_owned())));
        meter.end();
        assert_eq!((meter.prompt, meter.completion), (5, 9));

        let embedding = r#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let mut meter = Meter::new(false, true, 40, None, false);
        pass(meter.feed(Bytes::from(embedding)));
        meter.end();
        assert_eq!((meter.prompt, meter.completion), (8, 0));

        let mut meter = Meter::new(false, true, 40, None, false);
        pass(meter.feed(Bytes::from_static(b"{\"choices\":[]}")));
        meter.end();
        assert_eq!(
            (meter.prompt, meter.completion, meter.reported),
            (40, 4, false)
        );

        let mut meter = Meter::new(true, false, 40, Some(1), false);
        pass(meter.feed(Bytes::from(chunk("a") + &chunk("b"))));
        meter.end();
        assert_eq!(meter.total(), 0);
    }
}
