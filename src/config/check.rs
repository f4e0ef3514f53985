//! The rules a parsed config must meet beyond its shape — across fields, and values that
//! must not be zero — all reported at once; and the warnings about settings that load but
//! do nothing.

use std::time::Duration;

use super::{Config, OpenApiConfig};

impl Config {
    /// Cross-field rules that serde cannot express; reports all of them at once.
    pub(super) fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        problems.extend(self.shared_admin_port());
        problems.extend(self.openapi.as_ref().and_then(openapi_problem));
        problems.extend(self.grpc.iter().flat_map(|grpc| grpc.problems()));
        for (name, value) in self.counts() {
            if value == 0 {
                problems.push(format!("`{name}` must be greater than 0"));
            }
        }
        for (name, value) in self.timeouts() {
            if value.is_zero() {
                problems.push(format!("`{name}` must be longer than 0s"));
            }
        }
        if let Some(buffered) = self.limits.max_buffered_body_bytes {
            if buffered < self.limits.max_body_bytes {
                problems.push(format!(
                    "`limits.max_buffered_body_bytes` ({buffered}) must be at least \
                     `limits.max_body_bytes` ({}): a body that large could never be read",
                    self.limits.max_body_bytes
                ));
            }
        }
        self.check_held_answers(&mut problems);
        if self.policy.max_tokens_fields.0.is_empty() {
            problems.push(
                "`policy.max_tokens_fields` must name at least one field (max_tokens, \
                 max_completion_tokens, n_predict): the bound moat admits is written there"
                    .to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// An answer is read whole within the room request bodies share: a
    /// `responses.max_body_bytes` past that room would leave every answer between the two
    /// unchecked, always — a setting that says "checked" and does not.
    fn check_held_answers(&self, problems: &mut Vec<String>) {
        let room = self.limits.buffered_body_bytes();
        let operations = self.policy.operations.iter();
        let own = operations.filter_map(|(name, policy)| {
            let bytes = policy.responses()?.max_body_bytes?;
            Some((
                format!("policy.operations.{name}.responses.max_body_bytes"),
                bytes,
            ))
        });
        let top = (self.responses.max_body_bytes)
            .map(|bytes| ("responses.max_body_bytes".to_owned(), bytes));
        for (name, bytes) in top.into_iter().chain(own).filter(|(_, b)| *b > room) {
            problems.push(format!(
                "`{name}` ({bytes}) must be at most `limits.max_buffered_body_bytes` ({room}): \
                 a held answer takes its room there, so one larger could never be checked"
            ));
        }
    }

    fn shared_admin_port(&self) -> Option<String> {
        (self.listen == self.admin_listen && self.listen.port() != 0).then(|| {
            format!(
                "`admin_listen` ({}) must differ from `listen`: health and metrics never share \
                 the public port",
                self.admin_listen
            )
        })
    }

    /// The counts and sizes that must be at least 1, by their names in the config.
    fn counts(&self) -> [(&'static str, u64); 12] {
        let limits = &self.limits;
        [
            ("limits.max_body_bytes", limits.max_body_bytes),
            ("limits.max_header_bytes", limits.max_header_bytes as u64),
            ("limits.max_uri_bytes", limits.max_uri_bytes as u64),
            ("limits.max_json_depth", limits.max_json_depth as u64),
            ("limits.max_string_bytes", limits.max_string_bytes as u64),
            ("limits.max_array_items", limits.max_array_items as u64),
            (
                "limits.max_object_members",
                limits.max_object_members as u64,
            ),
            ("limits.max_tensor_elements", limits.max_tensor_elements),
            ("limits.max_connections", limits.max_connections as u64),
            (
                "limits.max_requests_per_connection",
                limits.max_requests_per_connection,
            ),
            (
                "limits.hash_workers",
                limits.hash_workers.map_or(1, |n| n as u64),
            ),
            (
                "limits.h2_max_concurrent_streams",
                u64::from(limits.h2_max_concurrent_streams),
            ),
        ]
    }

    /// The timeouts that must be longer than zero, by their names in the config.
    fn timeouts(&self) -> [(&'static str, Duration); 7] {
        let (limits, upstream) = (&self.limits, &self.upstream);
        [
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.body_buffer_wait", limits.body_buffer_wait),
            ("limits.body_read_timeout", limits.body_read_timeout),
            ("upstream.connect_timeout", upstream.connect_timeout),
            ("upstream.response_timeout", upstream.response_timeout),
            ("upstream.idle_timeout", upstream.idle_timeout),
            ("upstream.pool_idle_timeout", upstream.pool_idle_timeout),
        ]
    }

    /// Settings that load but do nothing as written: a warning each, never a refusal.
    pub(super) fn warn_about_inert_settings(&self) {
        if let Some(inject) = self.policy.inject_max_tokens {
            tracing::warn!(
                "`policy.inject_max_tokens` is now `policy.stream_usage` (read as such: {inject}): \
                 the bound a key admits is always written into LLM requests, and the option \
                 left is whether streams are asked for their usage"
            );
        }
        if self.env.encrypted_dotenv.is_some() {
            return;
        }
        for var in [
            crate::secrets::IDENTITY_VAR,
            crate::secrets::IDENTITY_FILE_VAR,
        ] {
            if std::env::var_os(var).is_some() {
                tracing::warn!(
                    "{var} is set, but `env.encrypted_dotenv` names no file: the identity \
                     decrypts nothing (add `env: {{encrypted_dotenv: .env.age}}`)"
                );
            }
        }
    }
}

/// `openapi` names its document one way: a file, or an http:// URL of the model.
fn openapi_problem(openapi: &OpenApiConfig) -> Option<String> {
    match (&openapi.file, &openapi.url) {
        (Some(_), None) => None,
        (None, Some(url)) => (!url.starts_with("http://"))
            .then(|| format!("`openapi.url` ({url}) must be an http:// URL of the model")),
        _ => Some("`openapi` needs exactly one of `file` and `url`".to_owned()),
    }
}
