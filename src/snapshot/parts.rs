//! The parts of a snapshot built from others: the routes (from the spec and the policy),
//! the limits and the LLM rules of the keys (from the key stores), and the one check that
//! every part built — reporting every problem of every part at once.

use std::sync::Arc;

use super::Snapshot;
use crate::admit::BodyBudget;
use crate::auth::Auth;
use crate::config::{Config, Period, TokenBudget};
use crate::forward::Upstream;
use crate::grpc::Services;
use crate::limit::{KeyLimits, RateLimits};
use crate::metrics::Metrics;
use crate::policy::Routes;
use crate::spec::Spec;
use crate::tls::ServerTls;

/// The parts a snapshot is built from directly, each its own result.
pub(super) struct Parts {
    pub upstream: Result<Arc<Upstream>, Vec<String>>,
    pub spec: Result<Option<Arc<Spec>>, Vec<String>>,
    pub grpc: Result<Option<Arc<Services>>, Vec<String>>,
    pub auth: Result<Auth, Vec<String>>,
    pub tls: Result<Option<ServerTls>, Vec<String>>,
}

impl Parts {
    /// The snapshot of `config` from these parts and those built from them, or every
    /// problem of every part at once.
    pub fn assemble(
        self,
        config: Config,
        metrics: &Arc<Metrics>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, Vec<String>> {
        let routes = routes(&config, &self.spec, &self.grpc, &self.auth);
        let limits = limits(&config, &self.auth, previous, metrics);
        let llm = match &self.auth {
            Ok(auth) => crate::llm::Rules::new(llm_rules(auth), &config.policy),
            Err(_) => Err(Vec::new()),
        };
        let Parts {
            upstream,
            spec,
            grpc,
            auth,
            tls,
        } = self;
        match (upstream, both(spec, grpc), auth, routes, (limits, llm), tls) {
            (Ok(upstream), Ok(api), Ok(auth), Ok(routes), (Ok(limits), Ok(llm)), Ok(tls)) => {
                Ok(Snapshot {
                    credentials: auth.credential_locations(),
                    bodies: bodies(&config, previous),
                    config,
                    upstream,
                    spec: api.0,
                    grpc: api.1,
                    auth,
                    routes,
                    limits,
                    llm,
                    tls,
                })
            }
            (upstream, api, auth, routes, (limits, llm), tls) => Err([
                upstream.err(),
                api.err(),
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

/// The API's two definitions (the spec, the gRPC services) together, or the problems of both.
fn both<A, B>(
    spec: Result<A, Vec<String>>,
    grpc: Result<B, Vec<String>>,
) -> Result<(A, B), Vec<String>> {
    match (spec, grpc) {
        (Ok(spec), Ok(grpc)) => Ok((spec, grpc)),
        (spec, grpc) => Err(spec.err().into_iter().chain(grpc.err()).flatten().collect()),
    }
}

/// The room request bodies share: the previous snapshot's while its bound is unchanged, so
/// a reload keeps counting the bodies in flight.
fn bodies(config: &Config, previous: Option<&Snapshot>) -> Arc<BodyBudget> {
    let (bytes, wait) = (
        config.limits.buffered_body_bytes(),
        config.limits.body_buffer_wait,
    );
    match previous {
        Some(previous) if previous.bodies.is(bytes, wait) => previous.bodies.clone(),
        _ => Arc::new(BodyBudget::new(bytes, wait)),
    }
}

/// Each operation's route. Policy problems (a stale operation name) are reported even when
/// a scheme failed.
fn routes(
    config: &Config,
    spec: &Result<Option<Arc<Spec>>, Vec<String>>,
    grpc: &Result<Option<Arc<Services>>, Vec<String>>,
    auth: &Result<Auth, Vec<String>>,
) -> Result<Routes, Vec<String>> {
    let routes = match (spec, grpc) {
        (Ok(spec), Ok(grpc)) => Routes::resolve(config, spec.as_deref(), grpc.as_deref()),
        _ => Err(Vec::new()),
    };
    match (routes, auth) {
        (Ok(routes), Ok(auth)) => match auth.check_routes(&routes) {
            problems if problems.is_empty() => Ok(routes),
            problems => Err(problems),
        },
        (routes, _) => routes,
    }
}

/// The limits of the client and of every key, keeping `previous`'s state where unchanged.
fn limits(
    config: &Config,
    auth: &Result<Auth, Vec<String>>,
    previous: Option<&Snapshot>,
    metrics: &Arc<Metrics>,
) -> Result<RateLimits, Vec<String>> {
    let Ok(auth) = auth else {
        return Err(Vec::new());
    };
    RateLimits::new(
        &config.limits.store,
        config.policy.client_rate_limit.as_ref(),
        &key_limits(auth),
        previous.map(|p| &p.limits),
        Some(metrics),
    )
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
            (limits != KeyLimits::default()).then(|| (record.id.to_string(), limits))
        })
        .collect()
}

/// Every key whose record sets LLM rules: (key id, rules).
fn llm_rules(auth: &Auth) -> Vec<(String, crate::llm::KeyRules)> {
    auth.records()
        .filter_map(|record| Some((record.id.to_string(), crate::llm::KeyRules::of(record)?)))
        .collect()
}
