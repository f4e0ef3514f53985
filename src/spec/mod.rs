//! The model's OpenAPI document (3.0.x or 3.1.x), compiled into operations with their
//! parameters and body schemas, and a router over them. Loading reports every problem at
//! once and fails only where a check would be weakened; what it accepts but finds odd is
//! returned as warnings for `moat check`.

pub mod compile;
pub mod normalize;
pub mod shape;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use serde_json::Value;

use self::compile::{Compiler, Schema};
use self::normalize::{Normalizer, escape};
use self::shape::{Shape, Types};
use self::source::Documents;
use crate::config::Alternative;
use crate::metrics::OperationLabel;
use crate::route::Router;

pub struct Spec {
    /// The document's `openapi` version.
    pub version: String,
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

const METHODS: [(&str, Method); 8] = [
    ("get", Method::GET),
    ("put", Method::PUT),
    ("post", Method::POST),
    ("delete", Method::DELETE),
    ("options", Method::OPTIONS),
    ("head", Method::HEAD),
    ("patch", Method::PATCH),
    ("trace", Method::TRACE),
];

/// Where something sits in the documents.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Loc {
    uri: String,
    pointer: String,
}

impl Loc {
    fn child(&self, segment: &str) -> Loc {
        Loc {
            uri: self.uri.clone(),
            pointer: format!("{}/{}", self.pointer, escape(segment)),
        }
    }
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.uri, self.pointer)
    }
}

struct RawParam {
    name: String,
    location: String,
    required: bool,
    style: Style,
    explode: bool,
    schema: Option<Loc>,
    json: bool,
}

struct RawOperation {
    security: Option<Vec<Alternative>>,
    id: Option<String>,
    method: Method,
    template: String,
    at: Loc,
    params: Vec<RawParam>,
    body: Option<RawBody>,
}

struct RawBody {
    required: bool,
    /// Media range → where its schema is, if it has one.
    media: Vec<(String, Option<Loc>)>,
}

/// Compiles loaded documents into a [`Spec`].
pub fn load(mut docs: Documents) -> Result<Spec, Vec<String>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let version = check_version(docs.root()).map_err(|e| vec![e])?;
    let prefix = server_prefix(docs.root(), &mut warnings);
    let security_schemes = match docs.root().pointer("/components/securitySchemes") {
        Some(Value::Object(schemes)) => schemes.clone(),
        _ => serde_json::Map::new(),
    };
    let operations = collect_operations(&docs, &mut problems, &mut warnings);
    normalize_request_schemas(&mut docs, &operations, &mut problems, &mut warnings);
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut builder = Builder {
        docs: &docs,
        compiler: Compiler::new(&docs).map_err(|e| vec![e])?,
        cache: HashMap::new(),
        problems,
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
    Ok(Spec {
        version,
        operations: compiled,
        router,
        warnings,
        security_schemes,
    })
}

/// Normalises every schema a request can meet, in place, before anything is compiled.
fn normalize_request_schemas(
    docs: &mut Documents,
    operations: &[RawOperation],
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let mut normalizer = Normalizer::new(docs);
    for operation in operations {
        let params = operation.params.iter().filter_map(|p| p.schema.as_ref());
        let bodies = operation
            .body
            .iter()
            .flat_map(|body| &body.media)
            .filter_map(|(_, at)| at.as_ref());
        for at in params.chain(bodies) {
            normalizer.schema_at(&at.uri, &at.pointer);
        }
    }
    problems.append(&mut normalizer.problems);
    warnings.append(&mut normalizer.warnings);
}

fn duplicate_ids(operations: &[Operation]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for operation in operations {
        if !operation.id.contains(' ') {
            *counts.entry(&operation.id).or_default() += 1;
        }
    }
    let mut warnings: Vec<String> = counts
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(id, count)| {
            format!(
                "operationId `{id}` is used by {count} operations; refer to them in the policy \
                 as `METHOD /path` instead"
            )
        })
        .collect();
    warnings.sort();
    warnings
}

/// Turns raw operations into compiled ones, compiling each schema location once.
struct Builder<'d> {
    docs: &'d Documents,
    compiler: Compiler<'d>,
    cache: HashMap<Loc, Arc<Schema>>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Builder<'_> {
    fn operation(&mut self, raw: RawOperation) -> Operation {
        let id = raw
            .id
            .clone()
            .unwrap_or_else(|| format!("{} {}", raw.method, raw.template));
        let mut params = Params::default();
        for param in &raw.params {
            let compiled = self.param(param);
            match param.location.as_str() {
                "path" => params.path.push(compiled),
                "query" => params.query.push(compiled),
                "header" => params.header.push(compiled),
                _ => params.cookie.push(compiled),
            }
        }
        params.path = order_path_params(&raw, params.path, &mut self.warnings);
        let body = raw.body.as_ref().map(|body| RequestBody {
            required: body.required,
            media: body
                .media
                .iter()
                .map(|(range, at)| self.media(range, at.as_ref()))
                .collect(),
        });
        Operation {
            id: Arc::from(id),
            method: raw.method,
            template: raw.template,
            params,
            body,
            security: raw.security,
        }
    }

    fn param(&mut self, param: &RawParam) -> Param {
        Param {
            name: param.name.clone(),
            required: param.required,
            style: param.style,
            explode: param.explode,
            shape: self.shape(param.schema.as_ref()),
            schema: param.schema.as_ref().and_then(|at| self.schema(at)),
            json: param.json,
        }
    }

    fn media(&mut self, range: &str, at: Option<&Loc>) -> Media {
        let kind = body_kind(range);
        let form_shape = match (kind, self.shape(at)) {
            (BodyKind::Form, Shape::Object(properties)) => properties,
            _ => Vec::new(),
        };
        let schema = match kind {
            BodyKind::Opaque => None,
            _ => at.and_then(|at| self.schema(at)),
        };
        Media {
            range: range.to_ascii_lowercase(),
            kind,
            schema,
            form_shape,
        }
    }

    fn shape(&self, at: Option<&Loc>) -> Shape {
        at.and_then(|at| Some((at, self.docs.get(&at.uri, &at.pointer)?)))
            .map_or(Shape::Scalar(Types::ANY), |(at, schema)| {
                shape::shape_of(self.docs, &at.uri, schema)
            })
    }

    fn schema(&mut self, at: &Loc) -> Option<Arc<Schema>> {
        if let Some(schema) = self.cache.get(at) {
            return Some(schema.clone());
        }
        match self.compiler.compile(&at.uri, &at.pointer) {
            Ok(schema) => {
                let schema = Arc::new(schema);
                self.cache.insert(at.clone(), schema.clone());
                Some(schema)
            }
            Err(problem) => {
                self.problems.push(problem);
                None
            }
        }
    }
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

/// `${NAME}` (KServe's Open Inference Protocol writes its templates so) read as `{NAME}`.
fn route_template(template: &str) -> String {
    template.replace("${", "{")
}

fn collect_operations(
    docs: &Documents,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<RawOperation> {
    let root = Loc {
        uri: docs.root.clone(),
        pointer: String::new(),
    };
    let mut operations = Vec::new();
    let Some(Value::Object(paths)) = docs.root().get("paths") else {
        // OpenAPI 3.1 allows a document of webhooks only; it routes nothing.
        warnings.push("#/paths: the document declares no paths; every request is 404".to_owned());
        return operations;
    };
    for (template, _) in paths {
        if !template.starts_with('/') {
            problems.push(format!(
                "#/paths/{}: a path template must start with '/'",
                escape(template)
            ));
            continue;
        }
        if template.contains("${") {
            warnings.push(format!(
                "#/paths/{}: `${{NAME}}` read as a `{{NAME}}` parameter",
                escape(template)
            ));
        }
        let item_at = root.child("paths").child(template);
        let Some((item_at, item)) = deref(docs, &item_at, problems) else {
            continue;
        };
        let shared = item.get("parameters");
        for (key, method) in &METHODS {
            let Some(operation) = item.get(*key) else {
                continue;
            };
            let op_at = item_at.child(key);
            let mut params = Vec::new();
            let mut seen = std::collections::HashSet::new();
            // Operation parameters override path-item ones with the same name and location.
            for (list, list_at) in [
                (operation.get("parameters"), op_at.child("parameters")),
                (shared, item_at.child("parameters")),
            ] {
                let Some(Value::Array(list)) = list else {
                    continue;
                };
                for (i, param) in list.iter().enumerate() {
                    let Some(raw) =
                        raw_param(docs, &list_at.child(&i.to_string()), param, problems)
                    else {
                        continue;
                    };
                    if seen.insert((raw.name.clone(), raw.location.clone())) {
                        params.push(raw);
                    }
                }
            }
            let body = operation
                .get("requestBody")
                .and_then(|_| raw_body(docs, &op_at.child("requestBody"), problems));
            let security = operation
                .get("security")
                .or_else(|| docs.root().get("security"));
            let security = match security.map(parse_security) {
                Some(Ok(security)) => Some(security),
                Some(Err(problem)) => {
                    problems.push(format!("{op_at}/security: {problem}"));
                    None
                }
                None => None,
            };
            operations.push(RawOperation {
                security,
                id: operation
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                method: method.clone(),
                template: template.clone(),
                at: op_at,
                params,
                body,
            });
        }
    }
    operations
}

/// `security: [{scheme: [scopes]}]`.
fn parse_security(value: &Value) -> Result<Vec<Alternative>, String> {
    serde_json::from_value(value.clone())
        .map_err(|_| "must be a list of {scheme: [scopes]} objects".to_owned())
}

/// Follows a `$ref` (of a parameter, body or path item) to its target.
fn deref<'d>(
    docs: &'d Documents,
    at: &Loc,
    problems: &mut Vec<String>,
) -> Option<(Loc, &'d Value)> {
    let mut at = at.clone();
    for _ in 0..16 {
        let value = docs.get(&at.uri, &at.pointer)?;
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => match docs.locate(&at.uri, reference) {
                Ok((uri, pointer)) => at = Loc { uri, pointer },
                Err(problem) => {
                    problems.push(format!("{at}: {problem}"));
                    return None;
                }
            },
            None => return Some((at, value)),
        }
    }
    problems.push(format!("{at}: `$ref` chain too long or circular"));
    None
}

fn raw_param(
    docs: &Documents,
    at: &Loc,
    _: &Value,
    problems: &mut Vec<String>,
) -> Option<RawParam> {
    let (at, param) = deref(docs, at, problems)?;
    let name = param.get("name").and_then(Value::as_str);
    let location = param.get("in").and_then(Value::as_str);
    let (Some(name), Some(location)) = (name, location) else {
        problems.push(format!("{at}: a parameter needs `name` and `in`"));
        return None;
    };
    if !matches!(location, "path" | "query" | "header" | "cookie") {
        problems.push(format!(
            "{at}: `in: {location}` is not a parameter location"
        ));
        return None;
    }
    let default_style = match location {
        "query" | "cookie" => "form",
        _ => "simple",
    };
    let style_name = param
        .get("style")
        .and_then(Value::as_str)
        .unwrap_or(default_style);
    let style = match (style_name, location) {
        ("simple", "path" | "header") => Style::Simple,
        ("form", "query" | "cookie") => Style::Form,
        ("spaceDelimited", "query") => Style::SpaceDelimited,
        ("pipeDelimited", "query") => Style::PipeDelimited,
        ("deepObject", "query") => Style::DeepObject,
        _ => {
            problems.push(format!(
                "{at}: `style: {style_name}` for a {location} parameter is not supported; \
                 moat validates simple, form, spaceDelimited, pipeDelimited and deepObject"
            ));
            return None;
        }
    };
    let explode = param
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == Style::Form);
    let (schema, json) = if param.get("schema").is_some() {
        (Some(at.child("schema")), false)
    } else if let Some(Value::Object(content)) = param.get("content") {
        match content.iter().next() {
            Some((media, value)) if value.get("schema").is_some() => {
                let json = media.contains("json");
                (Some(at.child("content").child(media).child("schema")), json)
            }
            _ => (None, false),
        }
    } else {
        (None, false)
    };
    Some(RawParam {
        name: name.to_owned(),
        location: location.to_owned(),
        required: location == "path"
            || param
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        style,
        explode,
        schema,
        json,
    })
}

fn raw_body(docs: &Documents, at: &Loc, problems: &mut Vec<String>) -> Option<RawBody> {
    let (at, body) = deref(docs, at, problems)?;
    let required = body
        .get("required")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(Value::Object(content)) = body.get("content") else {
        problems.push(format!("{at}: a requestBody needs `content`"));
        return None;
    };
    let media = content
        .iter()
        .map(|(range, media)| {
            let schema = media
                .get("schema")
                .map(|_| at.child("content").child(range).child("schema"));
            (range.clone(), schema)
        })
        .collect();
    Some(RawBody { required, media })
}

fn body_kind(range: &str) -> BodyKind {
    let essence = range
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else {
        BodyKind::Opaque
    }
}

/// Path parameters in the order their placeholders appear in the template. A placeholder
/// with no declaration gets an unconstrained string parameter (and a warning).
fn order_path_params(
    raw: &RawOperation,
    declared: Vec<Param>,
    warnings: &mut Vec<String>,
) -> Vec<Param> {
    let mut declared: Vec<Option<Param>> = declared.into_iter().map(Some).collect();
    let mut ordered = Vec::new();
    let template = route_template(&raw.template);
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        let found = declared
            .iter_mut()
            .find(|p| p.as_ref().is_some_and(|p| p.name == name))
            .and_then(Option::take);
        ordered.push(found.unwrap_or_else(|| {
            warnings.push(format!(
                "{}: path parameter `{name}` is not declared; any value is accepted",
                raw.at
            ));
            Param {
                name: name.to_owned(),
                required: true,
                style: Style::Simple,
                explode: false,
                shape: Shape::Scalar(Types::ANY),
                schema: None,
                json: false,
            }
        }));
    }
    for unused in declared.into_iter().flatten() {
        warnings.push(format!(
            "{}: path parameter `{}` is not in the template",
            raw.at, unused.name
        ));
    }
    ordered
}
