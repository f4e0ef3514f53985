//! A gRPC message checked against its type: an Open Inference Protocol `ModelInferRequest`
//! with a 1 KiB and a 1 MiB FP32 tensor in `raw_input_contents`, decoded by prost-reflect,
//! (and the 1 MiB as typed `fp32_contents`), walked for unknown fields and the guard rails,
//! and its tensor checked for consistency —
//! what stage 6 does to every unary `ModelInfer` call. Run: `cargo bench --bench grpc_message`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use moat::config::Limits;
use moat::grpc::message::MessageCheck;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};

fn bench(c: &mut Criterion) {
    let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/grpc");
    let set = protox::compile(["open_inference_grpc.proto"], [proto]).unwrap();
    let pool = DescriptorPool::from_file_descriptor_set(set).unwrap();
    let input = pool
        .get_message_by_name("inference.ModelInferRequest")
        .unwrap();
    let limits = Limits {
        max_array_items: 1 << 20,
        ..Limits::default()
    };
    let check = MessageCheck::new(input.clone(), false, &limits);
    let mut group = c.benchmark_group("grpc_message");
    for bytes in [1024usize, 1 << 20] {
        let json = format!(
            r#"{{"model_name": "iris", "inputs": [{{"name": "input-0", "datatype": "FP32",
                "shape": [1, {}]}}]}}"#,
            bytes / 4
        );
        let mut reader = serde_json::Deserializer::from_str(&json);
        let mut message = DynamicMessage::deserialize(input.clone(), &mut reader).unwrap();
        let raw = Value::List(vec![Value::Bytes(Bytes::from(vec![0u8; bytes]))]);
        message.set_field_by_name("raw_input_contents", raw);
        let encoded = Bytes::from(message.encode_to_vec());
        assert_eq!(check.check(encoded.clone()), Ok(()));
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(
            format!("ModelInferRequest {} KiB tensor", bytes / 1024),
            |b| b.iter(|| check.check(black_box(encoded.clone()))),
        );
    }
    // The same 1 MiB as typed values (`contents.fp32_contents`): each becomes a value.
    let json = format!(
        r#"{{"model_name": "iris", "inputs": [{{"name": "input-0", "datatype": "FP32",
            "shape": [1, 262144], "contents": {{"fp32_contents": [{}]}}}}]}}"#,
        vec!["0.5"; 262_144].join(",")
    );
    let mut reader = serde_json::Deserializer::from_str(&json);
    let message = DynamicMessage::deserialize(input, &mut reader).unwrap();
    let encoded = Bytes::from(message.encode_to_vec());
    assert_eq!(check.check(encoded.clone()), Ok(()));
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("ModelInferRequest 1024 KiB typed fp32_contents", |b| {
        b.iter(|| check.check(black_box(encoded.clone())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
