//! Stage 2, route: the operation a request goes on to, with what stages 3–6 need of it.

use std::sync::Arc;

use http::Method;
use http::header::HeaderValue;
use http::request::Parts;

use super::Admission;
use crate::config::{Mode, ResponsePolicy};
use crate::policy::{LlmProfile, Requirement};
use crate::reject::Rejection;
use crate::route::Routed;
use crate::spec::{Operation, Responses};

/// What stage 2 decided.
pub enum Routing<'s, 'p> {
    /// `OPTIONS` on a declared path that does not declare it: moat answers with `Allow`.
    Options(HeaderValue),
    Target(Target<'s, 'p>),
}

/// The operation a request goes on to, with what stages 3–6 need of it.
pub struct Target<'s, 'p> {
    /// `None` when no spec is configured: every path is forwarded.
    pub operation: Option<&'s Operation>,
    pub template: Option<Arc<str>>,
    pub path_values: Vec<&'p str>,
    pub requirement: &'s Requirement,
    pub mode: Mode,
    /// Metered as an LLM call.
    pub llm: Option<LlmProfile>,
    /// The model an Open Inference Protocol REST infer call names (`oip::rest`).
    pub inference: Option<&'p str>,
    /// What the answer is held to (`responses:`).
    pub responses: ResponsePolicy,
}

impl Target<'_, '_> {
    /// What the spec declares the operation answers with, and what its answer is held to.
    pub fn answers(&self) -> (Option<Arc<Responses>>, ResponsePolicy) {
        let declared = self.operation.and_then(|o| o.responses.clone());
        (declared, self.responses)
    }
}

/// Stage 2: the operation at `path` and its security requirement and mode (the
/// operation's own mode, else the policy's). A gRPC call (`grpc`) is routed among the gRPC
/// methods only, and an HTTP request among the spec's operations only.
pub fn route<'s, 'p>(
    snapshot: &'s Admission<'s>,
    method: &Method,
    path: &'p str,
    grpc: bool,
) -> Result<Routing<'s, 'p>, Rejection> {
    if grpc {
        return grpc_method(snapshot, method, path).map(Routing::Target);
    }
    let inference = crate::oip::rest::infer_model(method, path);
    let Some(spec) = &snapshot.spec else {
        return Ok(Routing::Target(without_spec(snapshot, inference)));
    };
    Ok(match spec.router.route(method, path)? {
        Routed::Options { allow } => Routing::Options(allow),
        Routed::Operation {
            index,
            template,
            values,
        } => {
            let route = snapshot.routes.operation(index);
            Routing::Target(Target {
                operation: Some(&spec.operations[index]),
                template: Some(template),
                path_values: values,
                requirement: &route.requirement,
                mode: route.mode,
                llm: route.llm,
                inference,
                responses: route.responses,
            })
        }
    })
}

/// Stage 2 for this request: a gRPC call among the gRPC methods — over HTTP/2 only, where
/// its trailers can reach the client — and any other request among the spec's operations.
pub(super) fn route_request<'s, 'p>(
    snapshot: &'s Admission<'s>,
    parts: &Parts,
    path: &'p str,
) -> Result<Routing<'s, 'p>, Rejection> {
    let grpc = crate::grpc::is_grpc(&parts.headers);
    if grpc && parts.version != http::Version::HTTP_2 {
        return Err(Rejection::InvalidGrpcMessage(
            "gRPC is spoken over HTTP/2 only (h2c with prior knowledge, or TLS with ALPN h2)",
        ));
    }
    if grpc && !crate::grpc::is_protobuf(&parts.headers) {
        return Err(Rejection::InvalidGrpcMessage(
            "only protobuf messages (application/grpc, application/grpc+proto) are accepted",
        ));
    }
    route(snapshot, &parts.method, path, grpc)
}

/// A gRPC call: the method at `path`, called with POST. Without `grpc` services configured
/// no call is routed: it would reach the model unchecked, over a protocol it may not serve.
fn grpc_method<'s>(
    snapshot: &'s Admission<'s>,
    method: &Method,
    path: &str,
) -> Result<Target<'s, 'static>, Rejection> {
    let services = snapshot.grpc.ok_or(Rejection::RouteNotFound)?;
    let (index, template) = services.route(path).ok_or(Rejection::RouteNotFound)?;
    if method != Method::POST {
        return Err(Rejection::MethodNotAllowed {
            allow: HeaderValue::from_static("POST"),
        });
    }
    let route = snapshot.routes.grpc(index);
    if route.closed {
        return Err(Rejection::RouteNotFound);
    }
    Ok(Target {
        operation: Some(&services.operations[index]),
        template: Some(template),
        path_values: Vec::new(),
        requirement: &route.requirement,
        mode: route.mode,
        llm: None,
        inference: None,
        responses: route.responses,
    })
}

/// Without a spec every path goes on, under the route of requests without an operation.
fn without_spec<'s, 'p>(snapshot: &'s Admission<'s>, inference: Option<&'p str>) -> Target<'s, 'p> {
    let route = snapshot.routes.without_spec();
    Target {
        operation: None,
        template: None,
        path_values: Vec::new(),
        requirement: &route.requirement,
        mode: route.mode,
        llm: None,
        inference,
        responses: route.responses,
    }
}
