//! The listener, upstream, limits, spec and env sections of the config.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::de::{duration, secs, upstream_url};

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

impl UpstreamConfig {
    /// The upstream URL as it may be shown (logs, `moat check`): without user info, which
    /// can carry a password.
    pub fn shown_url(&self) -> String {
        let scheme = self.url.scheme_str().unwrap_or("http");
        format!("{scheme}://{}{}", self.address(), self.url.path())
    }

    /// `host[:port]` of the upstream, without user info (the status page shows this).
    pub fn address(&self) -> String {
        let host = self.url.host().unwrap_or_default();
        match self.url.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

/// `runtime.threads`: how many proxy threads, each with its own single-threaded runtime and
/// its own `SO_REUSEPORT` listener, so a connection lives on one core from accept to close
/// (no work stealing, no cross-core wakeups; as nginx workers and Pingora's thread-per-core).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Default: [`usable_cores`].
    #[serde(default)]
    pub threads: Option<std::num::NonZeroUsize>,
}

impl RuntimeConfig {
    pub fn threads(&self) -> usize {
        self.threads
            .map_or_else(usable_cores, std::num::NonZeroUsize::get)
    }
}

/// The cores moat may run on: its CPU affinity mask and cgroup quota, as std reads them;
/// the default of every per-core setting (`runtime.threads`, `hash_workers`).
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_json_depth: usize,
    /// Guard rails for what a spec leaves unbounded, on every JSON body: the longest
    /// string (or member name) in bytes, the most items of one array, the most members of
    /// one object. Far above any real predict call; a spec's own bounds are usually tighter.
    pub max_string_bytes: usize,
    pub max_array_items: usize,
    pub max_object_members: usize,
    /// The elements an Open Inference Protocol call's inputs may hold in all (gRPC and its
    /// REST twin, `oip`): the bound on the work one call asks of the model.
    pub max_tensor_elements: u64,
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
    /// Where rate limits and quotas are counted: in this process (`memory`), or in Redis,
    /// shared by every replica.
    pub store: LimitStore,
    /// The most request-body bytes held at once, all requests together (bodies are read
    /// whole to be validated). Default: a quarter of the container's memory limit (cgroup),
    /// else 256 MiB; never less than `max_body_bytes`. See [`Limits::buffered_body_bytes`].
    pub max_buffered_body_bytes: Option<u64>,
    /// How long a request waits for room under `max_buffered_body_bytes` before its 503.
    #[serde(deserialize_with = "duration")]
    pub body_buffer_wait: Duration,
}

impl Limits {
    /// `max_buffered_body_bytes` as set, or derived from the memory this process may use.
    pub fn buffered_body_bytes(&self) -> u64 {
        self.max_buffered_body_bytes.unwrap_or_else(|| {
            let derived = super::memory::limit().map_or(256 * 1024 * 1024, |bytes| bytes / 4);
            derived.max(self.max_body_bytes)
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitStore {
    #[default]
    Memory,
    Redis(RedisStoreConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS: a secret (it may
    /// carry a password), so write `${REDIS_URL}` and set it, or `REDIS_URL_FILE`.
    pub url: super::Secret,
    /// Prepended to every key moat writes, so deployments can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The most one check may wait for Redis (connecting included) before `on_error`.
    #[serde(default = "default_redis_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnError,
    /// PEM CA certificates that sign a `rediss://` server's certificate, instead of the
    /// system's roots (a private CA inside the cluster).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_key_prefix() -> String {
    "moat:".to_owned()
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}

/// What a request gets when Redis does not answer within `timeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// 503 `limit_store_unavailable`: no request passes a limit nobody could count.
    #[default]
    Deny,
    /// Forwarded uncounted (and counted in `moat_limit_decisions_total`).
    Allow,
    /// This process's own limiter decides, as with `store: memory`.
    Local,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Deny => "deny",
            OnError::Allow => "allow",
            OnError::Local => "local",
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
            max_json_depth: 64,
            max_string_bytes: 8 * 1024 * 1024,
            max_array_items: 1_000_000,
            max_object_members: 10_000,
            max_tensor_elements: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            h2_max_concurrent_streams: 100,
            max_requests_per_connection: 1000,
            hash_workers: None,
            store: LimitStore::Memory,
            max_buffered_body_bytes: None,
            body_buffer_wait: Duration::from_millis(250),
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
    /// OpenAPI Overlay files (1.0 or 1.1) applied in order to the spec before it is
    /// compiled, to tighten a generated spec without editing it (relative paths as `file`'s).
    #[serde(default)]
    pub overlays: Vec<PathBuf>,
    #[serde(default)]
    pub reject_unknown_query: bool,
    #[serde(default = "secs::<60>", deserialize_with = "duration")]
    pub fetch_timeout: Duration,
    /// The document at `url`, already fetched (or read from `moat check`'s cache): used
    /// instead of fetching it again. Never in the config file.
    #[serde(skip)]
    pub prefetched: Option<Prefetched>,
}

/// A fetched spec's bytes, shared rather than copied with the config.
#[derive(Clone)]
pub struct Prefetched(pub std::sync::Arc<Vec<u8>>);

impl std::fmt::Debug for Prefetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prefetched({} bytes)", self.0.len())
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// A `.env` file whose variables fill `${VAR}`s the environment does not set (the real
    /// environment wins). A `$` in a value must be single-quoted: substitution is refused.
    pub dotenv: Option<PathBuf>,
    /// An encrypted dotenv file — moat's age file, SOPS dotenv or dotenvx, told apart by
    /// content — decrypted in memory only.
    pub encrypted_dotenv: Option<PathBuf>,
    /// dotenvx's `.env.keys` file, for a dotenvx `encrypted_dotenv` when
    /// `DOTENV_PRIVATE_KEY[_ENV]` is not in the environment.
    pub dotenv_keys: Option<PathBuf>,
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
