//! moat: a reverse-proxy security sidecar for machine-learning model servers.
//!
//! A request flows one way through `pipeline::handle`: [`frame`] → route → authenticate →
//! authorize → limit → validate → `forward`; any stage may refuse with a
//! `reject::Rejection`, which is the only place statuses are chosen.
//!
//! Public are only the modules the binary, the integration tests and the benches reach
//! (`cli`, the stages they exercise directly, `config`, `spec`, `status`); the rest is `pub(crate)`,
//! so the compiler reports what nothing uses.

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod admit;
pub mod auth;
pub mod cli;
pub(crate) mod cmd;
pub mod config;
pub(crate) mod connection;
pub(crate) mod fetch;
pub(crate) mod forward;
pub mod frame;
pub mod fuzz;
pub mod grpc;
pub(crate) mod idle;
pub(crate) mod ids;
pub(crate) mod input;
pub(crate) mod limit;
pub(crate) mod llm;
pub(crate) mod metrics;
pub(crate) mod oip;
pub(crate) mod pipeline;
pub(crate) mod policy;
pub(crate) mod redis_client;
pub(crate) mod reject;
pub(crate) mod reload;
pub(crate) mod respond;
pub mod route;
pub(crate) mod secrets;
pub(crate) mod server;
pub(crate) mod snapshot;
pub mod spec;
pub mod status;
pub(crate) mod telemetry;
pub(crate) mod tls;
pub(crate) mod trail;
pub mod validate;
pub(crate) mod watch;
