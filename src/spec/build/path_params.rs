//! Path parameters in the order the template names them: the router hands their values
//! over by position.

use super::route_template;
use crate::spec::raw::RawOperation;
use crate::spec::shape::{Shape, Types};
use crate::spec::{Param, Style};

/// Path parameters in the order their placeholders appear in the template. A placeholder
/// with no declaration gets an unconstrained string parameter (and a warning).
pub(super) fn order_path_params(
    raw: &RawOperation,
    declared: Vec<Param>,
    warnings: &mut Vec<String>,
) -> Vec<Param> {
    let mut declared: Vec<Option<Param>> = declared.into_iter().map(Some).collect();
    let template = route_template(&raw.template);
    let ordered = placeholders(&template)
        .map(|name| {
            take_named(&mut declared, name).unwrap_or_else(|| undeclared(raw, name, warnings))
        })
        .collect();
    for unused in declared.into_iter().flatten() {
        warnings.push(format!(
            "{}: path parameter `{}` is not in the template",
            raw.at, unused.name
        ));
    }
    ordered
}

/// The names of a template's `{placeholders}`, in order (up to one left unclosed).
fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    let mut rest = template;
    std::iter::from_fn(move || {
        let open = rest.find('{')?;
        let close = rest[open..].find('}')?;
        let name = &rest[open + 1..open + close];
        rest = &rest[open + close + 1..];
        Some(name)
    })
}

/// The declared parameter called `name`, taken out of the list.
fn take_named(declared: &mut [Option<Param>], name: &str) -> Option<Param> {
    declared
        .iter_mut()
        .find(|p| p.as_ref().is_some_and(|p| p.name == name))
        .and_then(Option::take)
}

/// A placeholder no parameter declares: any value is accepted, and the spec warned about.
fn undeclared(raw: &RawOperation, name: &str, warnings: &mut Vec<String>) -> Param {
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
}
