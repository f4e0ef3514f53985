//! `auth.schemes`: the verifiers the spec's security schemes bind to, and the secret type
//! their keys and peppers are held in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::de::{duration, one_or_many, optional_duration, secs};

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
    /// Also read the key from `Authorization: Bearer`, as OpenAI-compatible clients send
    /// it. Only a bearer shaped like a moat key (`moat_…`) is taken as a key; any other
    /// bearer is left to a JWT scheme and never hashed.
    #[serde(default)]
    pub bearer: bool,
    /// The key store: a file (see `moat keys`), or `redis: {url: …}` shared by replicas.
    pub store: super::KeySource,
    /// How long a verified key is trusted without re-hashing (dropped on store change).
    #[serde(default = "secs::<300>", deserialize_with = "duration")]
    pub cache_ttl: Duration,
    /// When set, keys fail closed (503 `key_store_stale`) once the store file could not be
    /// re-read for this long (moat re-reads it every quarter of this, and every 30 s
    /// without it), e.g. a Secret mount that went away. Unset: the last good store serves.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_store_age: Option<Duration>,
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
