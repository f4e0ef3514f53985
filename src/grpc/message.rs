//! One request message checked against its method's input type from the loaded
//! descriptors: it must decode as that type (wire types, lengths, UTF-8 strings — prost-reflect
//! decodes it, from shared bytes so `bytes` fields are not copied), carry no field the type
//! does not declare (unless the method allows unknown fields), and stay within the guard
//! rails the JSON bodies have: nesting depth, items per repeated field or map, bytes per
//! string. Every violation names the field path (`inputs[0].shape`), never the value.

use std::fmt::Write as _;

use bytes::Bytes;
use prost_reflect::{
    DynamicMessage, MessageDescriptor, ReflectMessage as _, SerializeOptions, Value,
};

use crate::config::Limits;
use crate::oip;
use crate::reject::FieldError;
use crate::spec::compile::SharedSchema;

/// What a method's messages are checked against.
#[derive(Debug, Clone)]
pub struct MessageCheck {
    input: MessageDescriptor,
    allow_unknown: bool,
    max_depth: usize,
    max_items: usize,
    max_members: usize,
    max_string_bytes: usize,
    max_tensor_elements: u64,
    /// `grpc.rules.<method>`, over the message's proto3 JSON.
    rules: Option<SharedSchema>,
}

impl MessageCheck {
    pub fn new(input: MessageDescriptor, allow_unknown: bool, limits: &Limits) -> MessageCheck {
        MessageCheck {
            input,
            allow_unknown,
            max_depth: limits.max_json_depth,
            max_items: limits.max_array_items,
            max_members: limits.max_object_members,
            max_string_bytes: limits.max_string_bytes,
            max_tensor_elements: limits.max_tensor_elements,
            rules: None,
        }
    }

    /// The same, each message also held to `rules` (see [`MessageCheck::ruled`]).
    pub fn with_rules(mut self, rules: Option<SharedSchema>) -> MessageCheck {
        self.rules = rules;
        self
    }

    /// Checks one message (without its 5-byte prefix).
    pub fn check(&self, message: Bytes) -> Result<(), Vec<FieldError>> {
        let decoded = DynamicMessage::decode(self.input.clone(), message).map_err(|error| {
            vec![violation(
                "",
                format!("is not a {} ({error})", self.input.full_name()),
            )]
        })?;
        let mut errors = Vec::new();
        self.walk(&decoded, &mut String::new(), 1, &mut errors);
        if errors.is_empty() && self.input.full_name() == oip::INFER_REQUEST {
            errors = oip::check(&decoded, self.max_tensor_elements);
        }
        if errors.is_empty() {
            self.ruled(&decoded, &mut errors);
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors),
        }
    }

    fn walk(
        &self,
        message: &DynamicMessage,
        path: &mut String,
        depth: usize,
        errors: &mut Vec<FieldError>,
    ) {
        if depth > self.max_depth {
            errors.push(violation(
                path,
                format!(
                    "nests deeper than {} messages (limits.max_json_depth)",
                    self.max_depth
                ),
            ));
            return;
        }
        if !self.allow_unknown {
            for unknown in message.unknown_fields() {
                errors.push(violation(
                    path,
                    format!(
                        "carries field number {}, which {} does not declare (grpc.methods.<method>.unknown_fields: allow lets it through)",
                        unknown.number(),
                        message.descriptor().full_name()
                    ),
                ));
            }
        }
        for (field, value) in message.fields() {
            let mark = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(field.name());
            self.value(value, path, depth, errors);
            path.truncate(mark);
        }
    }

    fn value(&self, value: &Value, path: &mut String, depth: usize, errors: &mut Vec<FieldError>) {
        match value {
            Value::Message(message) => self.walk(message, path, depth + 1, errors),
            Value::String(text) if text.len() > self.max_string_bytes => errors.push(violation(
                path,
                format!(
                    "is longer than {} bytes (limits.max_string_bytes)",
                    self.max_string_bytes
                ),
            )),
            Value::List(items) => self.list(items, path, depth, errors),
            Value::Map(entries) => {
                if entries.len() > self.max_members {
                    errors.push(violation(
                        path,
                        format!(
                            "has more than {} entries (limits.max_object_members)",
                            self.max_members
                        ),
                    ));
                    return;
                }
                for value in entries.values() {
                    self.value(value, path, depth, errors);
                }
            }
            _ => {}
        }
    }
}

impl MessageCheck {
    /// A repeated field: its length, then each message or string in it.
    fn list(&self, items: &[Value], path: &mut String, depth: usize, errors: &mut Vec<FieldError>) {
        if items.len() > self.max_items {
            let limit = self.max_items;
            let why = format!("has more than {limit} items (limits.max_array_items)");
            errors.push(violation(path, why));
            return;
        }
        // Numbers, booleans and bytes have nothing to check: a tensor's values are not
        // walked one by one.
        if !matches!(items.first(), Some(Value::Message(_) | Value::String(_))) {
            return;
        }
        for (index, item) in items.iter().enumerate() {
            let mark = path.len();
            let _ = write!(path, "[{index}]");
            self.value(item, path, depth, errors);
            path.truncate(mark);
        }
    }
}

impl MessageCheck {
    /// `grpc.rules`: the message as proto3 JSON — proto field names, 64-bit integers as
    /// numbers (so `maximum` applies), enums by name, bytes in base64, unset fields absent —
    /// checked by the same validator as the REST bodies; each failure named by field path.
    fn ruled(&self, message: &DynamicMessage, errors: &mut Vec<FieldError>) {
        let Some(SharedSchema(rules)) = &self.rules else {
            return;
        };
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .stringify_64_bit_integers(false);
        let json = match message.serialize_with_options(serde_json::value::Serializer, &options) {
            Ok(json) => json,
            Err(error) => {
                let why = format!("cannot be read as proto3 JSON for grpc.rules ({error})");
                return errors.push(violation("", why));
            }
        };
        let mut failures = Vec::new();
        if !rules.check(&json, "message", "", &mut failures) {
            errors.extend(failures.into_iter().map(|mut failure| {
                failure.pointer = field_path(&failure.pointer);
                failure
            }));
        }
    }
}

/// A JSON pointer into the message's JSON as the field path gRPC errors name:
/// `/inputs/0/shape/1` → `inputs[0].shape[1]`.
fn field_path(pointer: &str) -> String {
    let mut path = String::with_capacity(pointer.len());
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            let _ = write!(path, "[{segment}]");
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    path
}

fn violation(path: &str, message: String) -> FieldError {
    FieldError {
        location: "message",
        pointer: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    const PROTO: &str = r#"
syntax = "proto3";
package t;
message Tensor { string name = 1; repeated int64 shape = 2; Tensor inner = 3; map<string, string> tags = 4; }
message Request { string model_name = 1; repeated Tensor inputs = 2; }
"#;

    fn check(limits: &Limits, allow_unknown: bool) -> MessageCheck {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.proto"), PROTO).unwrap();
        let pool = protox::compile(["t.proto"], [dir.path()]).unwrap();
        let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(pool).unwrap();
        let input = pool.get_message_by_name("t.Request").unwrap();
        MessageCheck::new(input, allow_unknown, limits)
    }

    fn encode(check: &MessageCheck, json: &str) -> Bytes {
        let mut reader = serde_json::Deserializer::from_str(json);
        let message = DynamicMessage::deserialize(check.input.clone(), &mut reader).unwrap();
        Bytes::from(message.encode_to_vec())
    }

    #[test]
    fn a_message_of_its_type_passes_and_garbage_does_not() {
        let check = check(&Limits::default(), false);
        let good = encode(
            &check,
            r#"{"model_name": "iris", "inputs": [{"name": "x", "shape": [1, 4]}]}"#,
        );
        assert_eq!(check.check(good), Ok(()));
        let errors = check.check(Bytes::from_static(b"\x0a\xff")).unwrap_err();
        assert!(
            errors[0].message.starts_with("is not a t.Request"),
            "{errors:?}"
        );
        // Field 1 (a string) sent as a varint: the wrong wire type.
        assert!(check.check(Bytes::from_static(b"\x08\x01")).is_err());
    }

    #[test]
    fn an_unknown_field_is_named_by_its_path_unless_allowed() {
        let strict = check(&Limits::default(), false);
        let mut bytes = encode(&strict, r#"{"inputs": [{"name": "x"}]}"#).to_vec();
        // inputs[0] gets field 9 (a varint) its type does not declare.
        bytes[1] += 2;
        bytes.extend_from_slice(b"\x48\x01");
        let errors = strict.check(Bytes::from(bytes.clone())).unwrap_err();
        assert_eq!(errors[0].pointer, "inputs[0]");
        assert!(errors[0].message.contains("field number 9"), "{errors:?}");
        assert_eq!(
            check(&Limits::default(), true).check(Bytes::from(bytes)),
            Ok(())
        );
    }

    #[test]
    fn the_guard_rails_bound_depth_items_and_strings() {
        let limits = Limits {
            max_json_depth: 3,
            max_array_items: 2,
            max_string_bytes: 4,
            ..Limits::default()
        };
        let check = check(&limits, false);
        let deep = encode(
            &check,
            r#"{"inputs": [{"inner": {"inner": {"inner": {}}}}]}"#,
        );
        let errors = check.check(deep).unwrap_err();
        assert_eq!(errors[0].pointer, "inputs[0].inner.inner");
        let many = encode(&check, r#"{"inputs": [{"shape": [1, 2, 3]}]}"#);
        assert_eq!(check.check(many).unwrap_err()[0].pointer, "inputs[0].shape");
        let long = encode(&check, r#"{"model_name": "iris-long"}"#);
        assert_eq!(check.check(long).unwrap_err()[0].pointer, "model_name");
    }

    #[test]
    fn rules_hold_the_proto3_json_and_name_the_field_path() {
        let rules = serde_json::json!({
            "properties": {
                "model_name": {"pattern": "^[a-z]+$"},
                "inputs": {"items": {"properties": {"shape": {"items": {"maximum": 8}}}}}
            }
        });
        let rules = crate::spec::compile::standalone(&rules).unwrap();
        let check = check(&Limits::default(), false)
            .with_rules(Some(SharedSchema(std::sync::Arc::new(rules))));
        let good = encode(
            &check,
            r#"{"model_name": "iris", "inputs": [{"shape": [1, 8]}]}"#,
        );
        assert_eq!(check.check(good), Ok(()));
        let wide = encode(
            &check,
            r#"{"model_name": "iris", "inputs": [{"shape": [1, 9]}]}"#,
        );
        let errors = check.check(wide).unwrap_err();
        assert_eq!(errors[0].pointer, "inputs[0].shape[1]", "{errors:?}");
        assert!(
            !errors[0].message.contains('9'),
            "no value echoed: {errors:?}"
        );
        let named = encode(&check, r#"{"model_name": "IRIS-secret"}"#);
        let errors = check.check(named).unwrap_err();
        assert_eq!(errors[0].pointer, "model_name");
        assert!(!errors[0].message.contains("secret"), "{errors:?}");
    }

    #[test]
    fn a_pointer_reads_as_a_field_path() {
        assert_eq!(field_path("/inputs/0/shape/1"), "inputs[0].shape[1]");
        assert_eq!(field_path(""), "");
        assert_eq!(field_path("/tags/a~1b"), "tags.a/b");
    }
}
