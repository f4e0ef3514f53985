//! Server-sent events as the meter reads them: one frame's whole events counted, each passed
//! on, left out (the usage event the client did not ask for) or the cut made before it; the
//! unfinished tail of an event kept for the next frame.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use super::count::Chunk;
use super::{Bound, Feed, Meter, Shape};

impl Meter {
    /// Counts the whole events at the start of `buffer`; keeps its unfinished tail for the
    /// next frame.
    pub(super) fn events(&mut self, buffer: &mut Bytes) -> Feed {
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
                Event::Cut => return self.cut_at(buffer, dropped.as_deref(), start),
            }
            end = stop;
        }
        self.keep_tail(buffer.split_off(end));
        match kept(buffer, dropped.as_deref(), end) {
            out if out.is_empty() => Feed::Hold,
            out => Feed::Pass(out),
        }
    }

    /// The cut before the event at `start`: what passed before it, then moat's last events.
    fn cut_at(&mut self, buffer: &Bytes, dropped: Option<&[(usize, usize)]>, start: usize) -> Feed {
        self.cut = true;
        let mut out = BytesMut::from(&kept(buffer, dropped, start)[..]);
        out.extend_from_slice(&self.cut_events());
        Feed::Cut(out.freeze())
    }

    /// The unfinished event at the end of a frame waits for the next one.
    fn keep_tail(&mut self, tail: Bytes) {
        if let Shape::Events { carry } = &mut self.shape
            && !tail.is_empty()
        {
            carry.extend_from_slice(&tail);
        }
    }

    /// One event (without its blank line): count it, and say whether it may pass.
    fn event(&mut self, event: &[u8]) -> Event {
        let Some(data) = data_of(event) else {
            return Event::Pass;
        };
        // Held to its schema even after `[DONE]`: a server that goes on writing does not
        // walk around the check.
        if self.breaks_schema(&data) {
            return Event::Cut;
        }
        // After `[DONE]` nothing more is counted — also when it arrived in the same frame as
        // the events after it (the `sse` fuzz target found the count depending on where
        // the upstream's frames were cut).
        if self.done {
            return Event::Pass;
        }
        if data.as_ref() == b"[DONE]" {
            self.done = true;
            return Event::Pass;
        }
        let before = (self.prompt, self.completion, self.reported, self.counted);
        let chunk = serde_json::from_slice::<Chunk<'_>>(&data).ok();
        let usage = chunk
            .as_ref()
            .and_then(|chunk| chunk.usage.as_ref()?.counts());
        self.count(chunk.as_ref(), usage, &data);
        if self.over_limit() {
            // Not sent, so not charged: the client is charged what it received.
            (self.prompt, self.completion, self.reported, self.counted) = before;
            return Event::Cut;
        }
        let usage_only = chunk.is_some_and(|chunk| chunk.choices.is_empty());
        if self.hide_usage && usage.is_some() && usage_only {
            return Event::Drop;
        }
        Event::Pass
    }

    /// Whether the event's `data` breaks the schema and the stream is to end before it
    /// (`enforce`); a violation is flagged (and counted) in every mode.
    pub(super) fn breaks_schema(&mut self, data: &[u8]) -> bool {
        let Some(check) = &self.check else {
            return false;
        };
        let Some(reason) = check.violation(data) else {
            return false;
        };
        self.invalid_event = true;
        if check.enforce {
            self.invalid = Some(reason);
        }
        check.enforce
    }

    /// Counts one event: its `usage` replaces moat's count; without one, each choice that
    /// carries a token counts; data moat cannot read as a chunk still reached the client, and
    /// counts as text.
    fn count(&mut self, chunk: Option<&Chunk<'_>>, usage: Option<(u64, u64)>, data: &[u8]) {
        match (chunk, usage) {
            (_, Some((prompt, completion))) => {
                self.prompt = prompt;
                self.completion = completion;
                self.reported = true;
                return;
            }
            (_, None) if self.reported => return,
            (Some(chunk), None) => {
                for choice in &chunk.choices {
                    choice.count(&mut self.counted);
                }
            }
            (None, None) => {
                self.counted.chunks += 1;
                self.counted.add(data);
            }
        }
        self.completion = self.counted.tokens();
    }

    /// moat's last events of a stream cut at its limit (or at an event that does not match
    /// its schema): an error object as OpenAI-style
    /// servers send one mid-stream (the SDKs raise it), saying what was reached, then the
    /// end marker.
    pub(super) fn cut_events(&self) -> Vec<u8> {
        let (code, message) = match self.limit.map(|l| (l.bound, l.completion)) {
            _ if self.invalid.is_some() => (
                "upstream_response_invalid",
                format!(
                    "an event of the model's stream does not match its API definition ({}); \
                     the stream was ended by moat",
                    self.invalid.as_deref().unwrap_or_default()
                ),
            ),
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
}

/// The bytes of `buffer` before `end` to pass on: all of them (the same `Bytes`, uncopied),
/// or the ranges kept when an event was left out.
fn kept(buffer: &Bytes, dropped: Option<&[(usize, usize)]>, end: usize) -> Bytes {
    let Some(ranges) = dropped else {
        return buffer.slice(..end);
    };
    let mut out = BytesMut::new();
    for &(start, stop) in ranges.iter().filter(|(start, _)| *start < end) {
        out.extend_from_slice(&buffer[start..stop.min(end)]);
    }
    out.freeze()
}

pub(super) enum Event {
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
pub(super) fn data_of(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut lines = event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter_map(|line| line.strip_prefix(b"data:"))
        .map(|value| value.strip_prefix(b" ").unwrap_or(value));
    let first = lines.next()?;
    match lines.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut joined = [first, second].join(&b'\n');
            for line in lines {
                joined.push(b'\n');
                joined.extend_from_slice(line);
            }
            Some(Cow::Owned(joined))
        }
    }
}
