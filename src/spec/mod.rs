//! The model's OpenAPI document (3.0.x or 3.1.x), compiled into operations with their
//! parameters and body schemas, and a router over them. Loading reports every problem at
//! once and fails only where a check would be weakened; what it accepts but finds odd is
//! returned as warnings for `moat check`.

mod build;
pub mod compile;
mod declared;
mod responses;

pub use self::declared::Declared;
pub use self::responses::{ResponseMedia, Responses};
mod failure;
pub mod loose;
pub mod normalize;
pub mod overlay;
pub mod plan;
mod raw;
mod risks;
mod root;
pub mod shape;
pub mod source;

use std::sync::Arc;

use http::Method;
use serde_json::Value;

pub use self::risks::overlay_risks;

use self::build::{compile_operations, normalize_request_schemas};
use self::compile::Schema;
use self::raw::collect_operations;
use self::shape::{Shape, Types};
use self::source::Documents;
use crate::config::Alternative;
use crate::ids::OperationLabel;
use crate::route::Router;

pub struct Spec {
    /// The document's `openapi` version.
    pub version: String,
    /// `info.title` and `info.version`: which model's API this is, for the status page.
    pub title: Option<String>,
    pub info_version: Option<String>,
    pub operations: Vec<Operation>,
    pub router: Router,
    pub warnings: Vec<String>,
    /// `components.securitySchemes`, raw, for checking the bindings in `auth.schemes`.
    pub security_schemes: serde_json::Map<String, Value>,
}

pub struct Operation {
    /// `operationId`, or `METHOD /template` when the spec gives none.
    pub id: Arc<str>,
    pub method: Method,
    /// The path template as the spec writes it (without the server prefix).
    pub template: String,
    pub params: Params,
    pub body: Option<RequestBody>,
    /// The spec's `security` for this operation (its own, else the document's); `None`
    /// when the spec declares none, so the policy's default applies.
    pub security: Option<Vec<Alternative>>,
    /// A gRPC method (see `grpc`); `None` for the spec's HTTP operations.
    pub rpc: Option<Rpc>,
    /// What the spec declares it answers with; `None` when it declares no `responses`.
    pub responses: Option<Arc<Responses>>,
}

/// What a gRPC method's operation knows of the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rpc {
    pub client_streaming: bool,
    pub server_streaming: bool,
    /// moat answers it itself (the health check), nothing is forwarded.
    pub answered_by_moat: bool,
    /// The type of its request messages, each checked against it (`None`: the health check).
    pub input: Option<prost_reflect::MessageDescriptor>,
    /// `grpc.methods.<method>.unknown_fields: allow`.
    pub allow_unknown_fields: bool,
    /// It changes the model server itself (registers shared memory, loads or unloads a
    /// model): closed unless `policy.operations` names it.
    pub administrative: bool,
    /// `grpc.rules.<method>`: a JSON Schema over each message's proto3 JSON.
    pub rules: Option<compile::SharedSchema>,
}

impl Rpc {
    /// `unary`, `server streaming`, `client streaming`, `bidi streaming`; `answered by
    /// moat` for the health check.
    pub fn kind(&self) -> &'static str {
        match (
            self.answered_by_moat,
            self.client_streaming,
            self.server_streaming,
        ) {
            (true, _, _) => "answered by moat",
            (false, false, false) => "unary",
            (false, false, true) => "server streaming",
            (false, true, false) => "client streaming",
            (false, true, true) => "bidi streaming",
        }
    }
}

impl Operation {
    pub fn label(&self) -> OperationLabel {
        self.id.clone()
    }

    /// `METHOD /template`: how the policy and key allowlists name an operation without an
    /// operationId (or whose operationId is ambiguous).
    pub fn long_name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    /// An operation with no parameters, body or security, for unit tests elsewhere.
    #[cfg(test)]
    pub fn for_tests(id: &str, method: &str, template: &str) -> Operation {
        Operation {
            id: Arc::from(id),
            method: method.parse().unwrap_or(Method::GET),
            template: template.to_owned(),
            params: Params::default(),
            body: None,
            security: None,
            rpc: None,
            responses: None,
        }
    }
}

#[derive(Default)]
pub struct Params {
    /// In template order: the router hands values over positionally.
    pub path: Vec<Param>,
    pub query: Vec<Param>,
    pub header: Vec<Param>,
    pub cookie: Vec<Param>,
}

pub struct Param {
    pub name: String,
    pub required: bool,
    pub style: Style,
    pub explode: bool,
    pub shape: Shape,
    pub schema: Option<Arc<Schema>>,
    /// Declared with `content: application/json`: the value is a JSON document.
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Simple,
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
}

pub struct RequestBody {
    pub required: bool,
    pub media: Vec<Media>,
}

pub struct Media {
    /// The media range as declared, lower-cased: `application/json`, `image/*`, `*/*`.
    pub range: String,
    pub kind: BodyKind,
    pub schema: Option<Arc<Schema>>,
    /// For JSON bodies: the rules checked while parsing, when the schema allows one.
    pub plan: Option<Arc<plan::Plan>>,
    /// For form bodies: each property's types, for coercing the text values.
    pub form_shape: Vec<(String, Types)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    /// Anything else: size and content type are enforced, the bytes are not parsed.
    Opaque,
}

/// The documents as moat enforces them: request schemas normalised to draft 2020-12 (and
/// stripped of what only documents them), with the operations read from them.
pub struct Effective {
    pub docs: Documents,
    pub version: String,
    operations: Vec<raw::RawOperation>,
    warnings: Vec<String>,
}

/// Reads the operations of loaded documents and normalises their request schemas.
pub fn effective(mut docs: Documents) -> Result<Effective, Vec<String>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let version = root::check_version(docs.root()).map_err(|e| vec![e])?;
    let operations = collect_operations(&docs, &mut problems, &mut warnings);
    normalize_request_schemas(&mut docs, &operations, &mut problems, &mut warnings);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Effective {
        docs,
        version,
        operations,
        warnings,
    })
}

/// What the documents leave open in requests, as an overlay that closes it (see `loose`);
/// `None` when nothing is. Fails as loading would on a spec moat cannot enforce.
pub fn loose(docs: Documents) -> Result<Option<loose::Overlay>, Vec<String>> {
    // Operations are read before normalisation, so their locations are the raw document's.
    let operations = effective(docs.clone())?.operations;
    Ok(loose::report(&docs, &operations))
}

/// Compiles loaded documents into a [`Spec`].
pub fn load(docs: Documents) -> Result<Spec, Vec<String>> {
    let Effective {
        docs,
        version,
        operations,
        warnings,
    } = effective(docs)?;
    let compiled = compile_operations(&docs, operations, warnings)?;
    let doc = docs.root();
    Ok(Spec {
        version,
        title: root::info(doc, "title"),
        info_version: root::info(doc, "version"),
        operations: compiled.operations,
        router: compiled.router,
        warnings: compiled.warnings,
        security_schemes: root::security_schemes(doc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_naming_one_component_share_one_compiled_schema() {
        let doc = json!({
            "openapi": "3.1.0",
            "paths": {
                "/a": {"post": {"requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Input"}}}}}},
                "/b": {"post": {"requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Alias"}}}}}},
                "/c": {"post": {"requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Input", "minProperties": 1}}}}}}
            },
            "components": {"schemas": {
                "Input": {"type": "object", "required": ["x"]},
                "Alias": {"$ref": "#/components/schemas/Input"}
            }}
        });
        let docs = source::from_bytes("urn:t", doc.to_string().as_bytes()).unwrap();
        let spec = load(docs).unwrap();
        let schema = |n: usize| {
            spec.operations[n].body.as_ref().unwrap().media[0]
                .schema
                .clone()
                .unwrap()
        };
        assert!(Arc::ptr_eq(&schema(0), &schema(1)), "a chain of bare $refs");
        assert!(
            !Arc::ptr_eq(&schema(0), &schema(2)),
            "a $ref with siblings is its own"
        );
        for n in 0..3 {
            assert!(!schema(n).is_valid(&json!({})), "operation {n}");
            assert!(schema(n).is_valid(&json!({"x": 1})), "operation {n}");
        }
    }

    #[test]
    fn an_event_stream_s_event_schema_is_read_from_either_keyword() {
        let chunk = json!({"type": "object", "required": ["choices"]});
        let stream = |media: serde_json::Value| json!({"post": {"responses": {"200": {"content": {"text/event-stream": media}}}}});
        let doc = json!({
            "openapi": "3.2.0",
            "paths": {
                "/moat": stream(json!({"x-moat-event-schema": chunk})),
                "/item": stream(json!({"itemSchema": {"type": "object", "properties": {
                    "data": {"type": "string", "contentMediaType": "application/json",
                             "contentSchema": chunk}}}})),
                "/bare": stream(json!({"itemSchema": {"type": "object"}})),
            }
        });
        let docs = source::from_bytes("urn:t", doc.to_string().as_bytes()).unwrap();
        let spec = load(docs).unwrap();
        let events = |path: &str| {
            let operation = spec.operations.iter().find(|o| &*o.template == path);
            let responses = operation.unwrap().responses.as_ref().unwrap();
            responses.media_for(200).unwrap()[0].events.clone()
        };
        for path in ["/moat", "/item"] {
            let schema = events(path).unwrap_or_else(|| panic!("{path}"));
            assert!(schema.is_valid(&json!({"choices": []})), "{path}");
            assert!(!schema.is_valid(&json!({})), "{path}");
        }
        assert!(
            events("/bare").is_none(),
            "no contentSchema: nothing to hold data to"
        );
    }
}
