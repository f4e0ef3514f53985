//! Everything a request needs, compiled once from the config and held in one immutable
//! [`Snapshot`] behind an `ArcSwap`: a request loads it once and never mixes versions, and a
//! reload swaps in a whole new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::forward::Upstream;
use crate::metrics::Metrics;

pub struct Snapshot {
    pub config: Config,
    pub upstream: Upstream,
}

impl Snapshot {
    /// Loads and compiles the config at `path`; nothing is served from a half-built state.
    pub fn load(path: &Path) -> Result<Snapshot, ConfigError> {
        let config = Config::load(path)?;
        Self::from_config(config).map_err(|problem| ConfigError {
            file: path.to_owned(),
            problems: vec![problem],
        })
    }

    pub fn from_config(config: Config) -> Result<Snapshot, String> {
        let upstream = Upstream::new(&config.upstream)?;
        Ok(Snapshot { config, upstream })
    }
}

/// Process-wide state shared by every connection.
pub struct State {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub config_path: PathBuf,
    /// Set once shutdown begins, so `/readyz` tells the load balancer to stop sending.
    pub draining: AtomicBool,
}

impl State {
    pub fn new(snapshot: Snapshot, config_path: PathBuf) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics: Arc::new(Metrics::new()),
            config_path,
            draining: AtomicBool::new(false),
        }
    }
}
