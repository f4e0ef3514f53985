//! Which store `moat keys` edits and which pepper its hashes take: the config's `api_key`
//! scheme, `--store`, or the defaults with the pepper from the environment.

use std::path::Path;

use crate::config::{
    ApiKeyConfig, Config, KeySource, RedisKeysConfig, SchemeConfig, Secret, choose_scheme,
    mentions_placeholder,
};

/// The store `moat keys` works on, and the pepper its hashes take.
#[derive(Debug)]
pub struct Target {
    pub store: KeySource,
    pub pepper: Option<Secret>,
}

/// Where the operator pointed `moat keys`.
#[derive(Debug, Default)]
pub struct Choice<'a> {
    /// `--config`, or `MOAT_CONFIG`: a config that must load.
    pub config: Option<&'a Path>,
    /// `--scheme`: which `api_key` scheme, when the config binds several.
    pub scheme: Option<&'a str>,
    /// `--store` (or `MOAT_KEY_STORE`): this file, whatever the config says.
    pub store: Option<&'a Path>,
}

const DEFAULT_CONFIG: &str = "config/moat.yaml";
const DEFAULT_STORE: &str = "config/keys.yaml";

impl Target {
    /// The scheme's store and pepper from the config. Without a config file (none given
    /// and none at `config/moat.yaml`), `--store` or `config/keys.yaml` with the pepper from
    /// `MOAT_KEY_PEPPER` / `MOAT_KEY_PEPPER_FILE`.
    pub fn resolve(choice: &Choice<'_>) -> Result<Target, String> {
        let config_path = choice.config.unwrap_or(Path::new(DEFAULT_CONFIG));
        if choice.config.is_none() && !config_path.exists() {
            return Target::without_config(choice);
        }
        // Lenient: an unset JWT secret must not stop minting a key; only what the chosen
        // scheme needs has to resolve.
        let (config, problems) = Config::load_leniently(config_path);
        let Some(config) = config else {
            return Target::despite_broken_config(choice, config_path, &problems);
        };
        Target::from_config(&config, choice, config_path, &problems)
    }

    /// No config at the default path and none given: only `--scheme` needs one.
    fn without_config(choice: &Choice<'_>) -> Result<Target, String> {
        if let Some(scheme) = choice.scheme {
            return Err(format!(
                "--scheme {scheme}: no config at {DEFAULT_CONFIG}; give --config"
            ));
        }
        Target::with_env_pepper(choice.store)
    }

    /// A config that does not load is fatal unless the store was named and the config was
    /// only the default one.
    fn despite_broken_config(
        choice: &Choice<'_>,
        config_path: &Path,
        problems: &[String],
    ) -> Result<Target, String> {
        if let (None, Some(store)) = (choice.config, choice.store) {
            // The default config is broken, but the operator named the store itself.
            return Target::with_env_pepper(Some(store));
        }
        Err(format!(
            "{}: {}\n(or give --store PATH to edit a store directly)",
            config_path.display(),
            problems.join("; ")
        ))
    }

    fn from_config(
        config: &Config,
        choice: &Choice<'_>,
        config_path: &Path,
        problems: &[String],
    ) -> Result<Target, String> {
        let Some((name, scheme)) = chosen_scheme(config, choice, config_path)? else {
            // A store the config does not name: the pepper can only come from the environment.
            return Target::with_env_pepper(choice.store);
        };
        if unresolved(scheme) {
            return Err(format!(
                "{}: auth.schemes.{name} uses a variable that is not set: {}",
                config_path.display(),
                problems.join("; ")
            ));
        }
        Ok(Target {
            store: choice.store.map_or_else(|| scheme.store.clone(), source_of),
            pepper: scheme.pepper.clone().filter(|p| !p.expose().is_empty()),
        })
    }

    /// `store` (or the default store), its pepper from the environment.
    fn with_env_pepper(store: Option<&Path>) -> Result<Target, String> {
        Ok(Target {
            store: source_of(store.unwrap_or(Path::new(DEFAULT_STORE))),
            pepper: env_pepper()?,
        })
    }
}

/// The `api_key` scheme `choice` means: for a store named by path, the scheme that reads
/// it, if any; otherwise the scheme `--scheme` names, or the config's only one.
fn chosen_scheme<'c>(
    config: &'c Config,
    choice: &Choice<'_>,
    config_path: &Path,
) -> Result<Option<(&'c str, &'c ApiKeyConfig)>, String> {
    let schemes = api_key_schemes(config);
    match (choice.scheme, choice.store) {
        // A store named by path: the scheme that reads it, if any, gives the pepper.
        (None, Some(store)) => Ok(schemes
            .iter()
            .find(|(_, key)| same_store(&key.store, &source_of(store)))
            .copied()),
        (wanted, _) => choose_scheme(&schemes, wanted, "api_key")
            .map(Some)
            .map_err(|e| {
                format!(
                    "{}: {e} (or give --store PATH to edit a store directly)",
                    config_path.display()
                )
            }),
    }
}

fn api_key_schemes(config: &Config) -> Vec<(&str, &ApiKeyConfig)> {
    config.auth.schemes_of(|scheme| match scheme {
        SchemeConfig::ApiKey(key) => Some(key),
        SchemeConfig::Jwt(_) => None,
    })
}

/// True when the scheme's pepper or store names a variable the lenient load left unset.
fn unresolved(scheme: &ApiKeyConfig) -> bool {
    scheme
        .pepper
        .as_ref()
        .is_some_and(|p| mentions_placeholder(p.expose()))
        || match &scheme.store {
            KeySource::File(path) => mentions_placeholder(&path.to_string_lossy()),
            KeySource::Redis(redis) => mentions_placeholder(redis.url.expose()),
        }
}

/// `--store`: a `redis://`, `rediss://` or `redis+cluster://` URL names a Redis store
/// (default `key_prefix`), anything else a file.
fn source_of(store: &Path) -> KeySource {
    const SCHEMES: [&str; 4] = [
        "redis://",
        "rediss://",
        "redis+cluster://",
        "rediss+cluster://",
    ];
    match store.to_str() {
        Some(url) if SCHEMES.iter().any(|scheme| url.starts_with(scheme)) => {
            KeySource::Redis(RedisKeysConfig::at(Secret::from(url.to_owned())))
        }
        _ => KeySource::File(store.to_owned()),
    }
}

fn same_store(a: &KeySource, b: &KeySource) -> bool {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    match (a, b) {
        (KeySource::File(a), KeySource::File(b)) => absolute(a) == absolute(b),
        (KeySource::Redis(a), KeySource::Redis(b)) => a.url.expose() == b.url.expose(),
        _ => false,
    }
}

/// The pepper from the environment, if set and not empty, read exactly as `serve` expands
/// `${MOAT_KEY_PEPPER}`.
fn env_pepper() -> Result<Option<Secret>, String> {
    let value = crate::config::env_or_file("MOAT_KEY_PEPPER")?;
    Ok(value.filter(|v| !v.is_empty()).map(Secret::from))
}
