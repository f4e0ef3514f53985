//! moat's count of an answer's tokens: the model's own `usage` where a chunk or the JSON
//! answer reports it, else — conservatively — every chunk that carries a token counted at
//! least once, and never fewer tokens than a floor derived from the text's bytes.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// moat's own count of generated text, for an answer that reports no `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Text {
    /// Stream chunks that carried a token (content `""` included: llama.cpp sends one for
    /// each token that does not complete a character yet).
    pub(super) chunks: u64,
    pub(super) ascii: u64,
    pub(super) other: u64,
}

impl Text {
    pub(super) fn add(&mut self, text: &[u8]) {
        let ascii = text.iter().filter(|b| b.is_ascii()).count();
        self.ascii += ascii as u64;
        self.other += (text.len() - ascii) as u64;
    }

    /// The tokens counted: at least one per chunk, and no fewer than a quarter of the ASCII
    /// bytes plus a third of the others (about a token per CJK character), rounded up.
    pub(super) fn tokens(&self) -> u64 {
        self.chunks.max(
            self.ascii
                .div_ceil(4)
                .saturating_add(self.other.div_ceil(3)),
        )
    }
}

#[derive(Deserialize)]
pub(super) struct Chunk<'a> {
    #[serde(default, borrow)]
    pub(super) choices: Vec<Choice<'a>>,
    pub(super) usage: Option<Usage>,
}

#[derive(Deserialize)]
pub(super) struct Choice<'a> {
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
    pub(super) fn count(&self, count: &mut Text) {
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
pub(super) struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
pub(super) struct Whole {
    pub(super) usage: Option<Usage>,
}

impl Usage {
    pub(super) fn counts(&self) -> Option<(u64, u64)> {
        let prompt = self.prompt_tokens.unwrap_or(0);
        let completion = self
            .completion_tokens
            .or_else(|| Some(self.total_tokens?.saturating_sub(prompt)))
            .unwrap_or(0);
        (self.prompt_tokens.is_some() || self.total_tokens.is_some())
            .then_some((prompt, completion))
    }
}
