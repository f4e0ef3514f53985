//! The Open Inference Protocol's REST twin of `ModelInfer`: `POST /v2/models/{name}/infer`
//! (or `…/versions/{version}/infer`) with a JSON body, checked as the gRPC message is (see
//! the module) — the key's `models` allowlist on the path's model, and each input's
//! datatype, shape and data consistent — whether or not an OpenAPI spec declares the path:
//! the path is the protocol's own, served by KServe, MLServer and Triton alike. Errors are
//! located by JSON pointer (`/inputs/0/data`), never echoing a value.

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

use super::{Total, UNKNOWN_DATATYPE, datatype_layout, elements};
use crate::reject::FieldError;

/// The model a request names when it is the protocol's REST infer call.
pub fn infer_model<'p>(method: &http::Method, path: &'p str) -> Option<&'p str> {
    if method != http::Method::POST {
        return None;
    }
    let named = path.strip_prefix("/v2/models/")?.strip_suffix("/infer")?;
    let model = match named.split_once("/versions/") {
        Some((model, version)) if !version.is_empty() && !version.contains('/') => model,
        Some(_) => return None,
        None => named,
    };
    (!model.is_empty() && !model.contains('/')).then_some(model)
}

/// The header Triton's binary tensor extension sends: the JSON part's length, the binary
/// data after it.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The violations of an infer request's body: all of it, or under Triton's binary
/// extension its JSON part, checked by [`check`].
pub fn check_body(
    headers: &http::HeaderMap,
    body: &[u8],
    max_elements: u64,
) -> Result<(), Vec<FieldError>> {
    let Some(length) = headers.get(HEADER_LENGTH) else {
        return check(body, max_elements);
    };
    let length = length.to_str().ok().and_then(|l| l.parse::<usize>().ok());
    match length.and_then(|length| body.get(..length)) {
        Some(json) => check(json, max_elements),
        None => Err(vec![FieldError {
            location: "header",
            pointer: HEADER_LENGTH.to_owned(),
            message: "is not a length within the body".to_owned(),
        }]),
    }
}

#[derive(Deserialize)]
struct InferRequest {
    inputs: Vec<Input>,
}

#[derive(Deserialize)]
struct Input {
    datatype: String,
    shape: Vec<i64>,
    #[serde(default)]
    data: Option<Leaves>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    /// Triton's binary extension: the input's bytes follow the JSON.
    #[serde(default)]
    binary_data_size: Option<u64>,
}

/// How many values a tensor's `data` holds: nested arrays (row-major, or flat) counted to
/// their leaves without keeping any of them.
struct Leaves(u64);

impl<'de> Deserialize<'de> for Leaves {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Leaves, D::Error> {
        deserializer.deserialize_any(Counter)
    }
}

struct Counter;

impl<'de> Visitor<'de> for Counter {
    type Value = Leaves;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tensor data")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Leaves, A::Error> {
        let mut count = 0u64;
        while let Some(Leaves(leaves)) = items.next_element()? {
            count = count.saturating_add(leaves);
        }
        Ok(Leaves(count))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Leaves, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Leaves(1))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Leaves, E> {
        Ok(Leaves(1))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Leaves, E> {
        Ok(Leaves(1))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Leaves, E> {
        Ok(Leaves(1))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Leaves, E> {
        Ok(Leaves(1))
    }
    fn visit_str<E>(self, _: &str) -> Result<Leaves, E> {
        Ok(Leaves(1))
    }
}

/// The violations of an infer request's JSON (`json`: the body, or its JSON part under the
/// binary extension), each at its pointer; `max_elements` bounds all inputs together.
fn check(json: &[u8], max_elements: u64) -> Result<(), Vec<FieldError>> {
    let request: InferRequest = serde_json::from_slice(json).map_err(|error| {
        let why = format!("is not an Open Inference Protocol infer request: {error}");
        vec![violation(String::new(), why)]
    })?;
    let mut total = Total::new(max_elements);
    let errors: Vec<FieldError> = (request.inputs.iter().enumerate())
        .filter_map(|(index, input)| {
            let problem = input_problem(input, &mut total).err()?;
            Some(violation(
                format!("/inputs/{index}{}", problem.0),
                problem.1,
            ))
        })
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(errors),
    }
}

/// What is wrong with one input: the pointer below it, and why.
fn input_problem(input: &Input, total: &mut Total) -> Result<(), (&'static str, String)> {
    let Some((size, _)) = datatype_layout(&input.datatype) else {
        return Err(("/datatype", UNKNOWN_DATATYPE.to_owned()));
    };
    let count = elements(input.shape.iter().copied()).map_err(|why| ("/shape", why.into()))?;
    total.add(count).map_err(|why| ("", why))?;
    let binary = input.parameters.as_ref().and_then(|p| p.binary_data_size);
    match (&input.data, binary, size) {
        (Some(Leaves(values)), None, _) if *values != count => Err((
            "/data",
            format!("holds {values} values; its shape needs {count}"),
        )),
        (Some(_), None, _) => Ok(()),
        (None, Some(bytes), Some(size)) if Some(bytes) != count.checked_mul(size) => Err((
            "/parameters/binary_data_size",
            format!("is {bytes} bytes; the shape and datatype need {count} × {size}"),
        )),
        (None, Some(_), _) => Ok(()),
        (Some(_), Some(_), _) => Err((
            "",
            "carries both data and binary_data_size: send one".to_owned(),
        )),
        (None, None, _) => Err(("", "has neither data nor binary_data_size".to_owned())),
    }
}

fn violation(pointer: String, message: String) -> FieldError {
    FieldError {
        location: "body",
        pointer,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(json: &str) -> Vec<String> {
        match check(json.as_bytes(), 100) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn the_infer_path_names_its_model() {
        let post = http::Method::POST;
        assert_eq!(infer_model(&post, "/v2/models/iris/infer"), Some("iris"));
        assert_eq!(
            infer_model(&post, "/v2/models/iris/versions/2/infer"),
            Some("iris")
        );
        for other in [
            "/v2/models/iris/ready",
            "/v2/models//infer",
            "/v2/models/a/b/infer",
            "/v2/models/iris/versions//infer",
        ] {
            assert_eq!(infer_model(&post, other), None, "{other}");
        }
        assert_eq!(
            infer_model(&http::Method::GET, "/v2/models/iris/infer"),
            None
        );
    }

    #[test]
    fn consistent_tensors_pass_flat_or_nested() {
        let flat = r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}"#;
        assert_eq!(pointers(flat), Vec::<String>::new());
        let nested = r#"{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "BYTES", "data": [["a", "b"], ["c", "d"]]}]}"#;
        assert_eq!(pointers(nested), Vec::<String>::new());
        let binary = r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}]}"#;
        assert_eq!(pointers(binary), Vec::<String>::new());
    }

    #[test]
    fn each_inconsistency_is_refused_at_its_pointer() {
        let short = r#"{"inputs": [{"shape": [1, 4], "datatype": "FP32", "data": [1, 2]}]}"#;
        assert_eq!(pointers(short), ["/inputs/0/data"]);
        let unknown = r#"{"inputs": [{"shape": [1], "datatype": "FP33", "data": [1]}]}"#;
        assert_eq!(pointers(unknown), ["/inputs/0/datatype"]);
        let negative = r#"{"inputs": [{"shape": [-1], "datatype": "FP32", "data": [1]}]}"#;
        assert_eq!(pointers(negative), ["/inputs/0/shape"]);
        let binary = r#"{"inputs": [{"shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 4}}]}"#;
        assert_eq!(pointers(binary), ["/inputs/0/parameters/binary_data_size"]);
        let empty = r#"{"inputs": [{"shape": [2], "datatype": "INT32"}]}"#;
        assert_eq!(pointers(empty), ["/inputs/0"]);
        let many = r#"{"inputs": [{"shape": [60], "datatype": "BOOL", "parameters": {"binary_data_size": 60}},
            {"shape": [60], "datatype": "BOOL", "parameters": {"binary_data_size": 60}}]}"#;
        assert_eq!(pointers(many), ["/inputs/1"]);
        assert_eq!(pointers(r#"{"outputs": []}"#), [""]);
        assert_eq!(pointers("[1, 2"), [""]);
    }
}
