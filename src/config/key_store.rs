//! Where an `api_key` scheme's records live (`store:`): a file (`store: config/keys.yaml`),
//! or Redis shared by every replica (`store: {redis: {url: …}}`), whose changes each replica
//! is sent rather than polls for.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;
use super::de::duration;

#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    File(PathBuf),
    Redis(RedisKeysConfig),
}

/// A key store in Redis: the same URL, TLS and secret handling as `limits.store.redis`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisKeysConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://`: a secret (`${REDIS_URL}`).
    pub url: Secret,
    /// Names the store's Redis keys and change channel, so stores can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The most a read of the store may wait for Redis (a whole store of 100,000 records
    /// is ~17 MB).
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// How often the whole store is read again even though no change was missed: the
    /// bound on a change written past moat (a hand-made `HSET` that published nothing).
    #[serde(default = "default_full_check", deserialize_with = "duration")]
    pub full_check: Duration,
    /// PEM CA certificates of a `rediss://` server (else the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_key_prefix() -> String {
    "moat:keys:".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_full_check() -> Duration {
    Duration::from_secs(300)
}

impl RedisKeysConfig {
    /// The store at `url` with every other setting at its default (`moat keys --store`).
    pub fn at(url: Secret) -> RedisKeysConfig {
        RedisKeysConfig {
            url,
            key_prefix: default_key_prefix(),
            timeout: default_timeout(),
            full_check: default_full_check(),
            ca_file: None,
        }
    }
}

impl KeySource {
    /// The file, for a file store.
    pub fn file(&self) -> Option<&PathBuf> {
        match self {
            KeySource::File(path) => Some(path),
            KeySource::Redis(_) => None,
        }
    }
}

/// For messages: the path, or the Redis prefix — never the URL, which may hold a password.
impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "{}", path.display()),
            KeySource::Redis(redis) => write!(f, "redis (key_prefix {:?})", redis.key_prefix),
        }
    }
}

/// A path as a string; `{redis: {…}}` as a map.
impl<'de> Deserialize<'de> for KeySource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SourceVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Tagged {
    Redis(RedisKeysConfig),
}

struct SourceVisitor;

impl<'de> serde::de::Visitor<'de> for SourceVisitor {
    type Value = KeySource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key-store file's path, or `redis: {url: …}`")
    }

    fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<KeySource, E> {
        Ok(KeySource::File(PathBuf::from(path)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<KeySource, A::Error> {
        let Tagged::Redis(redis) =
            Tagged::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(KeySource::Redis(redis))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_path_or_a_redis_map() {
        let file: KeySource = serde_saphyr::from_str("config/keys.yaml").unwrap();
        assert_eq!(
            file.file().map(PathBuf::as_path),
            Some(Path::new("config/keys.yaml"))
        );
        let redis: KeySource =
            serde_saphyr::from_str("redis:\n  url: redis://127.0.0.1:6379\n").unwrap();
        let KeySource::Redis(redis) = &redis else {
            panic!("{redis:?}")
        };
        assert_eq!(redis.key_prefix, "moat:keys:");
        assert_eq!(redis.timeout, Duration::from_secs(5));
        let wrong = serde_saphyr::from_str::<KeySource>("redis:\n  uri: x\n").unwrap_err();
        assert!(wrong.to_string().contains("uri"), "{wrong}");
        let other = serde_saphyr::from_str::<KeySource>("vault: {}\n").unwrap_err();
        assert!(other.to_string().contains("vault"), "{other}");
    }
}
