//! gRPC model servers behind moat, end to end: a real MLServer 1.7 (the Open Inference
//! Protocol's `inference.GRPCInferenceService`, scikit-learn iris) called with NVIDIA's
//! official `tritonclient.grpc` and raw grpcio; and a real grpcio server of every streaming
//! kind (`tests/grpc/stream_server.py`). Both from the `.venv-grpc` virtualenv that
//! `scripts/test` makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SETOSA: [&str; 4] = ["5.1", "3.5", "1.4", "0.2"];
const VIRGINICA: [&str; 4] = ["6.7", "3.0", "5.2", "2.3"];

/// The Python of `.venv-grpc` (or `MOAT_TEST_GRPC_PYTHON`); `None` — the test says it
/// skipped — when there is none, unless `MOAT_REQUIRE_MODEL_SERVER` makes that a failure.
fn grpc_python() -> Option<PathBuf> {
    let python = std::env::var_os("MOAT_TEST_GRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join(".venv-grpc/bin/python"));
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("MOAT_REQUIRE_MODEL_SERVER").is_none(),
        "no Python with mlserver and grpcio at {}: run scripts/test",
        python.display()
    );
    eprintln!("skipped: no gRPC virtualenv (scripts/test creates it)");
    None
}

/// A child process and the processes it starts (its own process group), killed when dropped.
struct Group(Child);

impl Group {
    fn spawn(command: &mut Command) -> Group {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0).stdin(Stdio::null());
        Group(command.spawn().expect("start a test server"))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: `kill` with the negated group id of a child this test started.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// MLServer serving the iris model (a logistic regression trained here), REST and gRPC.
struct MlServer {
    _group: Group,
    _dir: tempfile::TempDir,
    rest: u16,
    grpc: u16,
}

impl MlServer {
    fn start(python: &Path) -> MlServer {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("iris");
        std::fs::create_dir(&model).unwrap();
        let train = "import joblib, sys\nfrom sklearn.datasets import load_iris\n\
                     from sklearn.linear_model import LogisticRegression\n\
                     X, y = load_iris(return_X_y=True)\n\
                     joblib.dump(LogisticRegression(max_iter=1000).fit(X, y), sys.argv[1])\n";
        let trained = Command::new(python)
            .args(["-c", train])
            .arg(model.join("model.joblib"))
            .status()
            .unwrap();
        assert!(trained.success(), "training the iris model failed");
        let settings = json!({"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"}});
        std::fs::write(model.join("model-settings.json"), settings.to_string()).unwrap();
        let (rest, grpc, metrics) = (free_port(), free_port(), free_port());
        let server = json!({"host": "127.0.0.1", "http_port": rest, "grpc_port": grpc,
            "metrics_port": metrics, "parallel_workers": 0});
        std::fs::write(dir.path().join("settings.json"), server.to_string()).unwrap();
        let mlserver = python.with_file_name("mlserver");
        let group = Group::spawn(
            Command::new(mlserver)
                .arg("start")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let ready = format!("127.0.0.1:{rest}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let up = || {
            std::net::TcpStream::connect(ready).is_ok()
                && get(ready, "/v2/models/iris/ready", &[]).status == 200
        };
        while !up() {
            assert!(Instant::now() < deadline, "MLServer did not get ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        MlServer {
            _group: group,
            _dir: dir,
            rest,
            grpc,
        }
    }
}

fn free_port() -> u16 {
    closed_port().port()
}

/// Runs `tests/grpc/client.py ARGS` and reads the JSON it prints.
fn client(python: &Path, args: &[&str]) -> Value {
    let output = Command::new(python)
        .arg(Path::new(ROOT).join("tests/grpc/client.py"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "client.py {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn infer(python: &Path, moat: &Moat, key: &str, x: [&str; 4]) -> Value {
    let addr = moat.addr.to_string();
    let mut args = vec!["infer", &addr, key];
    args.extend(x);
    client(python, &args)
}

fn raw(python: &Path, moat: &Moat, path: &str, key: &str, message: &str) -> Value {
    client(python, &["raw", &moat.addr.to_string(), path, key, message])
}

/// moat with the shipped OIP proto in front of `server`'s REST and gRPC ports, every
/// operation needing a key from `store` and inference the `predict` scope (`infer`: its
/// policy, or the default); `grpc_extra` goes under `grpc:`.
fn moat_for(server: &MlServer, store: &Path, grpc_extra: &str, infer: Option<&str>) -> Moat {
    let infer = infer.unwrap_or("[{api_key: [predict]}]");
    let proto = Path::new(ROOT).join("examples/grpc/open_inference_grpc.proto");
    Moat::start(&config(
        &format!("http://127.0.0.1:{}", server.rest),
        &format!(
            "grpc:\n  protos: [{}]\n  port: {}\n{grpc_extra}\
             auth:\n  schemes:\n    api_key: {{type: api_key, header: X-API-Key, store: {}}}\n\
             policy:\n  default: [{{api_key: []}}]\n  operations:\n    \
             inference.GRPCInferenceService/ModelInfer: {infer}\n",
            proto.display(),
            server.grpc,
            store.display()
        ),
    ))
}

#[test]
fn mlserver_over_grpc_gets_the_same_keys_scopes_limits_and_quotas_as_over_rest() {
    let Some(python) = grpc_python() else { return };
    let server = MlServer::start(&python);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let ops = moat_keys(&store, &["new", "--id", "ops", "--scopes", "predict"]);
    let reader = moat_keys(&store, &["new", "--id", "reader", "--scopes", "read"]);
    let limited = moat_keys(&store, &["new", "--id", "limited", "--rate-limit", "1/1"]);
    let quota = moat_keys(
        &store,
        &[
            "new", "--id", "quota", "--scopes", "predict", "--quota", "3/day",
        ],
    );
    let iris_only = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "iris-only",
            "--scopes",
            "predict",
            "--models",
            "iris",
        ],
    );
    let other_only = moat_keys(
        &store,
        &[
            "new",
            "--id",
            "other-only",
            "--scopes",
            "predict",
            "--models",
            "other",
        ],
    );
    let moat = moat_for(&server, &store, "", None);

    // The official client, with a key: the model's own answer.
    let setosa = infer(&python, &moat, &ops, SETOSA);
    assert_eq!(setosa, json!({"code": "OK", "predict": [[0]]}));
    let virginica = infer(&python, &moat, &ops, VIRGINICA);
    assert_eq!(virginica["predict"], json!([[2]]), "{virginica}");

    // No key, a key without the scope: refused as a gRPC client reads it.
    let missing = infer(&python, &moat, "-", SETOSA);
    assert_eq!(missing["code"], "UNAUTHENTICATED", "{missing}");
    assert_eq!(missing["message"], "this operation requires credentials");
    let scope = infer(&python, &moat, &reader, SETOSA);
    assert_eq!(scope["code"], "PERMISSION_DENIED", "{scope}");
    // A key's `models` allowlist applies to the request's `model_name`.
    assert_eq!(infer(&python, &moat, &iris_only, SETOSA)["code"], "OK");
    let other = infer(&python, &moat, &other_only, SETOSA);
    assert_eq!(other["code"], "PERMISSION_DENIED", "{other}");
    assert_eq!(
        other["message"],
        "this API key may not use the model the request names"
    );

    // Over the key's rate limit: RESOURCE_EXHAUSTED, with RetryInfo, moat's code and the
    // request id in the trailing metadata.
    let live = "/inference.GRPCInferenceService/ServerLive";
    assert_eq!(raw(&python, &moat, live, &limited, "")["code"], "OK");
    let limited_again = raw(&python, &moat, live, &limited, "");
    assert_eq!(
        limited_again["code"], "RESOURCE_EXHAUSTED",
        "{limited_again}"
    );
    assert_eq!(limited_again["trailing"]["moat-code"], "rate_limited");
    assert_eq!(
        limited_again["trailing"]["x-request-id"]
            .as_str()
            .map(str::len),
        Some(32)
    );
    let details = &limited_again["details"];
    assert_eq!(
        details["types"][0],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    assert!(details["retry_seconds"].as_i64().unwrap() >= 1, "{details}");

    // Methods the proto does not declare never reach the model: MLServer's own
    // RepositoryModelUnload (which would take the model away), server reflection.
    let unload = raw(
        &python,
        &moat,
        "/inference.model_repository.ModelRepositoryService/RepositoryModelUnload",
        &ops,
        "120469726973",
    );
    assert_eq!(unload["code"], "UNIMPLEMENTED", "{unload}");
    let reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
    assert_eq!(
        raw(&python, &moat, reflection, &ops, "")["code"],
        "UNIMPLEMENTED"
    );
    assert_eq!(
        infer(&python, &moat, &ops, SETOSA)["code"],
        "OK",
        "still loaded"
    );

    // The health check is public and answered: SERVING for the services moat routes.
    let check = "/grpc.health.v1.Health/Check";
    let health = raw(&python, &moat, check, "-", "");
    assert_eq!(health, json!({"code": "OK", "response": "0801"}));
    let named = hex("inference.GRPCInferenceService");
    assert_eq!(raw(&python, &moat, check, "-", &named)["response"], "0801");
    let unknown = raw(&python, &moat, check, "-", &hex("nope.Service"));
    assert_eq!(unknown["code"], "NOT_FOUND", "{unknown}");

    // One quota, counted across gRPC and REST calls of the same key.
    assert_eq!(infer(&python, &moat, &quota, SETOSA)["code"], "OK");
    let rest = post_json(
        moat.addr,
        "/v2/models/iris/infer",
        &[&format!("X-API-Key: {quota}")],
        r#"{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32",
            "data": [5.1, 3.5, 1.4, 0.2]}]}"#,
    );
    assert_eq!(rest.status, 200, "{}", String::from_utf8_lossy(&rest.body));
    assert_eq!(infer(&python, &moat, &quota, SETOSA)["code"], "OK");
    let spent = raw(&python, &moat, live, &quota, "");
    assert_eq!(spent["code"], "RESOURCE_EXHAUSTED", "{spent}");
    assert_eq!(spent["trailing"]["moat-code"], "quota_exceeded");
    let types = &spent["details"]["types"];
    assert_eq!(
        types[1], "type.googleapis.com/google.rpc.QuotaFailure",
        "{spent}"
    );

    // The REST twin of ModelInfer: the same tensor checks (a JSON pointer this time) and the
    // same `models` allowlist, on the path's model.
    let rest_infer = |key: &str, data: &str| {
        post_json(
            moat.addr,
            "/v2/models/iris/infer",
            &[&format!("X-API-Key: {key}")],
            &format!(
                r#"{{"inputs": [{{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": {data}}}]}}"#
            ),
        )
    };
    let short = rest_infer(&ops, "[5.1, 3.5]");
    assert_eq!(
        short.status,
        400,
        "{}",
        String::from_utf8_lossy(&short.body)
    );
    let problem: Value = serde_json::from_slice(&short.body).unwrap();
    assert_eq!(problem["code"], "body_schema");
    assert_eq!(
        problem["errors"][0]["pointer"], "/inputs/0/data",
        "{problem}"
    );
    let nested = rest_infer(&ops, "[[5.1, 3.5, 1.4, 0.2]]");
    assert_eq!(
        nested.status,
        200,
        "{}",
        String::from_utf8_lossy(&nested.body)
    );
    let other = rest_infer(&other_only, "[5.1, 3.5, 1.4, 0.2]");
    assert_eq!(
        other.status,
        403,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    assert_eq!(rest_infer(&iris_only, "[5.1, 3.5, 1.4, 0.2]").status, 200);

    unknown_fields_are_refused_unless_the_method_allows_them(&python, &server, &moat, &store, &ops);
    inconsistent_tensors_are_refused_with_their_field(&python, &moat, &ops);
    rules_refuse_what_they_name(&python, &server, &store, &ops);
    compression_is_bounded_and_unknown_encodings_refused(&moat, &ops);

    // Seen like REST: the access log names the method, the key and the subject.
    let lines = moat.access_log();
    let inferred = lines
        .iter()
        .find(|line| {
            line["key_id"] == "ops"
                && line["operation"] == "inference.GRPCInferenceService/ModelInfer"
        })
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(
        inferred["route"],
        "/inference.GRPCInferenceService/ModelInfer"
    );
}

/// A ModelInferRequest naming the model and carrying field 99, which the OIP proto does not
/// declare: refused with the field's path, unless `grpc.methods` allows unknown fields —
/// then it is MLServer that answers.
fn unknown_fields_are_refused_unless_the_method_allows_them(
    python: &Path,
    server: &MlServer,
    moat: &Moat,
    store: &Path,
    key: &str,
) {
    let infer = "/inference.GRPCInferenceService/ModelInfer";
    let unknown = "0a0469726973980601";
    let refused = raw(python, moat, infer, key, unknown);
    assert_eq!(refused["code"], "INVALID_ARGUMENT", "{refused}");
    assert_eq!(refused["trailing"]["moat-code"], "grpc_message_schema");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("field number 99"),
        "{refused}"
    );
    assert_eq!(
        refused["details"]["types"][0],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    let garbage = raw(python, moat, infer, key, "0aff");
    assert_eq!(
        garbage["trailing"]["moat-code"], "grpc_message_schema",
        "{garbage}"
    );
    let lenient = moat_for(
        server,
        store,
        "  methods:\n    inference.GRPCInferenceService/ModelInfer: {unknown_fields: allow}\n",
        None,
    );
    let passed = raw(python, &lenient, infer, key, unknown);
    assert!(
        passed["trailing"].get("moat-code").is_none(),
        "MLServer answered: {passed}"
    );
    // In shadow mode the message goes on, and the would-be refusal is logged.
    let shadow = "{mode: shadow, security: [{api_key: [predict]}]}";
    let shadowed = moat_for(server, store, "", Some(shadow));
    let passed = raw(python, &shadowed, infer, key, unknown);
    assert!(
        passed["trailing"].get("moat-code").is_none(),
        "MLServer answered: {passed}"
    );
    let lines = shadowed.wait_for_access_lines(1);
    assert_eq!(lines[0]["shadow_code"], "grpc_message_schema", "{lines:?}");
}

/// The Open Inference Protocol's tensors: data that does not fill the shape, an unknown
/// datatype, a negative dimension — refused naming the field; consistent ones reach MLServer.
fn inconsistent_tensors_are_refused_with_their_field(python: &Path, moat: &Moat, key: &str) {
    let addr = moat.addr.to_string();
    let tensor = |shape: &str, datatype: &str, data: &str| {
        client(python, &["tensor", &addr, key, shape, datatype, data])
    };
    let fields = |answer: &Value| answer["details"]["fields"].clone();
    let short = tensor("1,4", "FP32", "raw:8");
    assert_eq!(short["code"], "INVALID_ARGUMENT", "{short}");
    assert_eq!(fields(&short), json!(["raw_input_contents[0]"]), "{short}");
    assert!(
        short["message"].as_str().unwrap().contains("holds 8 bytes"),
        "{short}"
    );
    let huge = tensor("1000000,1000000", "FP32", "raw:16");
    assert_eq!(fields(&huge), json!(["raw_input_contents[0]"]), "{huge}");
    assert_eq!(
        fields(&tensor("1,4", "FP33", "raw:16")),
        json!(["inputs[0]"])
    );
    assert_eq!(
        fields(&tensor("1,-4", "FP32", "raw:16")),
        json!(["inputs[0]"])
    );
    assert_eq!(
        fields(&tensor("1,4", "FP32", "fp32:3")),
        json!(["inputs[0]"])
    );
    assert_eq!(tensor("1,4", "FP32", "raw:16")["code"], "OK");
    assert_eq!(tensor("1,4", "FP32", "fp32:4")["code"], "OK");
    // Compressed by grpcio (gzip): decompressed, checked, and MLServer gets the message.
    let gzip = |shape: &str, data: &str| {
        client(python, &["tensor", &addr, key, shape, "FP32", data, "gzip"])
    };
    let short = gzip("1,4", "raw:8");
    assert_eq!(fields(&short), json!(["raw_input_contents[0]"]), "{short}");
    let whole = gzip("1,4", "raw:16");
    assert_eq!(whole["code"], "OK", "{whole}");
}

/// `grpc.rules`: a JSON Schema over the message's proto3 JSON. A consistent tensor the rule
/// bounds is refused at its field path; one within it reaches MLServer.
fn rules_refuse_what_they_name(python: &Path, server: &MlServer, store: &Path, key: &str) {
    let ruled = moat_for(
        server,
        store,
        "  rules:\n    inference.GRPCInferenceService/ModelInfer:\n      \
         properties: {inputs: {items: {properties: {shape: {items: {maximum: 4}}}}}}\n",
        None,
    );
    let addr = ruled.addr.to_string();
    let tensor =
        |shape: &str, data: &str| client(python, &["tensor", &addr, key, shape, "FP32", data]);
    let wide = tensor("2,8", "raw:64");
    assert_eq!(wide["code"], "INVALID_ARGUMENT", "{wide}");
    assert_eq!(
        wide["details"]["fields"],
        json!(["inputs[0].shape[1]"]),
        "{wide}"
    );
    assert_eq!(tensor("1,4", "raw:16")["code"], "OK");
}

/// A gRPC call written by hand over HTTP/2 (grpcio cannot send pre-compressed bytes):
/// the response's headers and trailers together.
fn h2_call(moat: &Moat, key: &str, encoding: &str, message: Vec<u8>) -> http::HeaderMap {
    use http_body_util::BodyExt;
    let mut framed = vec![1];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend(message);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = http::Request::post(moat.url("/inference.GRPCInferenceService/ModelInfer"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-encoding", encoding)
            .header("x-api-key", key)
            .body(http_body_util::Full::new(bytes::Bytes::from(framed)))
            .unwrap();
        let response = client.request(request).await.expect("h2 response");
        let mut headers = response.headers().clone();
        let collected = response.into_body().collect().await.unwrap();
        headers.extend(collected.trailers().cloned().unwrap_or_default());
        headers
    })
}

/// A gzip bomb — 1 MiB that expands to 1 GiB of zeros, 1024 gzip members of 1 MiB each as
/// `cat` would join them — is refused having expanded to the 4 MiB limit, moat's memory
/// never near the gigabyte; an encoding moat cannot read is UNIMPLEMENTED with the ones
/// it can.
fn compression_is_bounded_and_unknown_encodings_refused(moat: &Moat, key: &str) {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0; 1 << 20]).unwrap();
    let member = encoder.finish().unwrap();
    let bomb = member.repeat(1024);
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
    let before = moat.peak_rss();
    let answer = h2_call(moat, key, "gzip", bomb);
    assert_eq!(answer["grpc-status"], "8", "RESOURCE_EXHAUSTED: {answer:?}");
    assert_eq!(answer["moat-code"], "grpc_message_too_large");
    let grown = moat.peak_rss().saturating_sub(before);
    eprintln!(
        "gzip bomb refused; moat's peak RSS grew by {} KiB",
        grown >> 10
    );
    assert!(grown < 64 << 20, "peak RSS grew by {grown} bytes");
    let zstd = h2_call(moat, key, "zstd", b"\x28\xb5\x2f\xfd".to_vec());
    assert_eq!(zstd["grpc-status"], "12", "UNIMPLEMENTED: {zstd:?}");
    assert_eq!(zstd["moat-code"], "grpc_encoding_unsupported");
    assert_eq!(zstd["grpc-accept-encoding"], "identity,deflate,gzip");
}

/// `service` as a `HealthCheckRequest`, hex-encoded.
fn hex(service: &str) -> String {
    let mut bytes = vec![0x0a, service.len() as u8];
    bytes.extend_from_slice(service.as_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The streaming test server, and the file it logs what it saw to.
fn stream_server(python: &Path, dir: &Path) -> (Group, u16, PathBuf) {
    let port = free_port();
    let log = dir.join("server.jsonl");
    let mut command = Command::new(python);
    command
        .arg(Path::new(ROOT).join("tests/grpc/stream_server.py"))
        .arg(port.to_string())
        .arg(&log)
        .current_dir(Path::new(ROOT).join("tests/grpc"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let group = Group::spawn(&mut command);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        eventually(|| std::net::TcpStream::connect(addr).is_ok()),
        "the stream server did not listen"
    );
    (group, port, log)
}

fn server_log(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn every_kind_of_stream_is_relayed_message_by_message_and_a_cancel_reaches_the_model() {
    let Some(python) = grpc_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_server, port, log) = stream_server(&python, dir.path());
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(&store, &["new", "--id", "streamer"]);
    let proto = dir.path().join("stream.proto");
    let original =
        std::fs::read_to_string(Path::new(ROOT).join("tests/grpc/stream.proto")).unwrap();
    std::fs::write(&proto, &original).unwrap();
    let moat = Moat::start(&config(
        &format!("http://127.0.0.1:{port}"),
        &format!(
            "grpc:\n  protos: [{}]\n  upstream: http://127.0.0.1:{port}\n\
             auth:\n  schemes:\n    api_key: {{type: api_key, header: X-API-Key, store: {}}}\n\
             policy:\n  default: [{{api_key: []}}]\n",
            proto.display(),
            store.display()
        ),
    ));
    let addr = moat.addr.to_string();

    // Server streaming: the first message arrives long before the last is sent.
    let counted = client(&python, &["count", &addr, &key, "5", "300"]);
    assert_eq!(counted["values"], json!([1, 2, 3, 4, 5]), "{counted}");
    let times: Vec<f64> = serde_json::from_value(counted["times"].clone()).unwrap();
    assert!(times[4] - times[0] > 0.9, "relayed as they came: {times:?}");

    // Bidirectional: each message goes on before the client sends the next.
    let echoed = client(&python, &["echo", &addr, &key, "4"]);
    assert_eq!(echoed["values"], json!([1, 2, 3, 4]), "{echoed}");
    // A bad third message (field 2, which `Number` does not declare): the two before it
    // reached the model and came back, then the call ends with the message's refusal.
    let cut = client(&python, &["echo", &addr, &key, "2", "1001"]);
    assert_eq!(cut["values"], json!([1, 2]), "{cut}");
    assert_eq!(cut["code"], "INVALID_ARGUMENT", "{cut}");
    assert_eq!(cut["trailing"]["moat-code"], "grpc_message_schema", "{cut}");
    assert!(
        cut["message"].as_str().unwrap().starts_with("message 3 "),
        "{cut}"
    );
    // Client streaming.
    let summed = client(&python, &["sum", &addr, &key, "1", "2", "39"]);
    assert_eq!(summed["value"], 42, "{summed}");
    // Cut before the model answered: the refusal itself, Trailers-Only.
    let bad_sum = client(&python, &["sum", &addr, &key, "1", "x0aff"]);
    assert_eq!(bad_sum["code"], "INVALID_ARGUMENT", "{bad_sum}");
    assert_eq!(
        bad_sum["trailing"]["moat-code"], "grpc_message_schema",
        "{bad_sum}"
    );

    // The client's cancel reaches the model.
    assert_eq!(client(&python, &["cancel", &addr, &key])["cancelled"], true);
    assert!(
        eventually(|| server_log(&log).iter().any(|e| e["event"] == "cancelled")),
        "the model never saw the cancel: {:?}",
        server_log(&log)
    );

    // The key never reaches the model; who called does.
    let seen = server_log(&log);
    let count = seen.iter().find(|e| e["method"] == "Count").unwrap();
    let metadata = count["metadata"].as_object().unwrap();
    assert!(!metadata.contains_key("x-api-key"), "{metadata:?}");
    assert_eq!(metadata["x-moat-key-id"], "streamer");
    let unbounded = count["time_remaining"].as_f64().unwrap();
    assert!(
        unbounded > 1e9,
        "no deadline was given, none goes on: {count}"
    );

    // A deadline: what is left of it goes on to the model, and it ends the call there.
    let late = client(&python, &["deadline", &addr, &key, "0.8"]);
    assert_eq!(late["code"], "DEADLINE_EXCEEDED", "{late}");
    let waits = || {
        server_log(&log)
            .into_iter()
            .filter(|e| e["method"] == "Wait")
    };
    let called = waits().rfind(|e| e.get("metadata").is_some()).unwrap();
    let left = called["time_remaining"].as_f64().unwrap();
    assert!(left > 0.3 && left <= 0.8, "the budget forwarded: {left}");
    assert!(
        eventually(|| waits().filter(|e| e["event"] == "cancelled").count() == 2),
        "the deadline did not end the call at the model"
    );
    // gRPC over HTTP/1.1 is refused before routing: trailers would not reach the client.
    let h1 = send(
        moat.addr,
        "POST",
        "/demo.v1.Stream/Sum",
        &[
            &format!("X-API-Key: {key}"),
            "Content-Type: application/grpc",
        ],
        b"\0\0\0\0\0",
    );
    assert_eq!(h1.header("grpc-status"), Some("3"), "{h1:?}");
    assert_eq!(h1.header("moat-code"), Some("invalid_grpc_message"));
    reload_keeps_serving_a_broken_proto(&python, &moat, &key, &proto, &original);
}

/// A proto that does not compile keeps the methods that were served; a proto without a
/// method refuses it from the reload on.
fn reload_keeps_serving_a_broken_proto(
    python: &Path,
    moat: &Moat,
    key: &str,
    proto: &Path,
    original: &str,
) {
    let addr = moat.addr.to_string();
    let sum = || client(python, &["sum", &addr, key, "2", "3"]);
    std::fs::write(proto, original.replace("rpc Sum", "rpc Sum Sum")).unwrap();
    assert!(
        eventually(|| moat.lines().iter().any(|l| l.contains("reload failed"))),
        "{:?}",
        moat.lines()
    );
    assert_eq!(sum()["value"], 5, "still served");
    let without_sum: String = original
        .lines()
        .filter(|line| !line.contains("rpc Sum"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(proto, without_sum).unwrap();
    assert!(eventually(|| sum()["code"] == "UNIMPLEMENTED"), "{}", sum());
    assert_eq!(sum()["trailing"]["moat-code"], "route_not_found");
}

/// docs/grpc.md's command, on the shipped example: every method listed with its kind and
/// requirement, the health check public.
#[test]
fn moat_check_lists_the_example_methods() {
    let output = run_moat(&["check", "--config", "examples/grpc/moat.yaml"], &[]);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    let line = |path: &str| {
        report
            .lines()
            .find(|line| line.contains(path))
            .unwrap_or_else(|| panic!("{path} not listed:\n{report}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("/inference.GRPCInferenceService/ModelInfer"),
        "gRPC /inference.GRPCInferenceService/ModelInfer unary enforce api_key[predict]"
    );
    assert_eq!(
        line("/grpc.health.v1.Health/Check"),
        "gRPC /grpc.health.v1.Health/Check answered by moat enforce public"
    );
    assert!(
        report.contains("7 methods from open_inference_grpc.proto"),
        "{report}"
    );
}

/// `moat spec loose` on a gRPC config: the fields no proto bounds, per method, by path.
#[test]
fn moat_spec_loose_lists_the_open_fields_of_each_method() {
    let output = run_moat(
        &["spec", "loose", "--config", "examples/grpc/moat.yaml"],
        &[],
    );
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    let parsed: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    let infer = &parsed["grpc"]["inference.GRPCInferenceService/ModelInfer"];
    assert_eq!(infer["input"], "inference.ModelInferRequest", "{report}");
    let open = infer["open"].as_array().unwrap();
    assert!(
        open.contains(&json!(
            "inputs[].shape: repeated int64 (limits.max_array_items)"
        )),
        "{report}"
    );
}

/// `moat explain GRPC`: the message given as proto3 JSON, encoded by the method's input type,
/// through the same stages as `serve`.
#[test]
fn moat_explain_runs_a_grpc_call_through_the_stages() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keys.yaml");
    let key = moat_keys(&store, &["new", "--id", "ops", "--scopes", "predict"]);
    let store_env = [("MOAT_KEY_STORE", store.to_str().unwrap())];
    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "--config", "examples/grpc/moat.yaml", "GRPC"];
        all.extend_from_slice(args);
        let output = run_moat(&all, &store_env);
        (output.status.code(), text(&output))
    };
    let header = format!("x-api-key: {key}");
    let message = r#"{"model_name": "iris", "inputs": [{"name": "input-0", "datatype": "FP32",
        "shape": [1, 4], "contents": {"fp32_contents": [5.1, 3.5, 1.4, 0.2]}}]}"#;
    let infer = "inference.GRPCInferenceService/ModelInfer";
    let (code, report) = explain(&[infer, "-H", &header, "-d", message]);
    assert_eq!(code, Some(0), "{report}");
    assert!(
        report.contains("encoded as inference.ModelInferRequest (52 bytes framed)"),
        "{report}"
    );
    assert!(report.contains("valid key `ops`"), "{report}");
    assert!(!report.contains(&key), "the key is never echoed");
    let (code, report) = explain(&[infer, "-d", message]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("401 credentials_missing"), "{report}");
    let (code, report) = explain(&[infer, "-d", r#"{"model_nme": "iris"}"#]);
    assert_eq!(code, Some(2), "{report}");
    assert!(
        report.contains("unrecognized field name 'model_nme'"),
        "{report}"
    );
    // The decoded message's verdict, by field path.
    let short = r#"{"model_name": "iris", "inputs": [{"name": "x", "datatype": "FP32",
        "shape": [1, 4]}], "raw_input_contents": ["AAAA"]}"#;
    let (code, report) = explain(&[infer, "-H", &header, "-d", short]);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("message raw_input_contents[0]: holds 3 bytes"),
        "{report}"
    );
    let unload = "inference.GRPCInferenceService/RepositoryModelUnload";
    let (code, report) = explain(&[unload, "-H", &header]);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("404 route_not_found"), "{report}");
}

/// Methods that change the model server — Triton's shared-memory registration, loading and
/// unloading models — are closed unless `policy.operations` names them, even when the proto
/// declares them and the caller may infer.
#[test]
fn administrative_methods_are_closed_unless_the_policy_names_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("triton.proto"),
        "syntax = \"proto3\";\npackage inference;\n\
         service GRPCInferenceService {\n\
           rpc ModelInfer (Req) returns (Res);\n\
           rpc SystemSharedMemoryRegister (Req) returns (Res);\n\
           rpc RepositoryModelLoad (Req) returns (Res);\n\
         }\nmessage Req { string name = 1; }\nmessage Res {}\n",
    )
    .unwrap();
    let proto = dir.path().join("triton.proto");
    let write_config = |operations: &str| {
        let path = dir.path().join("moat.yaml");
        std::fs::write(
            &path,
            format!(
                "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\n\
                 grpc:\n  protos: [{}]\n  port: 1\n\
                 policy:\n  default: []\n  operations: {{{operations}}}\n",
                proto.display()
            ),
        )
        .unwrap();
        path
    };
    let closed = write_config("");
    let explain = |config: &Path, method: &str| {
        let config = config.to_str().unwrap();
        let output = run_moat(
            &["explain", "--config", config, "GRPC", method, "-d", "{}"],
            &[],
        );
        (output.status.code(), text(&output))
    };
    for method in [
        "inference.GRPCInferenceService/SystemSharedMemoryRegister",
        "inference.GRPCInferenceService/RepositoryModelLoad",
    ] {
        let (code, report) = explain(&closed, method);
        assert_eq!(code, Some(1), "{report}");
        assert!(report.contains("404 route_not_found"), "{report}");
    }
    let (code, report) = explain(&closed, "inference.GRPCInferenceService/ModelInfer");
    assert_eq!(code, Some(0), "{report}");
    let check = run_moat(
        &[
            "check",
            "--config",
            closed.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    let load = report["summary"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation_id"] == "inference.GRPCInferenceService/RepositoryModelLoad")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        load["requirement"].as_str().unwrap().starts_with("closed"),
        "{load}"
    );
    let opened = write_config("inference.GRPCInferenceService/RepositoryModelLoad: []");
    let (code, report) = explain(
        &opened,
        "inference.GRPCInferenceService/RepositoryModelLoad",
    );
    assert_eq!(code, Some(0), "{report}");
}
