//! `responses:` — what moat does with the model's answers: hold them to the spec's declared
//! statuses and content types (`mode`), and conceal the bodies of the model's 5xx
//! (`conceal_upstream_errors`).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesConfig {
    /// `shadow` (the default: nothing changes, a violation is logged and counted),
    /// `enforce` (a violating answer becomes 502 `upstream_response_invalid`), or `off`.
    #[serde(default)]
    pub mode: ResponseMode,
    /// A 5xx from the model keeps its status but its body becomes moat's problem+json
    /// (`upstream_error`); the original's first bytes go to the log. Default: on in
    /// `enforce`, off otherwise.
    #[serde(default)]
    pub conceal_upstream_errors: Option<bool>,
    /// The largest JSON body checked against its schema, from its `Content-Length`; larger
    /// ones, and ones without a length, are relayed as they stream and not checked.
    #[serde(default = "one_mib")]
    pub max_body_bytes: u64,
    /// Members of a checked JSON answer that its schema does not declare are removed before
    /// it is relayed (the body re-serialised only when something was removed).
    #[serde(default)]
    pub strip_undeclared: bool,
}

fn one_mib() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    Off,
    #[default]
    Shadow,
    Enforce,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            mode: ResponseMode::default(),
            conceal_upstream_errors: None,
            max_body_bytes: one_mib(),
            strip_undeclared: false,
        }
    }
}

impl ResponsesConfig {
    /// Whether a 5xx's body is replaced (see the field).
    pub fn conceals(&self) -> bool {
        self.conceal_upstream_errors
            .unwrap_or(self.mode == ResponseMode::Enforce)
    }
}
