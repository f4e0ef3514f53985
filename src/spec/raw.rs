//! Reading the document: every operation under `paths`, with its parameters, body and
//! security as locations in the documents, before anything is compiled. `$ref`s of
//! parameters, bodies and path items are followed here; schemas are left where they are.

use http::Method;
use serde_json::Value;

use super::Style;
use super::normalize::escape;
use super::source::Documents;
use crate::config::Alternative;

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
pub(super) struct Loc {
    pub(super) uri: String,
    pub(super) pointer: String,
}

impl Loc {
    pub(super) fn child(&self, segment: &str) -> Loc {
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

pub(super) struct RawParam {
    pub(super) name: String,
    pub(super) location: String,
    pub(super) required: bool,
    pub(super) style: Style,
    pub(super) explode: bool,
    pub(super) schema: Option<Loc>,
    pub(super) json: bool,
}

pub(super) struct RawOperation {
    pub(super) security: Option<Vec<Alternative>>,
    pub(super) id: Option<String>,
    pub(super) method: Method,
    pub(super) template: String,
    pub(super) at: Loc,
    pub(super) params: Vec<RawParam>,
    pub(super) body: Option<RawBody>,
}

pub(super) struct RawBody {
    pub(super) required: bool,
    /// Media range → where its schema is, if it has one.
    pub(super) media: Vec<(String, Option<Loc>)>,
}

pub(super) fn collect_operations(
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
