//! Fuzz targets of stage 6's parameter and form readers (`fuzz/`, replayed by
//! `tests/fuzz_targets.rs`), on an operation with the parameter shapes specs use: `params`
//! takes the input's lines as the query string, a path value and a header value; `form`
//! takes it as a form body. Each is admitted or refused, never a panic.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use crate::route::Routed;
use crate::spec::{self, Operation, source};

const SPEC: &str = r##"{"openapi": "3.1.0", "info": {"title": "fuzz", "version": "1"},
 "paths": {"/items/{id}": {"post": {"operationId": "p",
  "parameters": [
   {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}},
   {"name": "n", "in": "query", "schema": {"type": "number", "maximum": 10}},
   {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
   {"name": "csv", "in": "query", "explode": false,
    "schema": {"type": "array", "items": {"type": "integer"}}},
   {"name": "f", "in": "query", "style": "deepObject",
    "schema": {"type": "object", "properties": {"a": {"type": "boolean"}}}},
   {"name": "q", "in": "query", "content": {"application/json": {"schema": {"type": "object"}}}},
   {"name": "X-Flag", "in": "header", "schema": {"type": "boolean"}}],
  "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema":
   {"type": "object", "properties": {"a": {"type": "integer"},
    "b": {"type": "array", "items": {"type": "number"}}, "c": {"type": "string", "maxLength": 4}}}}}},
  "responses": {"200": {"description": "ok"}}}}}}"##;

static OPERATION: LazyLock<Option<Operation>> = LazyLock::new(|| {
    let mut spec =
        spec::load(source::from_bytes("file:///fuzz.json", SPEC.as_bytes()).ok()?).ok()?;
    let Ok(Routed::Operation { index, .. }) = spec.router.route(&Method::POST, "/items/1") else {
        return None;
    };
    Some(spec.operations.swap_remove(index))
});

fn operation() -> &'static Operation {
    OPERATION
        .as_ref()
        .unwrap_or_else(|| panic!("the fuzz spec loads"))
}

pub fn params(bytes: &[u8]) {
    let mut lines = bytes.split(|&b| b == b'\n');
    let query = lines.next().and_then(|q| std::str::from_utf8(q).ok());
    let path_value = lines
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .unwrap_or("1");
    let mut headers = HeaderMap::new();
    if let Some(value) = lines.next().and_then(|h| HeaderValue::from_bytes(h).ok()) {
        headers.insert("x-flag", value);
    }
    for reject_unknown in [false, true] {
        let _ = super::parameters(operation(), &[path_value], query, &headers, reject_unknown);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        for types in [
            spec::shape::Types::INTEGER,
            spec::shape::Types::NUMBER,
            spec::shape::Types::BOOLEAN,
            spec::shape::Types::ANY,
        ] {
            let _ = super::params::coerce(text, types);
        }
    }
}

pub fn form(bytes: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let limits = super::json::JsonLimits::of(&crate::config::Limits::default());
    let body = Bytes::copy_from_slice(bytes);
    let _ = super::request_body(operation(), &headers, &body, &limits);
}
