//! `responses:` — what moat does with the model's answers: hold them to the spec's declared
//! statuses, content types and schemas (`mode`), and conceal the bodies of the model's 5xx
//! (`conceal_upstream_errors`). The same keys under an operation's long-form
//! `policy.operations` entry override these for that operation, key by key; each
//! operation's result is a [`ResponsePolicy`], resolved once at load.

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesConfig {
    /// `shadow` (a violation is logged and counted, the answer relayed), `enforce` (a
    /// violating answer becomes 502 `upstream_response_invalid`), or `off`. Unset: `shadow`
    /// for an operation whose spec declares a response schema, `off` for the others.
    #[serde(default)]
    pub mode: Option<ResponseMode>,
    /// A 5xx from the model keeps its status but its body becomes moat's problem+json
    /// (`upstream_error`); the original's first bytes go to the log. Default: on in
    /// `enforce`, off otherwise.
    #[serde(default)]
    pub conceal_upstream_errors: Option<bool>,
    /// The largest JSON body checked against its schema, from its `Content-Length` (default
    /// 1 MiB); larger ones, and ones without a length, are relayed as they stream and not
    /// checked.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Members of a checked JSON answer that its schema does not declare are removed before
    /// it is relayed (the body re-serialised only when something was removed).
    #[serde(default)]
    pub strip_undeclared: Option<bool>,
}

const ONE_MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    #[default]
    Off,
    Shadow,
    Enforce,
}

impl ResponseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Off => "off",
            ResponseMode::Shadow => "shadow",
            ResponseMode::Enforce => "enforce",
        }
    }
}

/// What one operation's answers are held to (the default: nothing checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePolicy {
    pub mode: ResponseMode,
    /// No `mode` was set: it follows from whether the spec declares a response schema (what
    /// `moat check` says).
    pub mode_by_default: bool,
    /// A 5xx's body is replaced (see `conceal_upstream_errors`).
    pub conceal: bool,
    pub max_body_bytes: u64,
    pub strip_undeclared: bool,
}

impl Default for ResponsePolicy {
    fn default() -> Self {
        ResponsesConfig::default().resolve(None, false)
    }
}

impl ResponsesConfig {
    /// The policy of an operation whose `policy.operations` entry sets `operation` (if
    /// any) and whose spec declares a response schema (`declares_schema`).
    pub fn resolve(
        &self,
        operation: Option<&ResponsesConfig>,
        declares_schema: bool,
    ) -> ResponsePolicy {
        let own = operation.cloned().unwrap_or_default();
        let set = own.mode.or(self.mode);
        let mode = set.unwrap_or(match declares_schema {
            true => ResponseMode::Shadow,
            false => ResponseMode::Off,
        });
        let conceal = own.conceal_upstream_errors.or(self.conceal_upstream_errors);
        ResponsePolicy {
            mode,
            mode_by_default: set.is_none(),
            conceal: conceal.unwrap_or(mode == ResponseMode::Enforce),
            max_body_bytes: own
                .max_body_bytes
                .or(self.max_body_bytes)
                .unwrap_or(ONE_MIB),
            strip_undeclared: (own.strip_undeclared.or(self.strip_undeclared)).unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_overrides_key_by_key_and_the_mode_follows_the_spec_when_unset() {
        let top = ResponsesConfig {
            strip_undeclared: Some(true),
            ..ResponsesConfig::default()
        };
        let unset = top.resolve(None, true);
        assert_eq!(unset.mode, ResponseMode::Shadow);
        assert!(unset.mode_by_default && !unset.conceal && unset.strip_undeclared);
        assert_eq!(unset.max_body_bytes, ONE_MIB);
        assert_eq!(top.resolve(None, false).mode, ResponseMode::Off);
        let own = ResponsesConfig {
            mode: Some(ResponseMode::Enforce),
            max_body_bytes: Some(10),
            ..ResponsesConfig::default()
        };
        let enforced = top.resolve(Some(&own), false);
        assert_eq!(enforced.mode, ResponseMode::Enforce);
        assert!(!enforced.mode_by_default && enforced.conceal && enforced.strip_undeclared);
        assert_eq!(enforced.max_body_bytes, 10);
        let quiet = ResponsesConfig {
            mode: Some(ResponseMode::Enforce),
            conceal_upstream_errors: Some(false),
            ..ResponsesConfig::default()
        };
        assert!(!quiet.resolve(None, true).conceal);
    }
}
