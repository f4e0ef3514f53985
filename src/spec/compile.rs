//! Compiling normalised schemas with the `jsonschema` crate, set up the way a security check
//! needs it: draft 2020-12, the linear-time `regex` engine (no backtracking, so no ReDoS;
//! look-around fails to compile instead of being dropped), formats asserted, OpenAPI's own
//! formats added, and no way to fetch a remote `$ref`.

use base64::Engine;
use jsonschema::{Draft, PatternOptions, Registry, ValidationOptions, Validator};
use serde_json::{Value, json};

use super::failure;
use super::source::Documents;
use crate::reject::FieldError;

/// At most this many failures are reported for one request.
pub const MAX_ERRORS: usize = 20;

fn options() -> ValidationOptions<'static> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_pattern_options(PatternOptions::regex())
        .should_validate_formats(true)
        // `binary`, `password` and the like are documentation; unknown formats stay so.
        .should_ignore_unknown_formats(true)
        .with_format("int32", |s: &str| s.parse::<i32>().is_ok())
        .with_format("int64", |s: &str| s.parse::<i64>().is_ok())
        .with_format("float", |s: &str| {
            s.parse::<f32>().is_ok_and(f32::is_finite)
        })
        .with_format("double", |s: &str| {
            s.parse::<f64>().is_ok_and(f64::is_finite)
        })
        .with_format("byte", is_base64)
}

fn is_base64(text: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .is_ok()
}

/// Checks that `pattern` compiles exactly as the validator will compile it.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    options()
        .build(&json!({"pattern": pattern}))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Compiles schemas that live inside the loaded documents, `$ref`s resolved against them.
pub struct Compiler<'d> {
    registry: Registry<'d>,
}

impl<'d> Compiler<'d> {
    pub fn new(docs: &'d Documents) -> Result<Self, String> {
        let resources = docs.docs.iter().map(|(uri, doc)| (uri.as_str(), doc));
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .extend(resources)
            .and_then(|builder| builder.prepare())
            .map_err(|e| format!("cannot index the documents for `$ref`s: {e}"))?;
        Ok(Self { registry })
    }

    /// Compiles the schema at `uri#pointer`.
    pub fn compile(&self, uri: &str, pointer: &str) -> Result<Schema, String> {
        let root = json!({"$ref": format!("{uri}#{}", fragment(pointer))});
        let validator = options()
            .with_registry(&self.registry)
            .build(&root)
            .map_err(|e| {
                format!(
                    "{uri}#{pointer}: the schema does not compile: {}",
                    e.masked()
                )
            })?;
        Ok(Schema { validator })
    }

    /// Compiles a schema written inline (for parameters built by moat itself).
    pub fn compile_value(&self, schema: &Value) -> Result<Schema, String> {
        let validator = options()
            .with_registry(&self.registry)
            .build(schema)
            .map_err(|e| format!("the schema does not compile: {}", e.masked()))?;
        Ok(Schema { validator })
    }
}

/// Compiles a schema that stands alone (a gRPC method's `grpc.rules`): its own `$defs`, no
/// document around it.
pub fn standalone(schema: &Value) -> Result<Schema, String> {
    let validator = options()
        .build(schema)
        .map_err(|e| format!("the schema does not compile: {}", e.masked()))?;
    Ok(Schema { validator })
}

/// A compiled schema several operations' copies share (an `Rpc` is cloned with its
/// operation); equal when it is the same one.
#[derive(Debug, Clone)]
pub struct SharedSchema(pub std::sync::Arc<Schema>);

impl PartialEq for SharedSchema {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedSchema {}

/// What a fragment carries as is besides ASCII letters and digits.
const FRAGMENT_SAFE: &str = "/~-._:@!$&'()*+,;=";

/// A pointer as a URI fragment: the characters a URI cannot carry, percent-encoded.
fn fragment(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len());
    for c in pointer.chars() {
        if c.is_ascii_alphanumeric() || FRAGMENT_SAFE.contains(c) {
            out.push(c);
        } else {
            let mut buffer = [0u8; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// A compiled schema.
pub struct Schema {
    validator: Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl Schema {
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }

    /// Appends this instance's failures (up to the cap) to `errors`; true when valid.
    /// `prefix` is the JSON pointer of the instance within its location (a parameter name).
    pub fn check(
        &self,
        instance: &Value,
        location: &'static str,
        prefix: &str,
        errors: &mut Vec<FieldError>,
    ) -> bool {
        // The fast path: one pass, no error values built.
        if self.validator.is_valid(instance) {
            return true;
        }
        for error in self.validator.iter_errors(instance) {
            if errors.len() >= MAX_ERRORS {
                break;
            }
            failure::push(&error, location, prefix, errors, MAX_ERRORS);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn compile(schema: Value) -> Schema {
        let docs = Documents {
            root: "urn:t".into(),
            docs: BTreeMap::from([("urn:t".to_owned(), json!({"s": schema}))]),
        };
        Compiler::new(&docs)
            .unwrap()
            .compile("urn:t", "/s")
            .unwrap()
    }

    #[test]
    fn patterns_have_ecma_meaning() {
        let digits = compile(json!({"type": "string", "pattern": r"^\d+$"}));
        assert!(digits.is_valid(&json!("123")));
        // ECMA `\d` is ASCII only: an Arabic-Indic three is not a digit.
        assert!(!digits.is_valid(&json!("١٢٣")));
        // `$` does not match before a trailing newline.
        assert!(!digits.is_valid(&json!("123\n")));
        let word = compile(json!({"pattern": r"^\w+$"}));
        assert!(!word.is_valid(&json!("café")));
        let space = compile(json!({"pattern": r"^\s$"}));
        assert!(space.is_valid(&json!("\u{a0}")));
    }

    #[test]
    fn lookaround_and_backreferences_do_not_compile() {
        assert!(check_pattern("(?=a)").is_err());
        assert!(check_pattern(r"(a)\1").is_err());
        assert!(check_pattern("^[a-z]{1,8}$").is_ok());
    }

    #[test]
    fn formats_are_asserted_including_openapis_own() {
        let cases = [
            ("date-time", "2026-11-29T10:00:00Z", "yesterday"),
            ("date", "2026-11-29", "2026-13-01"),
            ("time", "10:00:00Z", "25:00"),
            ("uuid", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "not-a-uuid"),
            ("email", "a@example.com", "nobody"),
            ("ipv4", "192.0.2.1", "300.1.1.1"),
            ("ipv6", "::1", "::g"),
            ("uri", "https://example.com/x", "not a uri"),
            ("int32", "2147483647", "2147483648"),
            ("int64", "-9223372036854775808", "9223372036854775808"),
            ("float", "1.5", "1e39"),
            ("double", "1e300", "NaN"),
            ("byte", "aGVsbG8=", "not base64!"),
        ];
        for (format, good, bad) in cases {
            let schema = compile(json!({"type": "string", "format": format}));
            assert!(schema.is_valid(&json!(good)), "{format} refused {good}");
            assert!(!schema.is_valid(&json!(bad)), "{format} accepted {bad}");
        }
    }

    #[test]
    fn errors_are_capped_located_and_never_echo_the_value() {
        let schema = compile(json!({"type": "array", "items": {"type": "string", "maxLength": 3}}));
        let secret = "s3cr3t-value-that-is-long";
        let instance = Value::Array(vec![json!(secret); 50]);
        let mut errors = Vec::new();
        assert!(!schema.check(&instance, "body", "", &mut errors));
        assert_eq!(errors.len(), MAX_ERRORS);
        assert_eq!(errors[0].pointer, "/0");
        assert!(!errors[0].message.contains(secret), "{}", errors[0].message);
    }

    #[test]
    fn pointers_with_special_characters_resolve() {
        let docs = Documents {
            root: "urn:t".into(),
            docs: BTreeMap::from([(
                "urn:t".to_owned(),
                json!({"paths": {"/v1/{name}:predict": {"s": {"type": "integer"}}}}),
            )]),
        };
        let compiler = Compiler::new(&docs).unwrap();
        let schema = compiler
            .compile("urn:t", "/paths/~1v1~1{name}:predict/s")
            .unwrap();
        assert!(schema.is_valid(&json!(1)));
        assert!(!schema.is_valid(&json!("1")));
    }
}
