//! Stage 2, route: method + decoded path → the operation the spec declares, with its path
//! parameters. Unknown path 404; known path, other method 405 with `Allow`. Nothing the
//! spec does not declare is ever forwarded.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::reject::Rejection;

/// Compiled path templates. Built once per spec; a lookup does not allocate beyond the
/// small vector of parameter values.
pub struct Router {
    matcher: matchit::Router<usize>,
    paths: Vec<PathEntry>,
}

struct PathEntry {
    template: Arc<str>,
    /// Operation index per method, in the spec's order.
    methods: Vec<(Method, usize)>,
    allow: HeaderValue,
}

/// A route match: the operation and the raw (already percent-decoded) path parameter
/// values in template order.
#[derive(Debug, PartialEq)]
pub enum Routed<'p> {
    Operation {
        index: usize,
        template: Arc<str>,
        values: Vec<&'p str>,
    },
    /// `OPTIONS` on a path that does not declare it: moat answers with `Allow` itself.
    Options { allow: HeaderValue },
}

impl Router {
    /// `routes` are (template as matched — server prefix included —, method, operation
    /// index). Templates that differ only in parameter names share one entry.
    pub fn build(routes: &[(String, Method, usize)]) -> Result<Router, Vec<String>> {
        let mut building = Building::default();
        let problems: Vec<String> = routes
            .iter()
            .filter_map(|(template, method, index)| building.add(template, method, *index).err())
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let Building {
            matcher, mut paths, ..
        } = building;
        for path in &mut paths {
            path.allow = allow_header(&path.methods);
        }
        Ok(Router { matcher, paths })
    }

    pub fn route<'p>(&self, method: &Method, path: &'p str) -> Result<Routed<'p>, Rejection> {
        let Ok(found) = self.matcher.at(path) else {
            return Err(Rejection::RouteNotFound);
        };
        let entry = &self.paths[*found.value];
        match entry.operation(method) {
            Some(index) => Ok(Routed::Operation {
                index,
                template: entry.template.clone(),
                values: found.params.iter().map(|(_, value)| value).collect(),
            }),
            None if method == Method::OPTIONS => Ok(Routed::Options {
                allow: entry.allow.clone(),
            }),
            None => Err(Rejection::MethodNotAllowed {
                allow: entry.allow.clone(),
            }),
        }
    }
}

impl PathEntry {
    /// The operation `method` reaches here. HEAD is GET without a body, as Starlette and
    /// most servers route it.
    fn operation(&self, method: &Method) -> Option<usize> {
        let declared = |wanted: &Method| {
            self.methods
                .iter()
                .find(|(m, _)| m == wanted)
                .map(|(_, index)| *index)
        };
        declared(method).or_else(|| {
            (method == Method::HEAD)
                .then(|| declared(&Method::GET))
                .flatten()
        })
    }
}

/// The router as it is built: one entry per template, by its positional form.
#[derive(Default)]
struct Building {
    matcher: matchit::Router<usize>,
    paths: Vec<PathEntry>,
    by_key: HashMap<String, usize>,
}

impl Building {
    /// Adds the operation `index` at `method` on `template`; the same method twice on one
    /// entry is a problem.
    fn add(&mut self, template: &str, method: &Method, index: usize) -> Result<(), String> {
        let entry = self.entry(template)?;
        let methods = &mut self.paths[entry].methods;
        if methods.iter().any(|(m, _)| m == method) {
            return Err(format!(
                "`{method} {template}` is declared twice (under different parameter names)"
            ));
        }
        methods.push((method.clone(), index));
        Ok(())
    }

    /// The entry of `template`, made on first sight.
    fn entry(&mut self, template: &str) -> Result<usize, String> {
        let key = positional(template);
        if let Some(&entry) = self.by_key.get(&key) {
            return Ok(entry);
        }
        self.matcher
            .insert(key.clone(), self.paths.len())
            .map_err(|error| format!("path `{template}` cannot be routed: {error}"))?;
        self.by_key.insert(key, self.paths.len());
        self.paths.push(PathEntry {
            template: Arc::from(template),
            methods: Vec::new(),
            allow: HeaderValue::from_static(""),
        });
        Ok(self.paths.len() - 1)
    }
}

/// The `Allow` value: declared methods, HEAD where GET is declared, and OPTIONS (which
/// moat answers itself when the spec does not declare it).
fn allow_header(methods: &[(Method, usize)]) -> HeaderValue {
    let mut names: Vec<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
    if names.contains(&"GET") && !names.contains(&"HEAD") {
        names.push("HEAD");
    }
    if !names.contains(&"OPTIONS") {
        names.push("OPTIONS");
    }
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("OPTIONS"))
}

/// `/items/{id}` → `/items/{p0}`: matchit refuses two templates that name the parameter in
/// one position differently, and real specs do that across methods.
fn positional(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut count = 0;
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str(&format!("{{p{count}}}"));
                count += 1;
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, Method)]) -> Router {
        let routes: Vec<_> = routes
            .iter()
            .enumerate()
            .map(|(i, (t, m))| (t.to_string(), m.clone(), i))
            .collect();
        Router::build(&routes).expect("builds")
    }

    fn index(routed: Result<Routed<'_>, Rejection>) -> (usize, Vec<String>) {
        match routed {
            Ok(Routed::Operation { index, values, .. }) => {
                (index, values.into_iter().map(str::to_owned).collect())
            }
            other => panic!("not an operation: {other:?}"),
        }
    }

    #[test]
    fn a_colon_suffix_beats_the_bare_parameter() {
        let r = router(&[
            ("/v1/models/{name}", Method::GET),
            ("/v1/models/{name}:predict", Method::POST),
            ("/v1/models/{name}:explain", Method::POST),
        ]);
        assert_eq!(
            index(r.route(&Method::POST, "/v1/models/iris:predict")),
            (1, vec!["iris".into()])
        );
        assert_eq!(
            index(r.route(&Method::POST, "/v1/models/iris:explain")),
            (2, vec!["iris".into()])
        );
        assert_eq!(
            index(r.route(&Method::GET, "/v1/models/iris")),
            (0, vec!["iris".into()])
        );
    }

    #[test]
    fn literal_segments_beat_parameters_and_names_may_differ_per_method() {
        let r = router(&[
            ("/items/{id}", Method::GET),
            ("/items/{name}", Method::DELETE),
            ("/items/special", Method::GET),
        ]);
        assert_eq!(index(r.route(&Method::GET, "/items/special")).0, 2);
        assert_eq!(
            index(r.route(&Method::GET, "/items/7")),
            (0, vec!["7".into()])
        );
        assert_eq!(index(r.route(&Method::DELETE, "/items/7")).0, 1);
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405_with_allow() {
        let r = router(&[("/predict", Method::POST), ("/health", Method::GET)]);
        assert_eq!(
            r.route(&Method::GET, "/nope"),
            Err(Rejection::RouteNotFound)
        );
        assert_eq!(
            r.route(&Method::GET, "/predict/"),
            Err(Rejection::RouteNotFound)
        );
        assert_eq!(
            r.route(&Method::GET, "/predict"),
            Err(Rejection::MethodNotAllowed {
                allow: HeaderValue::from_static("POST, OPTIONS")
            })
        );
        assert_eq!(
            r.route(&Method::OPTIONS, "/health"),
            Ok(Routed::Options {
                allow: HeaderValue::from_static("GET, HEAD, OPTIONS")
            })
        );
        assert_eq!(index(r.route(&Method::HEAD, "/health")).0, 1);
    }

    #[test]
    fn the_same_method_twice_under_different_names_is_a_load_error() {
        let routes = vec![
            ("/a/{x}".to_owned(), Method::GET, 0),
            ("/a/{y}".to_owned(), Method::GET, 1),
        ];
        assert!(Router::build(&routes).is_err());
    }

    #[test]
    fn parameters_are_numbered_by_position() {
        assert_eq!(positional("/a/{x}/b/{y}:go"), "/a/{p0}/b/{p1}:go");
        assert_eq!(positional("/plain"), "/plain");
    }
}
