//! Everything a request needs, compiled once from the config and held in one immutable
//! [`Snapshot`] behind an `ArcSwap`: a request loads it once and never mixes versions, and a
//! reload swaps in a whole new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

use crate::admit::Admission;
use crate::auth::{Auth, KeyLocation};
use crate::config::{Config, ConfigError, OpenApiConfig};
use crate::config::{Period, TokenBudget};
use crate::forward::Upstream;
use crate::limit::{KeyLimits, RateLimits};
use crate::metrics::{KeyStoreState, Metrics};
use crate::policy::Routes;
use crate::spec::{self, Spec, source};

pub struct Snapshot {
    pub config: Config,
    /// Shared with the previous snapshot while `upstream` is unchanged: a reload keeps the
    /// pooled connections.
    pub upstream: Arc<Upstream>,
    /// The compiled OpenAPI document; `None` when the config names none. Shared with the
    /// snapshot a key-store-only refresh builds (see [`Snapshot::with_key_stores`]).
    pub spec: Option<Arc<Spec>>,
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
            routes: &self.routes,
            auth: &self.auth,
            limits: &self.limits,
            llm: &self.llm,
            credentials: &self.credentials,
        }
    }

    /// Each API-key scheme's store as this snapshot serves it (`/metrics`, `/readyz`, the
    /// status page).
    pub fn key_stores(&self) -> impl Iterator<Item = KeyStoreState<'_>> {
        self.auth.key_stores().map(|(scheme, store)| KeyStoreState {
            scheme,
            digest: &store.digest,
            keys: store.records.len(),
            age: store.age(),
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
            Some(previous) if previous.config.upstream == config.upstream => {
                Ok(previous.upstream.clone())
            }
            _ => Upstream::new(&config.upstream)
                .map(Arc::new)
                .map_err(|e| vec![e]),
        };
        let spec = config
            .openapi
            .as_ref()
            .map(|openapi| load_spec(openapi).map(Arc::new))
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
        Self::assemble(config, metrics, previous, upstream, spec, auth, tls)
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
        Self::assemble(
            config,
            metrics,
            Some(self),
            Ok(self.upstream.clone()),
            Ok(self.spec.clone()),
            auth,
            Ok(self.tls.clone()),
        )
    }

    /// What every snapshot builds from its parts: the routes, the limits and the LLM rules
    /// of its keys; every problem of every part at once.
    #[allow(clippy::too_many_arguments)] // the parts a snapshot is made of, each its own result
    fn assemble(
        config: Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Snapshot>,
        upstream: Result<Arc<Upstream>, Vec<String>>,
        spec: Result<Option<Arc<Spec>>, Vec<String>>,
        auth: Result<Auth, Vec<String>>,
        tls: Result<Option<crate::tls::ServerTls>, Vec<String>>,
    ) -> Result<Snapshot, Vec<String>> {
        // Policy problems (a stale operation name) are reported even when a scheme failed.
        let routes = match &spec {
            Ok(spec) => Routes::resolve(&config, spec.as_deref()),
            Err(_) => Err(Vec::new()),
        };
        let routes = match (routes, &auth) {
            (Ok(routes), Ok(auth)) => match auth.check_routes(&routes) {
                problems if problems.is_empty() => Ok(routes),
                problems => Err(problems),
            },
            (routes, _) => routes,
        };
        let limits = match &auth {
            Ok(auth) => RateLimits::new(
                &config.limits.store,
                config.policy.client_rate_limit.as_ref(),
                &key_limits(auth),
                previous.map(|p| &p.limits),
                Some(metrics),
            ),
            Err(_) => Err(Vec::new()),
        };
        let llm = match &auth {
            Ok(auth) => crate::llm::Rules::new(llm_rules(auth), &config.policy),
            Err(_) => Err(Vec::new()),
        };
        match (upstream, spec, auth, routes, (limits, llm), tls) {
            (Ok(upstream), Ok(spec), Ok(auth), Ok(routes), (Ok(limits), Ok(llm)), Ok(tls)) => {
                Ok(Snapshot {
                    credentials: auth.credential_locations(),
                    config,
                    upstream,
                    spec,
                    auth,
                    routes,
                    limits,
                    llm,
                    tls,
                })
            }
            (upstream, spec, auth, routes, (limits, llm), tls) => Err([
                upstream.err(),
                spec.err(),
                auth.err(),
                routes.err(),
                limits.err(),
                llm.err(),
                tls.err(),
            ]
            .into_iter()
            .flatten()
            .flatten()
            .collect()),
        }
    }
}

/// Every key whose record sets limits stage 5 enforces: (key id, limits).
fn key_limits(auth: &Auth) -> Vec<(String, KeyLimits)> {
    auth.records()
        .filter_map(|record| {
            let limits = KeyLimits {
                rate: record.rate_limit,
                quota: record.quota,
                tokens: [
                    record.token_budget,
                    record.tokens_per_minute.map(|tokens| TokenBudget {
                        tokens,
                        per: Period::Minute,
                    }),
                ],
                streams: record.max_concurrent_streams,
            };
            (limits != KeyLimits::default()).then(|| (record.id.clone(), limits))
        })
        .collect()
}

/// Every key whose record sets LLM rules: (key id, rules).
fn llm_rules(auth: &Auth) -> Vec<(String, crate::llm::KeyRules)> {
    auth.records()
        .filter_map(|record| Some((record.id.clone(), crate::llm::KeyRules::of(record)?)))
        .collect()
}

fn load_spec(openapi: &OpenApiConfig) -> Result<Spec, Vec<String>> {
    compile_apart(read_spec(openapi)?).map_err(|problems| {
        problems
            .into_iter()
            .map(|problem| format!("openapi: {problem}"))
            .collect()
    })
}

/// The spec's documents as read (or fetched), before any overlay.
pub fn read_spec_documents(openapi: &OpenApiConfig) -> Result<source::Documents, Vec<String>> {
    let docs = match (&openapi.file, &openapi.url) {
        (Some(file), _) => source::from_file(file),
        (None, Some(url)) => {
            crate::fetch::fetch(url, openapi.fetch_timeout, crate::input::Kind::Spec)
                .and_then(|bytes| source::from_bytes(url, &bytes))
        }
        (None, None) => Err("`openapi` needs `file` or `url`".to_owned()),
    };
    docs.map_err(|e| vec![format!("openapi: {e}")])
}

/// The spec's documents as configured: read (or fetched) and with the overlays applied.
pub fn read_spec(openapi: &OpenApiConfig) -> Result<source::Documents, Vec<String>> {
    let mut docs = read_spec_documents(openapi)?;
    // Overlays address the spec's own document; files its `$ref`s name are not targets.
    let root = docs
        .docs
        .get_mut(&docs.root)
        .ok_or_else(|| vec!["openapi: the spec document is missing".to_owned()])?;
    spec::overlay::apply_files(root, &openapi.overlays)
        .map_err(|e| vec![format!("openapi.overlays: {e}")])?;
    Ok(docs)
}

/// Compiles on a thread of its own, so the compiled schemas land in another glibc arena
/// than the parsed documents they were compiled from. Interleaved in one heap, the freed
/// documents left holes smaller than a page among the schemas that no trim can return
/// (openai.yaml: 11 MB resident but free); apart, the documents' arena empties whole.
fn compile_apart(docs: source::Documents) -> Result<Spec, Vec<String>> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("moat-compile".into())
            // As deep as the main thread's: compiling follows nested schemas recursively.
            .stack_size(8 << 20)
            .spawn_scoped(scope, || spec::load(docs))
            .map_err(|e| vec![format!("cannot start the compiling thread: {e}")])?
            .join()
            .unwrap_or_else(|_| Err(vec!["compiling the spec panicked".to_owned()]))
    })
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
