//! Reading the document: every operation under `paths`, with its parameters, body and
//! security as locations in the documents, before anything is compiled. `$ref`s of
//! parameters, bodies and path items are followed here; schemas are left where they are.

mod param;
mod responses;

pub(super) use self::responses::{RawMedia, RawResponses};

use std::collections::HashSet;

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
    pub(super) responses: Option<RawResponses>,
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
    let Some(Value::Object(paths)) = docs.root().get("paths") else {
        // OpenAPI 3.1 allows a document of webhooks only; it routes nothing.
        warnings.push("#/paths: the document declares no paths; every request is 404".to_owned());
        return Vec::new();
    };
    let mut reader = Reader { docs, problems };
    let mut operations = Vec::new();
    for template in paths.keys() {
        if usable_template(template, reader.problems, warnings) {
            operations.extend(reader.path_item(template));
        }
    }
    operations
}

/// A path template must start with '/'; `${NAME}` is read as `{NAME}`, with a warning.
fn usable_template(template: &str, problems: &mut Vec<String>, warnings: &mut Vec<String>) -> bool {
    if !template.starts_with('/') {
        problems.push(format!(
            "#/paths/{}: a path template must start with '/'",
            escape(template)
        ));
        return false;
    }
    if template.contains("${") {
        warnings.push(format!(
            "#/paths/{}: `${{NAME}}` read as a `{{NAME}}` parameter",
            escape(template)
        ));
    }
    true
}

/// A value in the documents, and where it sits.
struct Node<'d> {
    at: Loc,
    value: &'d Value,
}

/// Reads operations out of the documents, noting every problem on the way.
struct Reader<'d> {
    docs: &'d Documents,
    problems: &'d mut Vec<String>,
}

impl<'d> Reader<'d> {
    fn problem(&mut self, at: &Loc, problem: impl std::fmt::Display) {
        self.problems.push(format!("{at}: {problem}"));
    }

    /// The operations of the path item at `template`, in [`METHODS`] order.
    fn path_item(&mut self, template: &str) -> Vec<RawOperation> {
        let root = Loc {
            uri: self.docs.root.clone(),
            pointer: String::new(),
        };
        let Some(item) = self.deref(&root.child("paths").child(template)) else {
            return Vec::new();
        };
        METHODS
            .iter()
            .filter_map(|(key, method)| {
                let operation = Node {
                    at: item.at.child(key),
                    value: item.value.get(*key)?,
                };
                Some(self.operation(template, method, operation, &item))
            })
            .collect()
    }

    fn operation(
        &mut self,
        template: &str,
        method: &Method,
        operation: Node<'d>,
        item: &Node<'d>,
    ) -> RawOperation {
        let params = self.params(&operation, item);
        let body = operation
            .value
            .get("requestBody")
            .and_then(|_| self.body(&operation.at.child("requestBody")));
        let id = operation.value.get("operationId").and_then(Value::as_str);
        let responses = self.responses(&operation);
        RawOperation {
            security: self.security(&operation),
            id: id.map(str::to_owned),
            method: method.clone(),
            template: template.to_owned(),
            at: operation.at,
            params,
            body,
            responses,
        }
    }

    /// The operation's parameters, then its path item's: operation parameters override
    /// path-item ones with the same name and location.
    fn params(&mut self, operation: &Node<'d>, item: &Node<'d>) -> Vec<RawParam> {
        let mut params = Vec::new();
        let mut seen = HashSet::new();
        for node in [operation, item] {
            let Some(Value::Array(list)) = node.value.get("parameters") else {
                continue;
            };
            let list_at = node.at.child("parameters");
            for i in 0..list.len() {
                let Some(raw) = self.param(&list_at.child(&i.to_string())) else {
                    continue;
                };
                if seen.insert((raw.name.clone(), raw.location.clone())) {
                    params.push(raw);
                }
            }
        }
        params
    }

    /// The operation's own `security`, else the document's.
    fn security(&mut self, operation: &Node<'d>) -> Option<Vec<Alternative>> {
        let security = operation
            .value
            .get("security")
            .or_else(|| self.docs.root().get("security"))?;
        match parse_security(security) {
            Ok(security) => Some(security),
            Err(problem) => {
                self.problem(&operation.at.child("security"), problem);
                None
            }
        }
    }

    /// Follows a `$ref` (of a parameter, body or path item) to its target.
    fn deref(&mut self, at: &Loc) -> Option<Node<'d>> {
        let mut at = at.clone();
        for _ in 0..16 {
            let value = self.docs.get(&at.uri, &at.pointer)?;
            match value.get("$ref").and_then(Value::as_str) {
                Some(reference) => match self.docs.locate(&at.uri, reference) {
                    Ok((uri, pointer)) => at = Loc { uri, pointer },
                    Err(problem) => {
                        self.problem(&at, problem);
                        return None;
                    }
                },
                None => return Some(Node { at, value }),
            }
        }
        self.problem(&at, "`$ref` chain too long or circular");
        None
    }

    fn body(&mut self, at: &Loc) -> Option<RawBody> {
        let Node { at, value: body } = self.deref(at)?;
        let required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(Value::Object(content)) = body.get("content") else {
            self.problem(&at, "a requestBody needs `content`");
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
}

/// `security: [{scheme: [scopes]}]`.
fn parse_security(value: &Value) -> Result<Vec<Alternative>, String> {
    serde_json::from_value(value.clone())
        .map_err(|_| "must be a list of {scheme: [scopes]} objects".to_owned())
}
