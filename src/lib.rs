//! moat: a reverse-proxy security sidecar for machine-learning model servers.
//!
//! A request flows one way through [`pipeline::handle`]: [`frame`] → route → authenticate →
//! authorize → limit → validate → [`forward`]; any stage may refuse with a
//! [`reject::Rejection`], which is the only place statuses are chosen.

pub mod access;
pub mod admin;
pub mod admit;
pub mod auth;
pub mod body;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod fetch;
pub mod forward;
pub mod frame;
pub mod idle;
pub mod limit;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod reject;
pub mod reload;
pub mod route;
pub mod secrets;
pub mod server;
pub mod snapshot;
pub mod spec;
pub mod telemetry;
pub mod tls;
pub mod trail;
pub mod validate;
pub mod watch;
