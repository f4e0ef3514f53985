//! The request `moat explain` runs through the stages, built from the command line as a
//! client would send it.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, TE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::Full;

use super::Input;
use crate::grpc::Services;

/// The request `input` describes, and notes on what was assumed; a malformed one is a
/// usage error, not a verdict. The method `GRPC` makes it a gRPC call of `grpc`'s.
pub(super) fn build(
    input: &Input,
    grpc: Option<&Services>,
) -> Result<(Request<Full<Bytes>>, Vec<String>), String> {
    if input.method.eq_ignore_ascii_case("grpc") {
        return grpc_call(input, grpc);
    }
    let method = Method::from_bytes(input.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", input.method))?;
    let (uri, host) = target(&input.url)?;
    let mut headers = headers(&input.headers)?;
    if !headers.contains_key(HOST) {
        let host = HeaderValue::from_str(&host)
            .map_err(|_| "the URL's host is not a valid Host header".to_owned())?;
        headers.insert(HOST, host);
    }
    let body = Bytes::from(input.body.clone().unwrap_or_default());
    let notes = describe_body(&mut headers, &body);
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok((request, notes))
}

/// `GRPC package.Service/Method`: a call as gRPC clients send it — POST over HTTP/2,
/// `application/grpc`, `te: trailers` — its message given as proto3 JSON and encoded by the
/// method's input type.
fn grpc_call(
    input: &Input,
    grpc: Option<&Services>,
) -> Result<(Request<Full<Bytes>>, Vec<String>), String> {
    let grpc = grpc.ok_or("the config names no gRPC services (`grpc.protos`)")?;
    let path = format!("/{}", input.url.trim_start_matches('/'));
    let uri: Uri = path
        .parse()
        .map_err(|_| format!("`{}` is not a gRPC method name", input.url))?;
    let mut headers = headers(&input.headers)?;
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    let mut notes = Vec::new();
    let body = match &input.body {
        Some(json) => {
            let (message, type_name) = grpc.message_from_json(&path, json)?;
            notes.push(format!(
                "gRPC call over HTTP/2; its message given as proto3 JSON, encoded as {type_name} \
                 ({} bytes framed)",
                message.len()
            ));
            message
        }
        None => Bytes::new(),
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = headers;
    Ok((request, notes))
}

/// The request target, and the `Host` it implies. Only the path and query matter to stages
/// 1–6; a full URL's authority becomes the request's `Host` (unless -H gives one), as a
/// client would send it.
fn target(url: &str) -> Result<(Uri, String), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("the URL does not parse: {e}"))?;
    let host = uri
        .authority()
        .map_or_else(|| "localhost".to_owned(), |a| a.as_str().to_owned());
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Ok((Uri::from(path), host))
}

/// The `-H` options, in their order.
fn headers(lines: &[String]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (number, line) in lines.iter().enumerate() {
        let (name, value) = header(number + 1, line)?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The `number`th `-H` option; never quoted back: a malformed line may still hold a
/// credential.
fn header(number: usize, line: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = line.split_once(':').ok_or_else(|| {
        format!("header {number} (of the -H options) needs the form `Name: value`")
    })?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{}` is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
    Ok((name, value))
}

/// A body's `Content-Length`, and a JSON `Content-Type` when none was given and the body
/// looks like JSON; the notes say what was assumed.
fn describe_body(headers: &mut HeaderMap, body: &Bytes) -> Vec<String> {
    let mut notes = Vec::new();
    if body.is_empty() {
        return notes;
    }
    if !headers.contains_key(CONTENT_TYPE) && matches!(body.first(), Some(b'{' | b'[')) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        notes.push("no Content-Type given; assumed application/json".to_owned());
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    notes
}
