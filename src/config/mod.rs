//! `config/moat.yaml` → a checked [`Config`] (design §4). Strict: unknown keys, duplicate
//! keys and bad values are errors naming the file and line. `${VAR}` / `${VAR:-default}` are
//! expanded from the environment inside YAML scalars (after parsing, so a value can never
//! change the document's structure), with the `VAR_FILE` secrets convention as fallback.

mod typos;
mod vars;

use self::vars::{Variables, operation_lines, read_env_files, resolve_variables};
pub use self::vars::{env_or_file, mentions_placeholder};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

pub use crate::auth::keystore::RateLimit;
use serde::{Deserialize, Deserializer};

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
    /// How long a SIGTERM waits for in-flight requests before exiting anyway.
    #[serde(default = "default_drain_timeout", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// The `VAR_FILE` files `${VAR}`s were read from: watched like the other inputs, so a
    /// rotated Docker or Kubernetes secret is picked up.
    #[serde(skip)]
    pub secret_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, every client must present a certificate they signed.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(deserialize_with = "upstream_url")]
    pub url: Uri,
    #[serde(default = "secs::<2>", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Until the upstream's response headers arrive.
    #[serde(default = "secs::<60>", deserialize_with = "duration")]
    pub response_timeout: Duration,
    /// Between two chunks of a streamed response body.
    #[serde(default = "secs::<300>", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Below uvicorn's 5 s keep-alive, so a pooled connection is dropped by moat before the
    /// model closes it under a request in flight.
    #[serde(default = "secs::<4>", deserialize_with = "duration")]
    pub pool_idle_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_json_depth: usize,
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub h2_max_concurrent_streams: u32,
    /// Requests (HTTP/1) or streams (HTTP/2) one connection may carry before moat closes
    /// it gracefully, as nginx's `keepalive_requests`.
    pub max_requests_per_connection: u64,
    /// Concurrent argon2id verifications (19 MiB each); default: one per core moat sees.
    /// Set it from the container's CPU and memory limits.
    pub hash_workers: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_json_depth: 64,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            h2_max_concurrent_streams: 100,
            max_requests_per_connection: 1000,
            hash_workers: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiConfig {
    /// A JSON or YAML file (relative paths are relative to the working directory).
    pub file: Option<PathBuf>,
    /// Fetched from the model at start, retried until it answers or `fetch_timeout` passes.
    pub url: Option<String>,
    #[serde(default)]
    pub reject_unknown_query: bool,
    #[serde(default = "secs::<60>", deserialize_with = "duration")]
    pub fetch_timeout: Duration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// A `.env` file whose variables fill `${VAR}`s the environment does not set (the real
    /// environment wins). A `$` in a value must be single-quoted: substitution is refused.
    pub dotenv: Option<PathBuf>,
    /// An age-encrypted dotenv file, decrypted in memory with the identity in
    /// `MOAT_AGE_IDENTITY` or `MOAT_AGE_IDENTITY_FILE`.
    pub encrypted_dotenv: Option<PathBuf>,
}

/// A security requirement alternative: scheme name → required scopes (all must pass).
pub type Alternative = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Verifiers by the names the spec's `security` and the policy use.
    #[serde(default)]
    pub schemes: BTreeMap<String, SchemeConfig>,
}

impl AuthConfig {
    /// The schemes of one kind (`of_kind` picks `type: jwt` or `type: api_key` ones).
    pub fn schemes_of<'a, T>(
        &'a self,
        of_kind: impl Fn(&'a SchemeConfig) -> Option<&'a T>,
    ) -> Vec<(&'a str, &'a T)> {
        self.schemes
            .iter()
            .filter_map(|(name, scheme)| of_kind(scheme).map(|s| (name.as_str(), s)))
            .collect()
    }
}

/// The scheme a command works on (`moat keys`, `moat token`): `wanted` by name, else the
/// only one of its kind; the errors name the schemes there are.
pub fn choose_scheme<'a, T>(
    schemes: &[(&'a str, &'a T)],
    wanted: Option<&str>,
    kind: &str,
) -> Result<(&'a str, &'a T), String> {
    let names = || {
        let names: Vec<&str> = schemes.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    };
    match (wanted, schemes) {
        (Some(wanted), _) => schemes
            .iter()
            .find(|(name, _)| *name == wanted)
            .copied()
            .ok_or_else(|| {
                format!(
                    "no `type: {kind}` scheme `{wanted}` ({kind} schemes: {})",
                    names()
                )
            }),
        (None, [one]) => Ok(*one),
        (None, []) => Err(format!("the config binds no `type: {kind}` scheme")),
        (None, _) => Err(format!(
            "several {kind} schemes ({}); choose one with --scheme NAME",
            names()
        )),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SchemeConfig {
    Jwt(JwtConfig),
    ApiKey(ApiKeyConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    #[serde(default = "default_key_header")]
    pub header: String,
    /// Read the key from this query parameter instead of the header (needs
    /// `policy.allow_api_key_in_query_or_cookie`).
    pub query: Option<String>,
    /// Read the key from this cookie instead of the header (same condition).
    pub cookie: Option<String>,
    /// The key store file (see `moat keys`).
    pub store: PathBuf,
    /// How long a verified key is trusted without re-hashing (dropped on store change).
    #[serde(default = "secs::<300>", deserialize_with = "duration")]
    pub cache_ttl: Duration,
    /// Mixed into every hash as argon2's secret input; an empty value means none.
    pub pepper: Option<Secret>,
}

fn default_key_header() -> String {
    "X-API-Key".to_owned()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The only accepted `iss` (a string, compared exactly).
    pub issuer: String,
    /// `aud` must be, or contain, one of these.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// The allowlist; the token's `alg` is never trusted beyond it.
    pub algorithms: Vec<String>,
    pub jwks_file: Option<PathBuf>,
    /// Fetched at start (retried up to 30 s), refreshed every `jwks_refresh`, and when a
    /// token names an unknown `kid` (at most every `jwks_min_refresh`); the last good set is
    /// kept when a fetch fails.
    pub jwks_url: Option<String>,
    #[serde(default = "secs::<300>", deserialize_with = "duration")]
    pub jwks_refresh: Duration,
    /// The least time between two fetches, however many unknown `kid`s arrive.
    #[serde(default = "secs::<30>", deserialize_with = "duration")]
    pub jwks_min_refresh: Duration,
    pub public_key_file: Option<PathBuf>,
    /// HS* only; at least 32 bytes.
    pub secret: Option<Secret>,
    #[serde(default = "secs::<30>", deserialize_with = "duration")]
    pub leeway: Duration,
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
}

fn default_scope_claim() -> String {
    "scope".to_owned()
}

/// A secret value from the config: never printed, not even by `Debug`, and wiped from
/// memory when dropped.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value.into())
    }
}

/// Constant-time, so comparing configs across a reload says nothing through timing.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// `policy.operations` values: a requirement, or the long form with a per-operation mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OperationPolicy {
    Short(Vec<Alternative>),
    Long(OperationPolicyLong),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationPolicyLong {
    pub security: Vec<Alternative>,
    pub mode: Option<Mode>,
}

impl OperationPolicy {
    pub fn security(&self) -> &[Alternative] {
        match self {
            OperationPolicy::Short(security) => security,
            OperationPolicy::Long(long) => &long.security,
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
    /// The config line of each `operations` key, for problems that name one.
    #[serde(skip)]
    pub operation_lines: BTreeMap<String, usize>,
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

fn yes() -> bool {
    true
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write it like `30s`, `5m` or `250ms`"
        ))
    })
}

fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not a listen address; write IP:PORT, e.g. `0.0.0.0:8080` or `[::1]:8080`"
        ))
    })
}

fn upstream_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uri, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_upstream_url(&text).map_err(serde::de::Error::custom)
}

fn parse_upstream_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "upstream `{text}` must be an http:// URL: the model runs beside moat and TLS to it \
             is not supported"
        ));
    }
    if uri
        .authority()
        .is_none_or(|a| a.port_u16().is_none() && a.host().is_empty())
    {
        return Err(format!("upstream `{text}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("upstream `{text}` must not have a query"));
    }
    Ok(uri)
}

impl UpstreamConfig {
    /// True when the upstream is on this host, where a sidecar's model belongs: anywhere
    /// else its port may be reachable around moat.
    pub fn is_loopback(&self) -> bool {
        let host = self.url.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
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
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => return (None, vec![format!("cannot read the file: {error}")]),
        };
        let header = format!("--> {}:", path.display());
        let dotenv = match read_env_files(&text) {
            Ok(dotenv) => dotenv,
            Err(problem) => return (None, vec![problem]),
        };
        let lookup = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| dotenv.get(name).cloned())
        };
        let (config, problems) = Self::parse_leniently(&text, &lookup);
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
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests;
