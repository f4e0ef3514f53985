//! `grpc.health.v1.Health/Check`, answered by moat itself when the model's definition does
//! not declare the health service (MLServer and KServe do not serve it): Kubernetes' gRPC
//! probes and load balancers then have a check on the gRPC port, public unless the policy
//! names it. It says that moat is serving, and knows every service it routes
//! (`NOT_FOUND` for any other name) — the model's own readiness is its `ServerReady` and
//! `ModelReady` methods. `Watch` is not offered: a stream that never changes is no watch.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use prost::Message as _;

use super::Services;
use crate::reject::GrpcCode;
use crate::spec::{Operation, Params, Rpc};

pub const SERVICE: &str = "grpc.health.v1.Health";

/// The path of the one method moat answers.
pub const CHECK: &str = "/grpc.health.v1.Health/Check";

/// The health check as an operation: public (an empty requirement), answered by moat.
pub(super) fn operation() -> Operation {
    Operation {
        id: Arc::from(&CHECK[1..]),
        method: Method::POST,
        template: CHECK.to_owned(),
        params: Params::default(),
        body: None,
        security: Some(Vec::new()),
        responses: None,
        rpc: Some(Rpc {
            client_streaming: false,
            server_streaming: false,
            answered_by_moat: true,
            input: None,
            allow_unknown_fields: false,
            administrative: false,
            rules: None,
        }),
    }
}

/// `HealthCheckRequest` (grpc/health/v1/health.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `HealthCheckResponse`; `status` 1 is SERVING.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

const SERVING: i32 = 1;

/// The check's answer: SERVING with its message, or `NOT_FOUND` without one for a service
/// moat does not route (health.proto's rule for `Check`).
#[derive(Debug, PartialEq, Eq)]
pub struct HealthAnswer {
    /// The response message, framed for gRPC; empty with `NOT_FOUND`.
    pub message: Bytes,
    pub status: GrpcCode,
}

/// Answers the check in `body`: the request's one message, already framed and bounded
/// by `framing`.
pub fn answer(body: &[u8], services: &Services) -> HealthAnswer {
    match serving(body, services) {
        Some(message) => HealthAnswer {
            message,
            status: GrpcCode::Ok,
        },
        None => HealthAnswer {
            message: Bytes::new(),
            status: GrpcCode::NotFound,
        },
    }
}

/// The SERVING message, or `None` when the request names a service moat does not route.
fn serving(body: &[u8], services: &Services) -> Option<Bytes> {
    let message = body.get(5..).unwrap_or_default();
    // A message that does not decode names no service moat knows.
    let request = HealthCheckRequest::decode(message).ok()?;
    let known = request.service.is_empty()
        || services.operations.iter().any(|operation| {
            operation
                .id
                .split_once('/')
                .is_some_and(|(service, _)| service == request.service)
        });
    if !known {
        return None;
    }
    super::framing::frame(&HealthCheckResponse { status: SERVING }.encode_to_vec())
}
