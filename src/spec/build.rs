//! Compiling what [`raw`](super::raw) read: each operation's parameters and bodies with
//! their schemas (each schema location compiled once and shared), path parameters put in
//! template order.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::compile::{Compiler, Schema};
use super::normalize::Normalizer;
use super::raw::{Loc, RawOperation, RawParam};
use super::shape::{self, Shape, Types};
use super::source::Documents;
use super::{BodyKind, Media, Operation, Param, Params, RequestBody, Style};

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
    problems.append(&mut normalizer.problems);
    warnings.append(&mut normalizer.warnings);
}

pub(super) fn duplicate_ids(operations: &[Operation]) -> Vec<String> {
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
pub(super) struct Builder<'d> {
    pub(super) docs: &'d Documents,
    pub(super) compiler: Compiler<'d>,
    pub(super) cache: HashMap<Loc, Arc<Schema>>,
    /// Compiled schemas by document and text: the same schema written at many places (a
    /// `{type: string}` parameter in every operation) compiles once. A compiled schema
    /// costs 6 KB at the least, and OpenAI's spec has 574 parameters.
    pub(super) by_text: HashMap<(String, String), Arc<Schema>>,
    pub(super) problems: Vec<String>,
    pub(super) warnings: Vec<String>,
}

impl Builder<'_> {
    pub(super) fn operation(&mut self, raw: RawOperation) -> Operation {
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
        let at = &self.referenced(at);
        if let Some(schema) = self.cache.get(at) {
            return Some(schema.clone());
        }
        let text = self.text(at);
        if let Some(schema) = text.as_ref().and_then(|text| self.by_text.get(text)) {
            let schema = schema.clone();
            self.cache.insert(at.clone(), schema.clone());
            return Some(schema);
        }
        match self.compiler.compile(&at.uri, &at.pointer) {
            Ok(schema) => {
                let schema = Arc::new(schema);
                self.cache.insert(at.clone(), schema.clone());
                if let Some(text) = text {
                    self.by_text.insert(text, schema.clone());
                }
                Some(schema)
            }
            Err(problem) => {
                self.problems.push(problem);
                None
            }
        }
    }
}

impl Builder<'_> {
    /// The key under which a schema's compiled form can be shared: its document and its
    /// text. Identical text in one document validates identically — its `$ref`s resolve
    /// against the same base — unless an `$id` inside moves the base; those are not shared.
    fn text(&self, at: &Loc) -> Option<(String, String)> {
        let text = serde_json::to_string(self.docs.get(&at.uri, &at.pointer)?).ok()?;
        (!text.contains("\"$id\"")).then(|| (at.uri.clone(), text))
    }

    /// Where a schema that is nothing but a local `$ref` points, followed to the end of the
    /// chain: it validates exactly as its target does, so the operations that name one
    /// component (OpenAI's spec: 119 bodies, 99 components) share one compiled validator.
    fn referenced(&self, at: &Loc) -> Loc {
        let mut at = at.clone();
        // A bounded walk: a cycle of bare `$ref`s is refused when it compiles.
        for _ in 0..16 {
            let Some(Value::Object(schema)) = self.docs.get(&at.uri, &at.pointer) else {
                break;
            };
            let (1, Some(Value::String(reference))) = (schema.len(), schema.get("$ref")) else {
                break;
            };
            // Only a same-document pointer with no percent-escapes maps to a `Loc` as is.
            match reference.strip_prefix('#') {
                Some(pointer) if !pointer.contains('%') => at.pointer = pointer.to_owned(),
                _ => break,
            }
        }
        at
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
