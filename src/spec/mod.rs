//! The model's OpenAPI document (3.0.x or 3.1.x), compiled into operations with their
//! parameters and body schemas, and a router over them. Loading reports every problem at
//! once and fails only where a check would be weakened; what it accepts but finds odd is
//! returned as warnings for `moat check`.

mod build;
pub mod compile;
pub mod loose;
pub mod normalize;
pub mod overlay;
mod raw;
pub mod shape;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use self::build::{Builder, duplicate_ids, normalize_request_schemas, route_template};
use self::compile::{Compiler, Schema};
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
    let version = check_version(docs.root()).map_err(|e| vec![e])?;
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

/// What applying `overlays` in turn to `docs` (the spec as read, before any overlay) takes
/// away, one warning each: an operation an overlay made public, or whose security it
/// removed so that `policy.default` decides; a bound on requests it removed (what `moat
/// spec loose` reports newly after it). `moat check` prints them: an overlay is meant to
/// tighten, and a loosening one should be a decision, not a slip.
pub fn overlay_risks(mut docs: Documents, overlays: &[std::path::PathBuf]) -> Vec<String> {
    let mut warnings = Vec::new();
    for file in overlays {
        let Ok(before) = effective(docs.clone()) else {
            return warnings;
        };
        let before_openings = loose::openings(&docs, &before.operations);
        let Some(root) = docs.docs.get_mut(&docs.root) else {
            return warnings;
        };
        if overlay::apply_files(root, std::slice::from_ref(file)).is_err() {
            return warnings;
        }
        let Ok(after) = effective(docs.clone()) else {
            return warnings;
        };
        let name = file.display();
        for operation in &after.operations {
            let was = before
                .operations
                .iter()
                .find(|o| o.method == operation.method && o.template == operation.template)
                .map(|o| &o.security);
            let label = format!("{} {}", operation.method, operation.template);
            match (was, &operation.security) {
                (Some(Some(was)), Some(now)) if !is_public(was) && is_public(now) => {
                    warnings.push(format!(
                        "overlay {name} makes `{label}` public: it required credentials before"
                    ));
                }
                (Some(Some(was)), None) if !is_public(was) => warnings.push(format!(
                    "overlay {name} removes the security `{label}` declared: \
                     `policy.default` decides it now"
                )),
                _ => {}
            }
        }
        for opened in loose::openings(&docs, &after.operations).difference(&before_openings) {
            warnings.push(format!("overlay {name} loosens a request schema: {opened}"));
        }
    }
    warnings
}

/// A requirement any request meets: no alternative, or an empty one.
fn is_public(security: &[Alternative]) -> bool {
    security.is_empty() || security.iter().any(BTreeMap::is_empty)
}

/// Compiles loaded documents into a [`Spec`].
pub fn load(docs: Documents) -> Result<Spec, Vec<String>> {
    let Effective {
        docs,
        version,
        operations,
        mut warnings,
    } = effective(docs)?;
    let prefix = server_prefix(docs.root(), &mut warnings);
    let security_schemes = match docs.root().pointer("/components/securitySchemes") {
        Some(Value::Object(schemes)) => schemes.clone(),
        _ => serde_json::Map::new(),
    };
    let mut builder = Builder {
        docs: &docs,
        compiler: Compiler::new(&docs).map_err(|e| vec![e])?,
        cache: HashMap::new(),
        by_text: HashMap::new(),
        problems: Vec::new(),
        warnings,
    };
    let mut compiled = Vec::with_capacity(operations.len());
    let mut routes = Vec::with_capacity(operations.len());
    for raw in operations {
        routes.push((
            format!("{prefix}{}", route_template(&raw.template)),
            raw.method.clone(),
            compiled.len(),
        ));
        compiled.push(builder.operation(raw));
    }
    let Builder {
        mut problems,
        mut warnings,
        ..
    } = builder;
    warnings.extend(duplicate_ids(&compiled));
    let router = Router::build(&routes).map_err(|mut e| {
        problems.append(&mut e);
        problems.clone()
    })?;
    if !problems.is_empty() {
        return Err(problems);
    }
    let info = |field: &str| {
        docs.root()
            .pointer(&format!("/info/{field}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(Spec {
        version,
        title: info("title"),
        info_version: info("version"),
        operations: compiled,
        router,
        warnings,
        security_schemes,
    })
}

fn check_version(root: &Value) -> Result<String, String> {
    let version = root
        .get("openapi")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if version.starts_with("3.0.")
        || version.starts_with("3.1.")
        || version == "3.0"
        || version == "3.1"
    {
        Ok(version.to_owned())
    } else if root.get("swagger").is_some() {
        Err("this is a Swagger 2.0 document; convert it to OpenAPI 3 first".to_owned())
    } else {
        Err(format!(
            "#/openapi: `{version}` is not a supported version; moat reads OpenAPI 3.0.x and 3.1.x"
        ))
    }
}

/// The path part of `servers[0].url` (variables replaced by their defaults), no trailing '/'.
fn server_prefix(root: &Value, warnings: &mut Vec<String>) -> String {
    let Some(server) = root.pointer("/servers/0") else {
        return String::new();
    };
    let mut url = server
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    if let Some(Value::Object(variables)) = server.get("variables") {
        for (name, variable) in variables {
            let default = variable
                .get("default")
                .and_then(Value::as_str)
                .unwrap_or_default();
            url = url.replace(&format!("{{{name}}}"), default);
        }
    }
    let path = match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        None => url.as_str(),
    };
    let path = path.trim_end_matches('/');
    if path.contains('{') {
        warnings.push(format!(
            "#/servers/0/url: `{url}` has an undefined variable; no prefix used"
        ));
        return String::new();
    }
    if !path.is_empty() && !path.starts_with('/') {
        warnings.push(format!(
            "#/servers/0/url: `{url}` is not a path; no prefix used"
        ));
        return String::new();
    }
    path.to_owned()
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
}
