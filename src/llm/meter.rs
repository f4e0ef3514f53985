//! Counting an LLM response's tokens as it streams through, and ending a stream that
//! reaches its reservation.
//!
//! Server-sent events are cut only between events, so a frame is passed on as whole
//! events: a frame that ends on an event boundary (what vLLM, TGI and llama.cpp write, one
//! `data:` event per chunk) goes through as the same `Bytes`, uncopied; the tail of an event
//! split across frames waits for its end. Nothing is ever merged across events or
//! compressed, and the first event leaves as soon as it is read.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

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

/// moat's own count of generated text, for an answer that reports no `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Text {
    /// Stream chunks that carried a token (content `""` included: llama.cpp sends one for
    /// each token that does not complete a character yet).
    chunks: u64,
    ascii: u64,
    other: u64,
}

impl Text {
    fn add(&mut self, text: &[u8]) {
        let ascii = text.iter().filter(|b| b.is_ascii()).count();
        self.ascii += ascii as u64;
        self.other += (text.len() - ascii) as u64;
    }

    /// The tokens counted: at least one per chunk, and no fewer than a quarter of the ASCII
    /// bytes plus a third of the others (about a token per CJK character), rounded up.
    fn tokens(&self) -> u64 {
        self.chunks.max(
            self.ascii
                .div_ceil(4)
                .saturating_add(self.other.div_ceil(3)),
        )
    }
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
    text: Option<Cow<'a, str>>,
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    role: Option<IgnoredAny>,
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
}

impl Choice<'_> {
    /// Adds this choice's token to `count`, if it carries one. A chunk that only opens the
    /// answer (`role`) or closes it (`finish_reason`) with no text carries none.
    fn count(&self, count: &mut Text) {
        let delta = self.delta.as_ref();
        let texts = [
            delta.and_then(|d| d.content.as_deref()),
            delta.and_then(|d| d.reasoning_content.as_deref()),
            delta.and_then(|d| d.reasoning.as_deref()),
            self.text.as_deref(),
        ];
        let tools = delta.and_then(|d| d.tool_calls).map(RawValue::get);
        if texts.iter().all(Option::is_none) && tools.is_none() {
            return;
        }
        let empty = texts.iter().flatten().all(|t| t.is_empty()) && tools.is_none();
        let opens = delta.is_some_and(|d| d.role.is_some());
        if empty && (opens || self.finish_reason.is_some()) {
            return;
        }
        count.chunks += 1;
        for text in texts.into_iter().flatten().chain(tools) {
            count.add(text.as_bytes());
        }
    }
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
        }
    }

    /// Tokens to charge: what the model reported, else moat's count.
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
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
                    out.extend_from_slice(&self.cut_events());
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
        let before = (self.prompt, self.completion, self.reported, self.counted);
        let chunk = serde_json::from_slice::<Chunk<'_>>(&data);
        let usage = chunk
            .as_ref()
            .ok()
            .and_then(|chunk| chunk.usage.as_ref()?.counts());
        match (&chunk, usage) {
            (_, Some((prompt, completion))) => {
                self.prompt = prompt;
                self.completion = completion;
                self.reported = true;
            }
            (_, None) if self.reported => {}
            (Ok(chunk), None) => {
                for choice in &chunk.choices {
                    choice.count(&mut self.counted);
                }
                self.completion = self.counted.tokens();
            }
            // Data moat cannot read as a chunk still reached the client: counted as text.
            (Err(_), None) => {
                self.counted.chunks += 1;
                self.counted.add(&data);
                self.completion = self.counted.tokens();
            }
        }
        if self.over_limit() {
            // Not sent, so not charged: the client is charged what it received.
            (self.prompt, self.completion, self.reported, self.counted) = before;
            return Event::Cut;
        }
        let usage_only = chunk.is_ok_and(|chunk| chunk.choices.is_empty());
        if self.hide_usage && usage.is_some() && usage_only {
            return Event::Drop;
        }
        Event::Pass
    }

    /// moat's last events of a stream cut at its limit: an error object as OpenAI-style
    /// servers send one mid-stream (the SDKs raise it), saying what was reached, then the
    /// end marker.
    fn cut_events(&self) -> Vec<u8> {
        let (code, message) = match self.limit.map(|l| (l.bound, l.completion)) {
            Some((Bound::Budget, _)) | None => (
                "token_budget_exceeded",
                "the API key's token budget is spent; the stream was ended by moat".to_owned(),
            ),
            Some((Bound::Asked | Bound::Cap, tokens)) => (
                "max_tokens_reached",
                format!(
                    "the answer reached the {tokens} completion tokens moat admitted (its \
                     max_tokens) and the model did not stop; the stream was ended by moat"
                ),
            ),
        };
        let error = serde_json::json!({"error": {
            "message": message, "type": code, "param": null, "code": code,
        }});
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(error.to_string().as_bytes());
        out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        out
    }

    /// The body ended: read a JSON response's `usage` (or estimate it), and hand back the
    /// unfinished tail of an event stream, which is passed on as it is.
    pub fn end(&mut self) -> Option<Bytes> {
        let (frames, text) = match &mut self.shape {
            Shape::Json { frames, text } => (frames, *text),
            Shape::Events { carry } => {
                return (!carry.is_empty()).then(|| std::mem::take(carry).freeze());
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

enum Event {
    Pass,
    Drop,
    Cut,
}

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

    fn limit(completion: u64, bound: Bound) -> Option<Limit> {
        Some(Limit { completion, bound })
    }

    #[test]
    fn whole_events_pass_as_the_same_bytes_and_the_usage_event_replaces_the_count() {
        let mut meter = Meter::new(true, true, 10, None, false);
        let frame = Bytes::from(chunk("hel") + &chunk("lo"));
        let passed = pass(meter.feed(frame.clone()));
        assert_eq!(passed.as_ptr(), frame.as_ptr(), "a whole frame was copied");
        assert_eq!((meter.prompt, meter.completion), (10, 2));
        pass(meter.feed(Bytes::from(USAGE)));
        assert_eq!(
            (meter.prompt, meter.completion, meter.reported),
            (3, 4, true)
        );
        pass(meter.feed(Bytes::from_static(b"data: [DONE]\n\n")));
        assert_eq!(meter.total(), 7);
    }

    /// As llama.cpp streams: a chunk per token, `""` for a token that does not complete a
    /// character, no role or finish chunk counted, CRLF line ends, `\u` escapes.
    #[test]
    fn every_token_chunk_counts_even_empty_and_bytes_bound_merged_chunks() {
        let mut meter = Meter::new(true, true, 0, None, false);
        let opening = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\r\n\r\n";
        let closing =
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n";
        let cjk = [chunk(""), chunk(""), chunk("\\u6a21")].concat();
        pass(meter.feed(Bytes::from(format!("{opening}{cjk}{closing}"))));
        assert_eq!(meter.completion, 3, "three byte tokens of one character");

        // A server that merges tokens into one chunk is counted from the bytes: 12 ASCII
        // bytes are at least 3 tokens, 9 bytes of CJK at least 3.
        let mut merged = Meter::new(true, true, 0, None, false);
        pass(merged.feed(Bytes::from(chunk("abcdefghijkl"))));
        assert_eq!(merged.completion, 3);
        pass(merged.feed(Bytes::from(chunk("模型服"))));
        assert_eq!(merged.completion, 6);

        // Completions stream `text`; data moat cannot read as a chunk counts as text too.
        let mut text = Meter::new(true, true, 0, None, false);
        let piece = "data: {\"choices\":[{\"text\":\"\",\"finish_reason\":null}]}\n\n";
        pass(text.feed(Bytes::from(format!(
            "{piece}{piece}data: not json at all\n\n"
        ))));
        assert_eq!(text.completion, 4);
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

    fn error_of(cut: &Bytes) -> serde_json::Value {
        let text = String::from_utf8(cut.to_vec()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let event = text.rsplit("\n\n").nth(2).unwrap();
        serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap()
    }

    #[test]
    fn a_stream_is_cut_at_its_limit_saying_what_was_reached() {
        let mut meter = Meter::new(true, true, 2, limit(3, Bound::Budget), false);
        pass(meter.feed(Bytes::from(chunk("a") + &chunk("b"))));
        assert_eq!(meter.total(), 4);
        let Feed::Cut(last) = meter.feed(Bytes::from(chunk("c") + &chunk("d"))) else {
            panic!("the fourth token passed a limit of three");
        };
        assert!(last.starts_with(chunk("c").as_bytes()));
        assert_eq!(error_of(&last)["error"]["code"], "token_budget_exceeded");
        assert!(meter.cut);
        assert_eq!(meter.total(), 5, "charged what was sent");
        assert_eq!(meter.feed(Bytes::from(chunk("e"))), Feed::Hold);

        let mut capped = Meter::new(true, true, 2, limit(1, Bound::Cap), false);
        let Feed::Cut(last) = capped.feed(Bytes::from(chunk("a") + &chunk("b"))) else {
            panic!("the second token passed a cap of one");
        };
        let error = error_of(&last);
        assert_eq!(error["error"]["code"], "max_tokens_reached");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("max_tokens") && !message.contains("budget"));
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
    fn json_reads_usage_at_the_end_or_counts_bytes_and_a_refusal_costs_nothing() {
        let body = r#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#;
        let mut meter = Meter::new(false, true, 40, limit(8, Bound::Asked), false);
        let (a, b) = body.split_at(30);
        pass(meter.feed(Bytes::from(a.to_owned())));
        pass(meter.feed(Bytes::from(b.to_owned())));
        assert!(!meter.over_limit(), "decided before the end");
        meter.end();
        assert_eq!((meter.prompt, meter.completion), (5, 9));
        assert!(meter.over_limit());

        let embedding = r#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let mut meter = Meter::new(false, true, 40, None, false);
        pass(meter.feed(Bytes::from(embedding)));
        meter.end();
        assert_eq!((meter.prompt, meter.completion), (8, 0));

        let mut meter = Meter::new(false, true, 40, None, false);
        pass(meter.feed(Bytes::from("{\"choices\":[\"模型\"]}")));
        meter.end();
        assert_eq!(
            (meter.prompt, meter.completion, meter.reported),
            (40, 4 + 2, false)
        );

        let mut meter = Meter::new(true, false, 40, limit(1, Bound::Cap), false);
        pass(meter.feed(Bytes::from(chunk("a") + &chunk("b"))));
        meter.end();
        assert_eq!(meter.total(), 0);
    }
}
