//! The Open Inference Protocol's tensors, checked for consistency in a decoded
//! `inference.ModelInferRequest` (KServe, MLServer, Triton; its REST twin in `rest`): every
//! input's datatype is one the protocol defines, its shape has no negative dimension, its
//! data holds exactly as many elements as the shape says — `raw_input_contents[i]` as many
//! bytes as elements × the datatype's size, or the typed `contents` field as many values —
//! and the call's inputs hold at most `limits.max_tensor_elements` elements in all. A model
//! server handed a shape of `[1000000, 1000000]` over 16 bytes fails inside (MLServer
//! answers INTERNAL with a Python traceback); here it is a refusal naming the field, never
//! its value.

pub mod rest;

use std::borrow::Cow;

use prost_reflect::{DynamicMessage, Value};

use crate::reject::FieldError;

/// The input type the profile applies to.
pub const INFER_REQUEST: &str = "inference.ModelInferRequest";

/// The `model_name` of a framed `ModelInferRequest` (for the key's `models` allowlist): read
/// alone, the other fields skipped.
pub fn model_name(framed: &[u8]) -> Option<String> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct ModelName {
        #[prost(string, tag = "1")]
        model_name: String,
    }
    let message = framed.get(5..)?;
    prost::Message::decode(message)
        .ok()
        .map(|m: ModelName| m.model_name)
}

/// The violations of `request`'s tensors, each at its field path; `max_elements`: the
/// bound on the elements of all its inputs together.
pub fn check(request: &DynamicMessage, max_elements: u64) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut total = Total::new(max_elements);
    let (inputs, raw) = (
        field(request, "inputs"),
        field(request, "raw_input_contents"),
    );
    let (inputs, raw) = (list(&inputs), list(&raw));
    if !raw.is_empty() && raw.len() != inputs.len() {
        errors.push(error(
            "raw_input_contents",
            format!("has {} entries for {} inputs", raw.len(), inputs.len()),
        ));
    }
    for (index, input) in inputs.iter().enumerate() {
        let Some(tensor) = input.as_message() else {
            continue;
        };
        let raw = raw
            .get(index)
            .and_then(Value::as_bytes)
            .map(|b| b.len() as u64);
        let counted = tensor_problem(tensor, raw)
            .and_then(|elements| total.add(elements).map_err(|why| ("inputs".into(), why)));
        if let Err(problem) = counted {
            errors.push(error(&format!("{}[{index}]", problem.0), problem.1));
        }
    }
    errors
}

/// The elements of a call's inputs so far, against `limits.max_tensor_elements`.
pub(crate) struct Total {
    elements: u64,
    limit: u64,
}

impl Total {
    pub(crate) fn new(limit: u64) -> Total {
        Total { elements: 0, limit }
    }

    /// One more input of `elements`: refused when it takes the call past the limit.
    pub(crate) fn add(&mut self, elements: u64) -> Result<(), String> {
        self.elements = self.elements.saturating_add(elements);
        match self.elements > self.limit {
            true => Err(format!(
                "brings the call's inputs past {} elements (limits.max_tensor_elements)",
                self.limit
            )),
            false => Ok(()),
        }
    }
}

/// The element count of a shape: the product of its dimensions, none negative, without
/// overflow.
pub(crate) fn elements(shape: impl IntoIterator<Item = i64>) -> Result<u64, &'static str> {
    let mut elements: u64 = 1;
    for dimension in shape {
        let dimension = u64::try_from(dimension).map_err(|_| "has a negative shape dimension")?;
        elements = elements
            .checked_mul(dimension)
            .ok_or("has a shape whose element count overflows")?;
    }
    Ok(elements)
}

/// Why a datatype is refused: never the value, the ones the protocol defines.
pub(crate) const UNKNOWN_DATATYPE: &str = "has a datatype the protocol does not define (BOOL, UINT8–64, INT8–64, FP16, BF16, FP32, FP64, BYTES)";

/// What is wrong with one input tensor: the field (relative to `inputs` or
/// `raw_input_contents`) and why; else its element count.
fn tensor_problem(tensor: &DynamicMessage, raw: Option<u64>) -> Result<u64, (String, String)> {
    let datatype = string(tensor, "datatype");
    let Some((size, typed)) = datatype_layout(&datatype) else {
        return Err(("inputs".into(), UNKNOWN_DATATYPE.into()));
    };
    let shape = field(tensor, "shape");
    let elements = elements(list(&shape).iter().map(|d| d.as_i64().unwrap_or(-1)))
        .map_err(|why| ("inputs".to_owned(), why.to_owned()))?;
    match (raw, size) {
        (Some(bytes), Some(size)) if Some(bytes) != elements.checked_mul(size) => Err((
            "raw_input_contents".into(),
            format!("holds {bytes} bytes; the shape and datatype need {elements} × {size}"),
        )),
        (Some(_), _) => Ok(elements),
        (None, _) => typed_count(tensor, typed, elements).map(|()| elements),
    }
}

/// Without raw contents, the typed `contents` field must hold one value per element.
fn typed_count(
    tensor: &DynamicMessage,
    typed: Option<&str>,
    elements: u64,
) -> Result<(), (String, String)> {
    let contents = field(tensor, "contents");
    let count = match (contents.as_deref().and_then(Value::as_message), typed) {
        (Some(contents), Some(name)) => list(&field(contents, name)).len() as u64,
        _ => 0,
    };
    match count == elements {
        true => Ok(()),
        false => Err((
            "inputs".into(),
            format!("has {count} values in its contents; its shape needs {elements}"),
        )),
    }
}

/// A datatype's element size in bytes (`None`: variable, BYTES) and its typed contents
/// field (`None`: raw contents only).
pub(crate) fn datatype_layout(datatype: &str) -> Option<(Option<u64>, Option<&'static str>)> {
    Some(match datatype {
        "BOOL" => (Some(1), Some("bool_contents")),
        "UINT8" => (Some(1), Some("uint_contents")),
        "UINT16" => (Some(2), Some("uint_contents")),
        "UINT32" => (Some(4), Some("uint_contents")),
        "UINT64" => (Some(8), Some("uint64_contents")),
        "INT8" => (Some(1), Some("int_contents")),
        "INT16" => (Some(2), Some("int_contents")),
        "INT32" => (Some(4), Some("int_contents")),
        "INT64" => (Some(8), Some("int64_contents")),
        "FP16" | "BF16" => (Some(2), None),
        "FP32" => (Some(4), Some("fp32_contents")),
        "FP64" => (Some(8), Some("fp64_contents")),
        "BYTES" => (None, Some("bytes_contents")),
        _ => return None,
    })
}

/// A field's value, borrowed from the message when it is set (never a copy of a list).
fn field<'m>(message: &'m DynamicMessage, name: &str) -> Option<Cow<'m, Value>> {
    message.get_field_by_name(name)
}

fn list<'v>(value: &'v Option<Cow<'_, Value>>) -> &'v [Value] {
    value
        .as_deref()
        .and_then(Value::as_list)
        .unwrap_or_default()
}

fn string(message: &DynamicMessage, field: &str) -> String {
    match message.get_field_by_name(field).as_deref() {
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    }
}

fn error(pointer: &str, message: String) -> FieldError {
    FieldError {
        location: "message",
        pointer: pointer.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// A `ModelInferRequest` from proto3 JSON, with the OIP proto moat ships.
    fn request(json: &str) -> DynamicMessage {
        let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/grpc");
        let set = protox::compile(["open_inference_grpc.proto"], [proto]).unwrap();
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(set).unwrap();
        let input = pool.get_message_by_name(INFER_REQUEST).unwrap();
        let mut reader = serde_json::Deserializer::from_str(json);
        DynamicMessage::deserialize(input, &mut reader).unwrap()
    }

    fn fields(json: &str) -> Vec<String> {
        check(&request(json), 1_000_000)
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn consistent_tensors_pass() {
        let typed = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
            "contents": {"fp32_contents": [1, 2]}}]}"#;
        assert_eq!(fields(typed), Vec::<String>::new());
        let raw = r#"{"inputs": [{"name": "x", "datatype": "INT16", "shape": [3]}],
            "raw_input_contents": ["AAAAAAAA"]}"#;
        assert_eq!(fields(raw), Vec::<String>::new(), "6 bytes for 3 × 2");
        let text = r#"{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1]}],
            "raw_input_contents": ["AAAAAAAAAAAA"]}"#;
        assert_eq!(
            fields(text),
            Vec::<String>::new(),
            "BYTES has no fixed size"
        );
    }

    #[test]
    fn every_inconsistency_names_its_field() {
        let short = r#"{"inputs": [{"datatype": "FP32", "shape": [1, 4]}],
            "raw_input_contents": ["AAAAAAAAAAA="]}"#;
        assert_eq!(fields(short), ["raw_input_contents[0]"]);
        let overflow = r#"{"inputs": [{"datatype": "FP64", "shape": [4294967296, 4294967296, 16]}],
            "raw_input_contents": ["AAAA"]}"#;
        assert_eq!(fields(overflow), ["inputs[0]"]);
        let unknown = r#"{"inputs": [{"datatype": "FP8", "shape": [1]}]}"#;
        assert_eq!(fields(unknown), ["inputs[0]"]);
        let negative = r#"{"inputs": [{"datatype": "FP32", "shape": [-1]}]}"#;
        assert_eq!(fields(negative), ["inputs[0]"]);
        let missing = r#"{"inputs": [{"datatype": "INT32", "shape": [2], "contents": {"int_contents": [1]}},
            {"datatype": "INT32", "shape": [1], "contents": {"int_contents": [1]}}]}"#;
        assert_eq!(fields(missing), ["inputs[0]"]);
        let uneven = r#"{"inputs": [{"datatype": "UINT8", "shape": [1]}, {"datatype": "UINT8", "shape": [1]}],
            "raw_input_contents": ["AA=="]}"#;
        assert_eq!(fields(uneven)[0], "raw_input_contents");
        // 2 + 3 elements, where the call may carry 4.
        let many = r#"{"inputs": [{"datatype": "BOOL", "shape": [2]}, {"datatype": "BOOL", "shape": [3]}],
            "raw_input_contents": ["AAA=", "AAAA"]}"#;
        assert_eq!(check(&request(many), 5), []);
        let errors = check(&request(many), 4);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].pointer, "inputs[1]");
        assert!(
            errors[0].message.contains("max_tensor_elements"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_model_name_is_read_alone() {
        let encoded =
            request(r#"{"model_name": "iris", "raw_input_contents": ["AAAA"]}"#).encode_to_vec();
        let mut framed = vec![0, 0, 0, 0, encoded.len() as u8];
        framed.extend(encoded);
        assert_eq!(model_name(&framed).as_deref(), Some("iris"));
        assert_eq!(model_name(b"\0\0\0\0\x02\x0a\xff"), None);
    }
}
