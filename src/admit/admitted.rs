//! What admission hands to stage 7: a request every stage let through. Only `admit`
//! builds one (its constructor is private to the module), so nothing reaches `forward`
//! without having passed the stages.

use std::sync::Arc;

use http::header::HeaderValue;
use http::request::Parts;
use http::{Method, Uri};

use super::Room;
use super::stream::RequestBody;
use crate::auth::Principal;
use crate::config::ResponsePolicy;
use crate::grpc::health::HealthAnswer;
use crate::llm::Grant;
use crate::spec::Responses;

/// A request every stage let through: its head (a query credential already removed), its
/// body (checked, or bounded as it streams) and who sent it. Only [`admit`] makes one, so nothing reaches `forward`
/// without having passed the stages.
#[derive(Debug)]
pub struct Admitted<B> {
    parts: Parts,
    body: RequestBody<B>,
    principal: Option<Principal>,
    /// An LLM operation's reservation and stream slot, to meter its response by.
    llm: Option<Grant>,
    /// The body's room under `limits.max_buffered_body_bytes`, held until it is forwarded.
    room: Room,
    /// What the spec declares the operation answers with (see `respond`), and what the
    /// answer is held to.
    responses: Option<Arc<Responses>>,
    answers: ResponsePolicy,
}

impl<B> Admitted<B> {
    pub(super) fn new(
        parts: Parts,
        body: RequestBody<B>,
        principal: Option<Principal>,
        llm: Option<Grant>,
        room: Room,
    ) -> Self {
        Admitted {
            parts,
            body,
            principal,
            llm,
            room,
            responses: None,
            answers: ResponsePolicy::default(),
        }
    }

    /// The same, its answer to be held to `responses` as `answers` says.
    pub(super) fn answering(
        mut self,
        (responses, answers): (Option<Arc<Responses>>, ResponsePolicy),
    ) -> Self {
        self.responses = responses;
        self.answers = answers;
        self
    }

    /// What the answer is held to: the pipeline takes it before the request goes on.
    pub fn take_responses(&mut self) -> (Option<Arc<Responses>>, ResponsePolicy) {
        (self.responses.take(), self.answers)
    }

    /// Read by the pipeline tests; `forward` takes the principal by value.
    #[cfg(test)]
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    pub fn headers(&self) -> &http::HeaderMap {
        &self.parts.headers
    }

    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    /// Why the answer is not read whole, when it is not: `metered` (an LLM operation's: its
    /// meter reads it as it passes), `head` (a HEAD's has no body). Ask before `take_llm`.
    pub fn unread(&self) -> Option<&'static str> {
        match (self.llm.is_some(), &self.parts.method) {
            (true, _) => Some("metered"),
            (false, &Method::HEAD) => Some("head"),
            (false, _) => None,
        }
    }

    /// What the response of an LLM operation is metered by; `None` on other operations.
    pub fn take_llm(&mut self) -> Option<Grant> {
        self.llm.take()
    }

    /// The body's room: the pipeline holds it until the model has the body.
    pub fn take_room(&mut self) -> Room {
        std::mem::take(&mut self.room)
    }

    pub fn into_parts(self) -> (Parts, RequestBody<B>, Option<Principal>) {
        (self.parts, self.body, self.principal)
    }
}

/// What admission decided, short of a refusal.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // `Forward` is the common case: boxing it allocates per request
pub enum Verdict<B> {
    Forward(Admitted<B>),
    /// `OPTIONS` on a declared path that does not declare it: moat answers with `Allow`.
    Options(HeaderValue),
    /// The gRPC health check, answered by moat (see `grpc::health`).
    Health(HealthAnswer),
}
