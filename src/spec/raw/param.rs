//! Reading one parameter: its name and location, the `style` it is serialised in, and
//! where its schema is.

use serde_json::Value;

use super::{Loc, Node, RawParam, Reader};
use crate::spec::Style;

impl Reader<'_> {
    pub(super) fn param(&mut self, at: &Loc) -> Option<RawParam> {
        let Node { at, value: param } = self.deref(at)?;
        let (name, location) = self.name_and_location(&at, param)?;
        let style = self.style(&at, param, location)?;
        let explode = param
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(style == Style::Form);
        let (schema, json) = schema_of(&at, param);
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

    /// `name` and `in`, the latter one of the four parameter locations.
    fn name_and_location<'v>(&mut self, at: &Loc, param: &'v Value) -> Option<(&'v str, &'v str)> {
        let name = param.get("name").and_then(Value::as_str);
        let location = param.get("in").and_then(Value::as_str);
        let (Some(name), Some(location)) = (name, location) else {
            self.problem(at, "a parameter needs `name` and `in`");
            return None;
        };
        if !matches!(location, "path" | "query" | "header" | "cookie") {
            self.problem(at, format!("`in: {location}` is not a parameter location"));
            return None;
        }
        Some((name, location))
    }

    /// The parameter's `style`, when moat can read that style in that location.
    fn style(&mut self, at: &Loc, param: &Value, location: &str) -> Option<Style> {
        let style_name = param
            .get("style")
            .and_then(Value::as_str)
            .unwrap_or(default_style(location));
        let style = style_in(style_name, location);
        if style.is_none() {
            self.problem(
                at,
                format!(
                    "`style: {style_name}` for a {location} parameter is not supported; \
                     moat validates simple, form, spaceDelimited, pipeDelimited and deepObject"
                ),
            );
        }
        style
    }
}

/// The style a parameter has when it does not say.
fn default_style(location: &str) -> &'static str {
    match location {
        "query" | "cookie" => "form",
        _ => "simple",
    }
}

/// The styles moat reads, each in the locations OpenAPI allows it.
fn style_in(name: &str, location: &str) -> Option<Style> {
    match (name, location) {
        ("simple", "path" | "header") => Some(Style::Simple),
        ("form", "query" | "cookie") => Some(Style::Form),
        ("spaceDelimited", "query") => Some(Style::SpaceDelimited),
        ("pipeDelimited", "query") => Some(Style::PipeDelimited),
        ("deepObject", "query") => Some(Style::DeepObject),
        _ => None,
    }
}

/// Where the parameter's schema is: its `schema`, else its first `content` entry's, whose
/// value is then a JSON document when that media type is JSON.
fn schema_of(at: &Loc, param: &Value) -> (Option<Loc>, bool) {
    if param.get("schema").is_some() {
        return (Some(at.child("schema")), false);
    }
    let Some(Value::Object(content)) = param.get("content") else {
        return (None, false);
    };
    match content.iter().next() {
        Some((media, value)) if value.get("schema").is_some() => {
            let json = media.contains("json");
            (Some(at.child("content").child(media).child("schema")), json)
        }
        _ => (None, false),
    }
}
