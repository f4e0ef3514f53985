//! `buf.validate` (protovalidate) annotations in the loaded definitions. moat does not
//! enforce them: the Rust implementation (`prost-protovalidate`) could not be run against
//! protovalidate's conformance suite here (a Go harness), and the issue's bar is passing it
//! for every rule enabled. Served anyway, an annotated proto would promise checks nobody
//! makes — so a proto that carries them does not load unless the operator says
//! `grpc.protovalidate: ignore`, and the rules can be written as `grpc.rules` meanwhile.

use prost_reflect::{DescriptorPool, DynamicMessage};

/// protovalidate's extension number on `FieldOptions`, `MessageOptions` and `OneofOptions`
/// (`buf.validate.field`, `.message`, `.oneof`): also found when the pool lacks
/// `buf/validate/validate.proto` and the option stays an unknown field.
const BUF_VALIDATE: u32 = 1159;

/// Where the pool's messages carry protovalidate rules: `package.Message.field` (or the
/// message, or the oneof).
pub fn annotated(pool: &DescriptorPool) -> Vec<String> {
    let mut places = Vec::new();
    for message in pool.all_messages() {
        if carries(&message.options()) {
            places.push(message.full_name().to_owned());
        }
        let fields = message.fields().filter(|f| carries(&f.options()));
        places.extend(fields.map(|f| f.full_name().to_owned()));
        let oneofs = message.oneofs().filter(|o| carries(&o.options()));
        places.extend(oneofs.map(|o| o.full_name().to_owned()));
    }
    places
}

fn carries(options: &DynamicMessage) -> bool {
    options
        .extensions()
        .any(|(extension, _)| extension.full_name().starts_with("buf.validate."))
        || options.unknown_fields().any(|f| f.number() == BUF_VALIDATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// protovalidate's extension, cut to what the test uses.
    const VALIDATE: &str = r#"
syntax = "proto3";
package buf.validate;
import "google/protobuf/descriptor.proto";
message FieldRules { StringRules string = 14; }
message StringRules { uint64 min_len = 2; }
extend google.protobuf.FieldOptions { FieldRules field = 1159; }
"#;

    #[test]
    fn annotated_fields_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("buf/validate")).unwrap();
        std::fs::write(dir.path().join("buf/validate/validate.proto"), VALIDATE).unwrap();
        std::fs::write(
            dir.path().join("user.proto"),
            "syntax = \"proto3\";\npackage u;\nimport \"buf/validate/validate.proto\";\n\
             message Req { string name = 1 [(buf.validate.field).string.min_len = 1]; int32 n = 2; }\n",
        )
        .unwrap();
        // As `grpc::load` compiles (a `prost_types` set would drop the options' extensions).
        let mut compiler = protox::Compiler::new([dir.path()]).unwrap();
        compiler.include_imports(true);
        compiler.open_files(["user.proto"]).unwrap();
        assert_eq!(annotated(&compiler.descriptor_pool()), ["u.Req.name"]);
        // Not served unless the operator says so.
        let mut config = crate::config::GrpcConfig::for_tests(vec![dir.path().join("user.proto")]);
        config.includes = vec![dir.path().to_owned()];
        std::fs::write(
            dir.path().join("user.proto"),
            "syntax = \"proto3\";\npackage u;\nimport \"buf/validate/validate.proto\";\n\
             message Req { string name = 1 [(buf.validate.field).string.min_len = 1]; }\n\
             service S { rpc Call (Req) returns (Req); }\n",
        )
        .unwrap();
        let problems = super::super::load(&config).err().unwrap();
        assert!(
            problems[0].contains("u.Req.name carry buf.validate"),
            "{problems:?}"
        );
        config.protovalidate = crate::config::Protovalidate::Ignore;
        assert!(super::super::load(&config).is_ok());
    }
}
