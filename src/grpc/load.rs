//! Reading the service definitions: `.proto` files compiled by protox (no `protoc` on the
//! user's machine), or a `FileDescriptorSet` decoded by prost-reflect. Every problem comes
//! back as text naming the file (protox's errors carry the line and column).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Method;
use prost_reflect::{DescriptorPool, MethodDescriptor};

use super::Services;
use super::health;
use crate::config::{GrpcConfig, Protovalidate, UnknownFields};
use crate::spec::compile::SharedSchema;
use crate::spec::{Operation, Params, Rpc};

/// The services `config` names, each method an operation.
pub fn load(config: &GrpcConfig) -> Result<Services, Vec<String>> {
    let pool = match &config.descriptor_set {
        Some(file) => decode_set(file),
        None => compile(&config.protos, &config.includes),
    }
    .map_err(|problem| vec![problem])?;
    unenforced(&pool, config)?;
    let mut operations = methods(&pool, config)?;
    if pool.get_service_by_name(health::SERVICE).is_none() {
        operations.push(health::operation());
    }
    let by_path = operations
        .iter()
        .enumerate()
        .map(|(index, operation)| (operation.template.clone(), index))
        .collect::<HashMap<_, _>>();
    let paths = operations
        .iter()
        .map(|operation| Arc::from(operation.template.as_str()))
        .collect();
    let files = pool.files().map(|file| file.name().to_owned()).collect();
    Ok(Services {
        operations,
        by_path,
        paths,
        files,
    })
}

/// Every method of the pool's services as an operation; `grpc.methods` and `grpc.rules`
/// must name only methods there are, and each rule must compile.
fn methods(pool: &DescriptorPool, config: &GrpcConfig) -> Result<Vec<Operation>, Vec<String>> {
    let rules = compile_rules(config)?;
    let operations: Vec<Operation> = pool
        .services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .map(|method| {
            let name = method_name(&method);
            let settings = config.methods.get(&name);
            let allowed = settings.is_some_and(|m| m.unknown_fields == UnknownFields::Allow);
            let rules = rules.get(&name).cloned();
            operation(&method, name, allowed, rules)
        })
        .collect();
    let named = |name: &String| operations.iter().any(|o| &*o.id == name.as_str());
    let unknown: Vec<String> = [
        ("methods", config.methods.keys().collect::<Vec<_>>()),
        ("rules", config.rules.keys().collect()),
    ]
    .into_iter()
    .flat_map(|(section, names)| {
        names.into_iter().filter(|n| !named(n)).map(move |name| {
            format!("grpc.{section}.{name}: no method of the services has this name")
        })
    })
    .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    if operations.is_empty() {
        return Err(vec![format!(
            "grpc: {} declare no service: there is no method to route",
            sources(config)
        )]);
    }
    Ok(operations)
}

/// protovalidate annotations refuse the load, unless `grpc.protovalidate: ignore` (see
/// `annotations`).
fn unenforced(pool: &DescriptorPool, config: &GrpcConfig) -> Result<(), Vec<String>> {
    if config.protovalidate == Protovalidate::Ignore {
        return Ok(());
    }
    let places = super::annotations::annotated(pool);
    match places.is_empty() {
        true => Ok(()),
        false => Err(vec![format!(
            "grpc: {} carry buf.validate (protovalidate) rules, which moat does not enforce: \
             write them as grpc.rules.<method> (JSON Schema), or set `grpc.protovalidate: \
             ignore` to serve the methods without them",
            places.join(", ")
        )]),
    }
}

/// `grpc.rules`, each compiled (a schema that does not compile is a load error).
fn compile_rules(config: &GrpcConfig) -> Result<BTreeMap<String, SharedSchema>, Vec<String>> {
    let mut problems = Vec::new();
    let mut rules = BTreeMap::new();
    for (name, schema) in &config.rules {
        match crate::spec::compile::standalone(schema) {
            Ok(schema) => {
                rules.insert(name.clone(), SharedSchema(Arc::new(schema)));
            }
            Err(problem) => problems.push(format!("grpc.rules.{name}: {problem}")),
        }
    }
    match problems.is_empty() {
        true => Ok(rules),
        false => Err(problems),
    }
}

/// A method as an operation: `POST /package.Service/Method`, named
/// `package.Service/Method`; no parameters or OpenAPI body, the policy's default security.
fn operation(
    method: &MethodDescriptor,
    name: String,
    allow_unknown_fields: bool,
    rules: Option<SharedSchema>,
) -> Operation {
    Operation {
        template: format!("/{name}"),
        id: Arc::from(name),
        method: Method::POST,
        params: Params::default(),
        body: None,
        security: None,
        responses: None,
        rpc: Some(Rpc {
            client_streaming: method.is_client_streaming(),
            server_streaming: method.is_server_streaming(),
            answered_by_moat: false,
            input: Some(method.input()),
            allow_unknown_fields,
            administrative: administrative(method.name()),
            rules,
        }),
    }
}

/// The Open Inference Protocol's (and Triton's) methods that change the server rather than
/// ask it something: a caller that may infer should not thereby map shared memory into the
/// server or take a model away.
fn administrative(method: &str) -> bool {
    method.ends_with("SharedMemoryRegister")
        || method.ends_with("SharedMemoryUnregister")
        || matches!(method, "RepositoryModelLoad" | "RepositoryModelUnload")
}

/// `package.Service/Method`.
fn method_name(method: &MethodDescriptor) -> String {
    format!("{}/{}", method.parent_service().full_name(), method.name())
}

fn sources(config: &GrpcConfig) -> String {
    match &config.descriptor_set {
        Some(file) => format!("`{}`", file.display()),
        None => config
            .protos
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn decode_set(file: &Path) -> Result<DescriptorPool, String> {
    let bytes = crate::input::read(file, crate::input::Kind::Spec)?;
    DescriptorPool::decode(bytes.as_slice()).map_err(|error| {
        format!(
            "grpc.descriptor_set `{}` is not a FileDescriptorSet moat can use: {error} \
             (make it with `protoc --include_imports -o FILE` or `buf build -o FILE`)",
            file.display()
        )
    })
}

/// Compiles `protos`, their imports looked up in `includes` (else each proto's own
/// directory); the well-known `google/protobuf/*.proto` come with protox.
fn compile(protos: &[PathBuf], includes: &[PathBuf]) -> Result<DescriptorPool, String> {
    let includes: Vec<PathBuf> = match includes.is_empty() {
        false => includes.to_vec(),
        true => protos
            .iter()
            .map(|proto| match proto.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect(),
    };
    for proto in protos {
        crate::input::read(proto, crate::input::Kind::Spec)?;
    }
    let mut compiler =
        protox::Compiler::new(&includes).map_err(|error| format!("grpc.includes: {error}"))?;
    compiler.include_imports(true);
    compiler
        .open_files(protos)
        .map_err(|error| format!("grpc.protos: {}", located(&error)))?;
    Ok(compiler.descriptor_pool())
}

/// protox's error with the file, line and column it points at, as `protoc` prints them
/// (its `Display` leaves the place to miette's report).
fn located(error: &protox::Error) -> String {
    use miette::Diagnostic as _;
    let place = error.source_code().and_then(|source| {
        let label = error.labels()?.next()?;
        let span = source.read_span(label.inner(), 0, 0).ok()?;
        let file = span
            .name()
            .map(str::to_owned)
            .or(error.file().map(str::to_owned))?;
        Some(format!("{file}:{}:{}", span.line() + 1, span.column() + 1))
    });
    match place {
        Some(place) => format!("{place}: {error}"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(protos: &[&Path]) -> GrpcConfig {
        GrpcConfig::for_tests(protos.iter().map(|p| p.to_path_buf()).collect())
    }

    const PROTO: &str = r#"
syntax = "proto3";
package demo.v1;
service Scorer {
  rpc Score (ScoreRequest) returns (ScoreReply);
  rpc Watch (ScoreRequest) returns (stream ScoreReply);
}
message ScoreRequest { repeated float x = 1; }
message ScoreReply { float y = 1; }
"#;

    #[test]
    fn every_method_is_an_operation_and_health_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let proto = dir.path().join("scorer.proto");
        std::fs::write(&proto, PROTO).unwrap();
        let services = load(&config(&[&proto])).unwrap();
        let names: Vec<&str> = services.operations.iter().map(|o| &*o.id).collect();
        assert_eq!(
            names,
            [
                "demo.v1.Scorer/Score",
                "demo.v1.Scorer/Watch",
                "grpc.health.v1.Health/Check"
            ]
        );
        assert_eq!(services.route("/demo.v1.Scorer/Watch").unwrap().0, 1);
        assert_eq!(services.route("/demo.v1.Scorer/Other"), None);
        let watch = services.operations[1].rpc.as_ref().unwrap();
        assert!(watch.server_streaming && !watch.client_streaming);
    }

    #[test]
    fn a_broken_proto_names_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let proto = dir.path().join("broken.proto");
        std::fs::write(&proto, "syntax = \"proto3\";\nmessage A { int32 x = }\n").unwrap();
        let problems = load(&config(&[&proto])).err().unwrap();
        assert!(problems[0].contains("broken.proto"), "{problems:?}");
        assert!(problems[0].contains(":2:"), "{problems:?}");
    }

    #[test]
    fn a_descriptor_set_loads_like_the_protos() {
        let dir = tempfile::tempdir().unwrap();
        let proto = dir.path().join("scorer.proto");
        std::fs::write(&proto, PROTO).unwrap();
        let set = protox::compile([&proto], [dir.path()]).unwrap();
        let file = dir.path().join("scorer.pb");
        std::fs::write(&file, prost::Message::encode_to_vec(&set)).unwrap();
        let mut from_set = config(&[]);
        from_set.descriptor_set = Some(file.clone());
        assert_eq!(load(&from_set).unwrap().operations.len(), 3);
        std::fs::write(&file, b"\xff\xff not protobuf").unwrap();
        let problems = load(&from_set).err().unwrap();
        assert!(
            problems[0].contains("not a FileDescriptorSet"),
            "{problems:?}"
        );
    }

    #[test]
    fn rules_must_name_a_method_and_compile() {
        let dir = tempfile::tempdir().unwrap();
        let proto = dir.path().join("scorer.proto");
        std::fs::write(&proto, PROTO).unwrap();
        let mut ruled = config(&[&proto]);
        ruled.rules.insert(
            "demo.v1.Scorer/Score".into(),
            serde_json::json!({"maxProperties": 1}),
        );
        let services = load(&ruled).unwrap();
        assert!(services.operations[0].rpc.as_ref().unwrap().rules.is_some());
        assert!(services.operations[1].rpc.as_ref().unwrap().rules.is_none());
        ruled
            .rules
            .insert("demo.v1.Scorer/Nope".into(), serde_json::json!({}));
        let problems = load(&ruled).err().unwrap();
        assert_eq!(
            problems,
            ["grpc.rules.demo.v1.Scorer/Nope: no method of the services has this name"]
        );
        ruled.rules.remove("demo.v1.Scorer/Nope");
        ruled.rules.insert(
            "demo.v1.Scorer/Watch".into(),
            serde_json::json!({"pattern": "(?=x)"}),
        );
        let problems = load(&ruled).err().unwrap();
        assert!(
            problems[0].starts_with("grpc.rules.demo.v1.Scorer/Watch: the schema does not compile"),
            "{problems:?}"
        );
    }
}
