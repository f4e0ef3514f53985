//! `moat spec loose` for gRPC: a `.proto` bounds nothing — no string length, no item count —
//! so every string, `bytes`, repeated and map field of a method's input is held only by
//! moat's guard rails. This lists them per method, by the field path `grpc.rules` and the
//! refusals use, with the guard rail that holds each, so an operator can see what to bound.

use std::collections::HashSet;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::Services;

/// Each routed method's input and its open fields, in declaration order (`None`: no method
/// takes a message moat reads).
pub fn open_fields(services: &Services) -> Option<Value> {
    let mut methods = Map::new();
    for operation in &services.operations {
        let Some(rpc) = operation.rpc.as_ref().filter(|rpc| !rpc.answered_by_moat) else {
            continue;
        };
        let Some(input) = &rpc.input else { continue };
        let mut open = Vec::new();
        walk(input, "", &mut HashSet::new(), &mut open);
        if !open.is_empty() {
            let entry = json!({"input": input.full_name(), "open": open});
            methods.insert(operation.id.to_string(), entry);
        }
    }
    (!methods.is_empty()).then(|| json!({ "grpc": methods }))
}

/// The open fields of `message` under `prefix`; `seen`: the message types on the way down,
/// so a recursive type is listed once.
fn walk(
    message: &MessageDescriptor,
    prefix: &str,
    seen: &mut HashSet<String>,
    open: &mut Vec<String>,
) {
    if !seen.insert(message.full_name().to_owned()) {
        return open.push(format!(
            "{prefix}: recursive {} (limits.max_json_depth)",
            message.full_name()
        ));
    }
    for field in message.fields() {
        let path = match prefix.is_empty() {
            true => field.name().to_owned(),
            false => format!("{prefix}.{}", field.name()),
        };
        if let Some(held) = open_kind(&field) {
            open.push(format!("{path}: {held}"));
        }
        if let (Kind::Message(inner), false) = (field.kind(), field.is_map()) {
            let below = if field.is_list() {
                format!("{path}[]")
            } else {
                path
            };
            walk(&inner, &below, seen, open);
        }
    }
    seen.remove(message.full_name());
}

/// What an unbounded field is and which guard rail holds it; `None` for one with a fixed
/// size (a number, a bool, an enum, a single message).
fn open_kind(field: &FieldDescriptor) -> Option<String> {
    if field.is_map() {
        return Some("map (limits.max_object_members)".to_owned());
    }
    let kind = match field.kind() {
        Kind::Message(message) => message.name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    };
    match (field.is_list(), field.kind()) {
        (true, _) => Some(format!("repeated {kind} (limits.max_array_items)")),
        (false, Kind::String) => Some("string (limits.max_string_bytes)".to_owned()),
        (false, Kind::Bytes) => Some("bytes (grpc.max_message_bytes)".to_owned()),
        (false, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inference_request_lists_its_open_fields() {
        let proto = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/grpc/open_inference_grpc.proto"
        );
        let config = crate::config::GrpcConfig::for_tests(vec![proto.into()]);
        let services = super::super::load(&config).unwrap();
        let report = open_fields(&services).unwrap();
        let infer = &report["grpc"]["inference.GRPCInferenceService/ModelInfer"];
        assert_eq!(infer["input"], "inference.ModelInferRequest");
        let open: Vec<&str> = infer["open"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for expected in [
            "model_name: string (limits.max_string_bytes)",
            "inputs: repeated InferInputTensor (limits.max_array_items)",
            "inputs[].shape: repeated int64 (limits.max_array_items)",
            "raw_input_contents: repeated bytes (limits.max_array_items)",
            "parameters: map (limits.max_object_members)",
        ] {
            assert!(open.contains(&expected), "{expected} in {open:#?}");
        }
    }
}
