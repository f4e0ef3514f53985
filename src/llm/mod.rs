//! LLM operations: OpenAI-protocol calls (chat completions, completions, embeddings), as
//! vLLM, TGI, Ollama, llama.cpp and KServe serve them. Requests per second is the wrong unit
//! for them, so on these operations moat also meters tokens:
//!
//! - at admission ([`check_request`], after validation, with the body read): the key's
//!   `models` allowlist (403), its `max_tokens` cap (400), its stream slots (429), and a
//!   reservation in its token budgets of prompt estimate + bound × n (429 when it does not
//!   fit); the bound admitted is written into the request;
//! - on the response ([`MeteredBody`], counted by the [`Meter`]): the tokens as they pass —
//!   the model's own `usage` when it reports one, else moat's conservative count — the
//!   stream cut past its bound, and the reservation settled to what was used when the
//!   response ends.

mod admission;
mod body;
mod grant;
pub(crate) mod meter;
mod request;
mod rewrite;
mod rules;

pub use self::admission::check_request;
pub use self::body::{Metered, MeteredBody};
pub use self::grant::Grant;
pub use self::meter::{Bound, EventCheck, Feed, Limit, MAX_JSON_BYTES, Meter};
pub use self::request::LlmRequest;
pub use self::rules::{KeyRules, Rules};

#[cfg(test)]
mod tests;
