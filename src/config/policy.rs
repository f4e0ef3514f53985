//! `policy`: the requirement where the spec declares none, per-operation overrides and
//! the mode they are enforced in.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Alternative, ResponsesConfig};

/// `policy.operations` values: a requirement (a list), or the long form (a map).
#[derive(Debug, Clone)]
pub enum OperationPolicy {
    Short(Vec<Alternative>),
    Long(OperationPolicyLong),
}

/// By the value's shape, not `untagged`: an untagged enum hides the long form's own error
/// (`llm: opeani`) behind "did not match any variant".
impl<'de> Deserialize<'de> for OperationPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = OperationPolicy;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of alternatives, or a map with `security`, `mode`, `llm`")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(OperationPolicy::Short)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(OperationPolicy::Long)
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

/// The long form: any of a requirement, a mode, an LLM profile and `responses:` keys. Without `security` the
/// operation keeps the requirement it would have had (the spec's, else `policy.default`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationPolicyLong {
    #[serde(default)]
    pub security: Option<Vec<Alternative>>,
    pub mode: Option<Mode>,
    /// `openai`: meter the operation as an OpenAI-protocol LLM call; `none`: don't, even on
    /// a path moat would detect. Absent: detected from the path.
    pub llm: Option<LlmSetting>,
    /// The top-level `responses:` keys, for this operation's answers.
    pub responses: Option<ResponsesConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmSetting {
    Openai,
    None,
}

impl OperationPolicy {
    /// The requirement this entry sets, if it sets one.
    pub fn security(&self) -> Option<&[Alternative]> {
        match self {
            OperationPolicy::Short(security) => Some(security),
            OperationPolicy::Long(long) => long.security.as_deref(),
        }
    }

    pub fn llm(&self) -> Option<LlmSetting> {
        match self {
            OperationPolicy::Short(_) => None,
            OperationPolicy::Long(long) => long.llm,
        }
    }

    pub fn responses(&self) -> Option<&ResponsesConfig> {
        match self {
            OperationPolicy::Short(_) => None,
            OperationPolicy::Long(long) => long.responses.as_ref(),
        }
    }

    pub fn mode(&self) -> Option<Mode> {
        match self {
            OperationPolicy::Short(_) => None,
            OperationPolicy::Long(long) => long.mode,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub mode: Mode,
    /// The requirement where the spec declares none (and for every request without a spec).
    pub default: Option<Vec<Alternative>>,
    /// By operationId or `"METHOD /path/template"`.
    pub operations: BTreeMap<String, OperationPolicy>,
    /// Per client address, taken before credentials are checked.
    pub client_rate_limit: Option<RateLimit>,
    /// Accept API keys in a query parameter or cookie, where they leak into access logs,
    /// proxies and browser history. Off: such schemes fail the load.
    pub allow_api_key_in_query_or_cookie: bool,
    /// Keep `Authorization` (and API-key headers) on forwarded requests.
    pub forward_credentials: bool,
    /// LLM operations: the fields the admitted completion bound is written into, in every
    /// request of a key with a cap or a token budget (see `llm`).
    pub max_tokens_fields: BoundFields,
    /// LLM operations: ask a stream for its usage (`stream_options.include_usage`), so it
    /// is settled by the model's own count; the client that did not ask never sees it.
    pub stream_usage: bool,
    /// The name `stream_usage` had when writing the cap in was optional (it no longer is):
    /// read as `stream_usage`, with a warning.
    pub inject_max_tokens: Option<bool>,
    /// The config line of each `operations` key, for problems that name one.
    #[serde(skip)]
    pub operation_lines: BTreeMap<String, usize>,
}

/// A field of an OpenAI-protocol request that bounds its completion, as some server reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundField {
    /// OpenAI's, vLLM's, TGI's, llama.cpp's, Ollama's.
    MaxTokens,
    /// OpenAI's newer name (its reasoning models refuse `max_tokens`); vLLM reads both.
    MaxCompletionTokens,
    /// llama.cpp's own name, which its server reads before `max_tokens`.
    NPredict,
}

impl BoundField {
    /// Every spelling moat reads and overwrites, whichever of them it is told to add.
    pub const ALL: [BoundField; 3] = [
        BoundField::MaxTokens,
        BoundField::MaxCompletionTokens,
        BoundField::NPredict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BoundField::MaxTokens => "max_tokens",
            BoundField::MaxCompletionTokens => "max_completion_tokens",
            BoundField::NPredict => "n_predict",
        }
    }
}

/// `policy.max_tokens_fields`: by default `max_tokens` and `max_completion_tokens`, so the
/// bound holds whichever of the two the model server reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct BoundFields(pub Vec<BoundField>);

impl Default for BoundFields {
    fn default() -> Self {
        BoundFields(vec![BoundField::MaxTokens, BoundField::MaxCompletionTokens])
    }
}

impl PolicyConfig {
    /// `stream_usage`, or its old name.
    pub fn asks_stream_usage(&self) -> bool {
        self.stream_usage || self.inject_max_tokens == Some(true)
    }
}

/// `shadow`: validation failures are logged and counted but the request is forwarded, for
/// rolling out a stricter spec. Framing limits and routing are always enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// A GCRA limit, per client address (`policy.client_rate_limit`) or per key (the key
/// store's `rate_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// A key's quota (the key store's `quota`): at most `requests` per calendar window in UTC —
/// a minute from :00 seconds, an hour from :00, a day from midnight, a month from the 1st —
/// counted when a request passes the limit stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub requests: u64,
    pub per: Period,
}

/// A key's token budget (the key store's `token_budget`, and `tokens_per_minute`): at most
/// `tokens` (prompt and completion) per calendar window in UTC, on LLM operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBudget {
    pub tokens: u64,
    pub per: Period,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Minute,
    Hour,
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}
