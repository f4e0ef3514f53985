//! `config/moat.yaml` → a checked [`Config`] (design §4). Strict: unknown keys, duplicate
//! keys and bad values are errors naming the file and line. `${VAR}` / `${VAR:-default}` are
//! expanded from the environment inside YAML scalars (after parsing, so a value can never
//! change the document's structure), with the `VAR_FILE` secrets convention as fallback.

mod auth;
mod check;
mod de;
mod env_files;
pub(crate) mod fuzz;
mod grpc;
mod key_store;
mod memory;
mod policy;
mod responses;
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
    EnvConfig, LimitStore, Limits, OnError, OpenApiConfig, Prefetched, RedisStoreConfig,
    RuntimeConfig, TlsConfig, UpstreamConfig, usable_cores,
};

pub use self::env_files::EncryptedEnvSummary;
use self::env_files::read_env_files;
pub use self::grpc::{GrpcConfig, MethodConfig, Protovalidate, UnknownFields};
pub use self::key_store::{KeySource, RedisKeysConfig};
pub use self::responses::{ResponseMode, ResponsePolicy, ResponsesConfig};
use self::vars::{Variables, operation_lines, resolve_variables};
pub use self::vars::{env_or_file, mentions_placeholder, without_placeholders};

use std::collections::HashMap;
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
    /// The model's gRPC services: their methods become operations beside the spec's.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub env: EnvConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The model's answers held to the spec, and its errors concealed.
    #[serde(default)]
    pub responses: ResponsesConfig,
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
            config.warn_about_inert_settings();
        }
        problems.splice(0..0, env_files.problems);
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
        let parsed = serde_saphyr::from_str_with_options(text, yaml_options(properties));
        let mut config: Config = match parsed {
            Ok(config) => config,
            Err(_) if unresolved => return (None, problems),
            Err(error) => {
                problems.push(explained(error.to_string(), text));
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
}

/// The config's YAML: strict booleans, no duplicate keys, `${VAR}`s expanded inside
/// scalars from `properties`.
fn yaml_options(properties: HashMap<String, String>) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default().with_properties(properties);
    // Compose syntax so quoted scalars are expanded too; its "unset means empty" rule
    // never applies because every reference without a default has a value or a problem.
    options.property_syntax = serde_saphyr::PropertySyntax::DockerCompose;
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options
}

/// A parse error, with the typo it most likely is where one can be told.
fn explained(message: String, text: &str) -> String {
    typos::explain(&message, text)
        .or_else(|| typos::suggest(&message))
        .unwrap_or(message)
}

#[cfg(test)]
mod tests;
