//! Everything a request needs, compiled once from the config and held in one immutable
//! [`Snapshot`] behind an `ArcSwap`: a request loads it once and never mixes versions, and a
//! reload swaps in a whole new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

mod parts;
mod spec;

use self::parts::Parts;
pub use self::spec::{read_spec, read_spec_documents};
use crate::admit::Admission;
use crate::auth::{Auth, KeyLocation};
use crate::config::{Config, ConfigError};
use crate::forward::Upstream;
use crate::grpc::Services;
use crate::limit::RateLimits;
use crate::metrics::{KeyStoreState, Metrics};
use crate::policy::Routes;
use crate::spec::Spec;

pub struct Snapshot {
    pub config: Config,
    /// Shared with the previous snapshot while `upstream` is unchanged: a reload keeps the
    /// pooled connections.
    pub upstream: Arc<Upstream>,
    /// The compiled OpenAPI document; `None` when the config names none. Shared with the
    /// snapshot a key-store-only refresh builds (see [`Snapshot::with_key_stores`]).
    pub spec: Option<Arc<Spec>>,
    /// The model's gRPC services; `None` when the config names none.
    pub grpc: Option<Arc<Services>>,
    pub auth: Auth,
    /// Each operation's requirement and mode (and the one without a spec).
    pub routes: Routes,
    /// Stage 5: per-client and per-key rate limits and quotas, in memory or Redis; their
    /// state is shared with the previous snapshot for every limit whose definition is
    /// unchanged.
    pub limits: RateLimits,
    /// The keys' rules on LLM operations (`models`, `max_tokens`).
    pub llm: crate::llm::Rules,
    /// Where API keys travel, to strip them before forwarding.
    pub credentials: Vec<KeyLocation>,
    /// The public listener's TLS config, rebuilt with each snapshot so new certificates
    /// reach new connections.
    pub tls: Option<crate::tls::ServerTls>,
    /// The room request bodies share (`limits.max_buffered_body_bytes`), carried over a
    /// reload that keeps its bound.
    pub bodies: Arc<crate::admit::BodyBudget>,
}

/// Hands the memory a load freed (the raw spec documents and their parse trees: tens of MB
/// for a large spec) back to the kernel. glibc keeps freed pages of its heaps mapped, so
/// without this the peak of a load stays resident for the life of the process (openai.yaml:
/// 58 MB → 44 MB). The trim takes the allocator's locks for a few milliseconds, once per load.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions; it only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Snapshot {
    /// What admission reads of this snapshot (see [`Admission`]).
    pub fn admission(&self) -> Admission<'_> {
        Admission {
            config: &self.config,
            spec: self.spec.as_deref(),
            grpc: self.grpc.as_deref(),
            routes: &self.routes,
            auth: &self.auth,
            limits: &self.limits,
            llm: &self.llm,
            credentials: &self.credentials,
            bodies: &self.bodies,
        }
    }

    /// Each API-key scheme's store as this snapshot serves it (`/metrics`, `/readyz`, the
    /// status page).
    pub fn key_stores(&self) -> impl Iterator<Item = KeyStoreState<'_>> {
        self.auth.key_stores().map(|(scheme, key)| KeyStoreState {
            scheme,
            digest: &key.store().digest,
            keys: key.store().records.len(),
            age: key.store_age(),
            redis: key.live().map(|live| crate::metrics::RedisStoreState {
                version: live.version(),
                synced: live.synced(),
                last_lag: live.last_lag(),
            }),
        })
    }

    /// Loads and compiles the config at `path`; nothing is served from a half-built state.
    /// On a reload, `previous` is the serving snapshot, whose state carries over where the
    /// new config defines the same thing: the upstream pool, verified keys and tokens,
    /// rate-limit buckets.
    pub fn load(
        path: &Path,
        metrics: &Arc<Metrics>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        let config = Config::load(path)?;
        let loaded = Self::from_config(config, metrics, previous);
        return_freed_memory();
        loaded.map_err(|problems| ConfigError {
            file: path.to_owned(),
            problems,
        })
    }

    /// Builds every part and reports the problems of all of them at once (`moat check`
    /// promises every problem, not the first): schemes are still checked when the spec
    /// they bind to failed.
    pub fn from_config(
        config: Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, Vec<String>> {
        let upstream = match previous {
            Some(previous)
                if previous.config.upstream == config.upstream
                    && previous.config.grpc == config.grpc =>
            {
                Ok(previous.upstream.clone())
            }
            _ => Upstream::new(&config.upstream, config.grpc.as_ref())
                .map(Arc::new)
                .map_err(|e| vec![e]),
        };
        let spec = config
            .openapi
            .as_ref()
            .map(|openapi| spec::load_spec(openapi).map(Arc::new))
            .transpose();
        let grpc = config
            .grpc
            .as_ref()
            .map(|grpc| crate::grpc::load(grpc).map(Arc::new))
            .transpose();
        let auth = match &spec {
            Ok(spec) => Auth::load(&config, spec.as_deref(), metrics, previous.map(|p| &p.auth)),
            Err(_) => Err(Auth::check_schemes(&config, metrics)),
        };
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose();
        let parts = Parts {
            upstream,
            spec,
            grpc,
            auth,
            tls,
        };
        parts.assemble(config, metrics, previous)
    }

    /// The serving snapshot with its key stores read again and nothing else — the config,
    /// spec, JWT keys and TLS files stay as they are. A reload that fails because some other
    /// input is broken (an env file swapped for a FIFO, a spec mid-edit) falls back to this,
    /// so a revocation is never held up by an unrelated file.
    pub fn with_key_stores(&self, metrics: &Arc<Metrics>) -> Result<Snapshot, Vec<String>> {
        let config = self.config.clone();
        let auth = self
            .auth
            .with_key_stores(&config, self.spec.as_deref(), metrics);
        let parts = Parts {
            upstream: Ok(self.upstream.clone()),
            spec: Ok(self.spec.clone()),
            grpc: Ok(self.grpc.clone()),
            auth,
            tls: Ok(self.tls.clone()),
        };
        parts.assemble(config, metrics, Some(self))
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
    pub fn new(snapshot: Snapshot, config_path: PathBuf, metrics: Arc<Metrics>) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            config_path,
            draining: AtomicBool::new(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str, previous: Option<&Snapshot>) -> Snapshot {
        let config = Config::parse(text, &|_| None).expect("a valid config");
        Snapshot::from_config(config, &Arc::new(Metrics::new()), previous).expect("loads")
    }

    #[test]
    fn a_reload_keeps_the_upstream_pool_while_upstream_is_unchanged() {
        let base = "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:8000\n";
        let serving = snapshot(base, None);
        let policy_edit = snapshot(&format!("{base}drain_timeout: 5s\n"), Some(&serving));
        assert!(Arc::ptr_eq(&policy_edit.upstream, &serving.upstream));
        let new_timeout = snapshot(
            &base.replace("8000\n", "8000\n  response_timeout: 5s\n"),
            Some(&policy_edit),
        );
        assert!(!Arc::ptr_eq(&new_timeout.upstream, &serving.upstream));
    }
}
