//! `config/moat.yaml` → a checked [`Config`] (design §4). Strict: unknown keys, duplicate
//! keys and bad values are errors naming the file and line. `${VAR}` / `${VAR:-default}` are
//! expanded from the environment inside YAML scalars (after parsing, so a value can never
//! change the document's structure), with the `VAR_FILE` secrets convention as fallback.

mod auth;
mod de;
mod policy;
mod sections;
mod typos;
mod vars;

pub use self::auth::{
    Alternative, ApiKeyConfig, AuthConfig, JwtConfig, SchemeConfig, Secret, choose_scheme,
};
use self::de::{default_admin_listen, default_drain_timeout, duration, socket_addr, yes};
pub use self::policy::{
    BoundField, BoundFields, LlmSetting, Mode, OperationPolicy, OperationPolicyLong, Period,
    PolicyConfig, Quota, RateLimit, TokenBudget,
};
pub use self::sections::{
    EnvConfig, LimitStore, Limits, OnError, OpenApiConfig, RedisStoreConfig, RuntimeConfig,
    TlsConfig, UpstreamConfig, usable_cores,
};

pub use self::vars::{EncryptedEnvSummary, env_or_file, mentions_placeholder};
use self::vars::{Variables, operation_lines, read_env_files, resolve_variables};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration that failed to load: which file, and every problem found in it.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                writeln!(f, "{} problems", many.len())?;
                for problem in many {
                    writeln!(f, "  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    #[serde(default = "default_admin_listen", deserialize_with = "socket_addr")]
    pub admin_listen: SocketAddr,
    /// TLS on the public listener; absent: plain HTTP (and h2c with prior knowledge).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    pub upstream: UpstreamConfig,
    /// The model's OpenAPI document. Without it moat routes nothing and forwards every path
    /// that passes the frame checks (and says so at start-up).
    #[serde(default)]
    pub openapi: Option<OpenApiConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub env: EnvConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Reload when a watched file changes (SIGHUP always reloads).
    #[serde(default = "yes")]
    pub watch_files: bool,
    /// How the proxy uses the machine's cores (a restart applies a change).
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// How long a SIGTERM waits for in-flight requests before exiting anyway.
    #[serde(default = "default_drain_timeout", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// The `VAR_FILE` files `${VAR}`s were read from: watched like the other inputs, so a
    /// rotated Docker or Kubernetes secret is picked up.
    #[serde(skip)]
    pub secret_files: Vec<PathBuf>,
    /// The format and variable names `env.encrypted_dotenv` held (for `moat check`).
    #[serde(skip)]
    pub encrypted_env: Option<EncryptedEnvSummary>,
}

impl Config {
    /// Reads, expands and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match Self::load_leniently(path) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigError {
                file: path.to_owned(),
                problems,
            }),
        }
    }

    /// [`Config::load`] for `moat check`: see [`Config::parse_leniently`].
    pub fn load_leniently(path: &Path) -> (Option<Config>, Vec<String>) {
        let text = match crate::input::read_to_string(path, crate::input::Kind::Config) {
            Ok(text) => text,
            Err(problem) => return (None, vec![problem]),
        };
        let header = format!("--> {}:", path.display());
        let env_files = match read_env_files(&text) {
            Ok(read) => read,
            Err(problem) => return (None, vec![problem]),
        };
        let lookup = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| env_files.variables.get(name).cloned())
        };
        let (mut config, mut problems) = Self::parse_leniently(&text, &lookup);
        if let Some(config) = &mut config {
            config.encrypted_env = env_files.encrypted;
        }
        problems.splice(0..0, env_files.problems);
        if let Some(inject) = config.as_ref().and_then(|c| c.policy.inject_max_tokens) {
            tracing::warn!(
                "`policy.inject_max_tokens` is now `policy.stream_usage` (read as such: {inject}): \
                 the bound a key admits is always written into LLM requests, and the option \
                 left is whether streams are asked for their usage"
            );
        }
        if let Some(config) = &config
            && config.env.encrypted_dotenv.is_none()
        {
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
        let problems = problems
            .into_iter()
            .map(|p| p.replace("--> <input>:", &header))
            .collect();
        (config, problems)
    }

    /// Parses config text, looking variables up with `env`.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<String>> {
        match Self::parse_leniently(text, env) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(problems),
        }
    }

    /// For `moat check`, which promises every problem at once: unset variables are reported
    /// and stand in as placeholders, so the rest of the config (and the files it names) can
    /// still be checked. The config is `None` when the text does not parse even so; a parse
    /// error that may come from a placeholder is then left out (the unset variable explains it).
    pub fn parse_leniently(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Option<Config>, Vec<String>) {
        let Variables {
            properties,
            secret_files,
            mut problems,
        } = resolve_variables(text, env);
        let unresolved = !problems.is_empty();
        let mut options = serde_saphyr::Options::default().with_properties(properties);
        // Compose syntax so quoted scalars are expanded too; its "unset means empty" rule
        // never applies because every reference without a default has a value or a problem.
        options.property_syntax = serde_saphyr::PropertySyntax::DockerCompose;
        options.strict_booleans = true;
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
        let mut config: Config = match serde_saphyr::from_str_with_options(text, options) {
            Ok(config) => config,
            Err(_) if unresolved => return (None, problems),
            Err(error) => {
                let message = error.to_string();
                problems.push(
                    typos::explain(&message, text)
                        .or_else(|| typos::suggest(&message))
                        .unwrap_or(message),
                );
                return (None, problems);
            }
        };
        if let Err(more) = config.check() {
            problems.extend(more.into_iter().filter(|p| !mentions_placeholder(p)));
        }
        config.secret_files = secret_files;
        config.policy.operation_lines = operation_lines(text);
        (Some(config), problems)
    }

    /// Cross-field rules that serde cannot express; reports all of them at once.
    fn check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            problems.push(format!(
                "`admin_listen` ({}) must differ from `listen`: health and metrics never share \
                 the public port",
                self.admin_listen
            ));
        }
        if let Some(openapi) = &self.openapi {
            match (&openapi.file, &openapi.url) {
                (Some(_), None) => {}
                (None, Some(url)) => {
                    if !url.starts_with("http://") {
                        problems.push(format!(
                            "`openapi.url` ({url}) must be an http:// URL of the model"
                        ));
                    }
                }
                _ => problems.push("`openapi` needs exactly one of `file` and `url`".to_owned()),
            }
        }
        let limits = &self.limits;
        for (name, value) in [
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
        ] {
            if value == 0 {
                problems.push(format!("`{name}` must be greater than 0"));
            }
        }
        for (name, value) in [
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.body_read_timeout", limits.body_read_timeout),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.response_timeout", self.upstream.response_timeout),
            ("upstream.idle_timeout", self.upstream.idle_timeout),
            (
                "upstream.pool_idle_timeout",
                self.upstream.pool_idle_timeout,
            ),
        ] {
            if value.is_zero() {
                problems.push(format!("`{name}` must be longer than 0s"));
            }
        }
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
}

#[cfg(test)]
mod tests;
