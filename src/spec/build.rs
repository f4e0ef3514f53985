//! Compiling what [`raw`](super::raw) read: each operation's parameters and bodies with
//! their schemas (each schema location compiled once and shared), path parameters put in
//! template order, and the routes to them.

mod path_params;
mod schemas;

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use self::path_params::order_path_params;
use super::compile::{Compiler, Schema};
use super::normalize::Normalizer;
use super::raw::{Loc, RawBody, RawOperation, RawParam};
use super::root::server_prefix;
use super::shape::{self, Shape, Types};
use super::source::Documents;
use super::{BodyKind, Media, Operation, Param, Params, RequestBody, Responses};
use crate::route::Router;

/// What a response schema's problem adds to its warning: such a schema never fails the load
/// (responses were never checked before, so a spec that loaded must still load).
const UNCHECKED: &str = " (a response schema: its answers go unchecked)";

/// Normalises every schema a request can meet, in place, before anything is compiled.
pub(super) fn normalize_request_schemas(
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
    // Response schemas after every request's: a problem in one is a warning (its answers
    // go unchecked), never a load failure.
    let before = normalizer.problems.len();
    let responses = operations.iter().flat_map(|o| o.responses.iter().flatten());
    let media = responses.flat_map(|(_, media)| media);
    let schemas = media.flat_map(|m| m.schema.iter().chain(&m.events));
    for at in schemas {
        normalizer.schema_at(&at.uri, &at.pointer);
    }
    let unchecked = normalizer.problems.split_off(before);
    warnings.extend(unchecked.into_iter().map(|p| format!("{p}{UNCHECKED}")));
    problems.append(&mut normalizer.problems);
    warnings.append(&mut normalizer.warnings);
}

/// The operations compiled and routed, with the warnings gathered on the way.
pub(super) struct Compiled {
    pub(super) operations: Vec<Operation>,
    pub(super) router: Router,
    pub(super) warnings: Vec<String>,
}

/// Compiles every operation and routes it under the server prefix; fails with every
/// problem at once.
pub(super) fn compile_operations(
    docs: &Documents,
    operations: Vec<RawOperation>,
    mut warnings: Vec<String>,
) -> Result<Compiled, Vec<String>> {
    let prefix = server_prefix(docs.root(), &mut warnings);
    let mut builder = Builder::new(docs, warnings)?;
    let (operations, routes) = builder.operations(operations, &prefix);
    builder.warnings.extend(duplicate_ids(&operations));
    let mut problems = builder.problems;
    match Router::build(&routes) {
        Ok(router) if problems.is_empty() => Ok(Compiled {
            operations,
            router,
            warnings: builder.warnings,
        }),
        Ok(_) => Err(problems),
        Err(mut unroutable) => {
            problems.append(&mut unroutable);
            Err(problems)
        }
    }
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
    /// Compiled schemas by document and text: the same schema written at many places (a
    /// `{type: string}` parameter in every operation) compiles once. A compiled schema
    /// costs 6 KB at the least, and OpenAI's spec has 574 parameters.
    by_text: HashMap<(String, String), Arc<Schema>>,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl<'d> Builder<'d> {
    fn new(docs: &'d Documents, warnings: Vec<String>) -> Result<Self, Vec<String>> {
        Ok(Builder {
            docs,
            compiler: Compiler::new(docs).map_err(|e| vec![e])?,
            cache: HashMap::new(),
            by_text: HashMap::new(),
            problems: Vec::new(),
            warnings,
        })
    }
}

impl Builder<'_> {
    /// Compiles each operation, with its route: the template under the server `prefix`, its
    /// method and the operation's index.
    fn operations(
        &mut self,
        operations: Vec<RawOperation>,
        prefix: &str,
    ) -> (Vec<Operation>, Vec<(String, Method, usize)>) {
        operations
            .into_iter()
            .enumerate()
            .map(|(index, raw)| {
                let template = format!("{prefix}{}", route_template(&raw.template));
                let route = (template, raw.method.clone(), index);
                (self.operation(raw), route)
            })
            .unzip()
    }

    fn operation(&mut self, raw: RawOperation) -> Operation {
        let id = raw
            .id
            .clone()
            .unwrap_or_else(|| format!("{} {}", raw.method, raw.template));
        let mut params = self.params(&raw.params);
        params.path = order_path_params(&raw, params.path, &mut self.warnings);
        let body = raw.body.as_ref().map(|body| self.body(body));
        let at = raw.at.to_string();
        let responses = (raw.responses).map(|declared| {
            let declared = declared.into_iter().map(|(status, media)| {
                let media = media.into_iter().map(|media| self.response_media(media));
                (status, media.collect())
            });
            let declared = declared.collect();
            Arc::new(Responses::build(declared, &at, &mut self.warnings))
        });
        Operation {
            id: Arc::from(id),
            method: raw.method,
            template: raw.template,
            params,
            body,
            security: raw.security,
            rpc: None,
            responses,
        }
    }

    /// The parameters by location, each in the order the spec lists it.
    fn params(&mut self, raw: &[RawParam]) -> Params {
        let mut params = Params::default();
        for param in raw {
            let compiled = self.param(param);
            match param.location.as_str() {
                "path" => params.path.push(compiled),
                "query" => params.query.push(compiled),
                "header" => params.header.push(compiled),
                _ => params.cookie.push(compiled),
            }
        }
        params
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

    fn body(&mut self, body: &RawBody) -> RequestBody {
        RequestBody {
            required: body.required,
            media: body
                .media
                .iter()
                .map(|(range, at)| self.media(range, at.as_ref()))
                .collect(),
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
        let plan = match (kind, &schema) {
            (BodyKind::Json, Some(_)) => at.and_then(|at| self.plan(at)),
            _ => None,
        };
        Media {
            range: range.to_ascii_lowercase(),
            kind,
            schema,
            plan,
            form_shape,
        }
    }

    fn shape(&self, at: Option<&Loc>) -> Shape {
        at.and_then(|at| Some((at, self.docs.get(&at.uri, &at.pointer)?)))
            .map_or(Shape::Scalar(Types::ANY), |(at, schema)| {
                shape::shape_of(self.docs, &at.uri, schema)
            })
    }
}

/// `${NAME}` (KServe's Open Inference Protocol writes its templates so) read as `{NAME}`.
pub(super) fn route_template(template: &str) -> String {
    template.replace("${", "{")
}

pub(super) fn body_kind(range: &str) -> BodyKind {
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
