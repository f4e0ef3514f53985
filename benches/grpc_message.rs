//! A gRPC message checked against its type: an Open Inference Protocol `ModelInferRequest`
//! with a 1 KiB and a 1 MiB FP32 tensor in `raw_input_contents`, decoded by prost-reflect,
//! (and the 1 MiB as typed `fp32_contents`), walked for unknown fields and the guard rails,
//! and its tensor checked for consistency —
//! what stage 6 does to every unary `ModelInfer` call; then the 1 KiB call held to a
//! `grpc.rules` schema (the message built as proto3 JSON), and the 1 MiB call sent gzip'd
//! (decompressed, checked, reframed). Each case also prints the allocations one check makes.
//! Run: `cargo bench --bench grpc_message`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is the failure report
#![allow(unsafe_code)] // the counting allocator

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use moat::config::Limits;
use moat::grpc::message::MessageCheck;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};

/// The system allocator, counting allocations and the bytes they ask for: each case prints
/// what one check allocates beside its time.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Prints the allocations one run of `work` makes.
fn allocations<T>(name: &str, work: impl Fn() -> T) {
    let (count, bytes) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED.load(Ordering::Relaxed),
    );
    black_box(work());
    let count = ALLOCATIONS.load(Ordering::Relaxed) - count;
    let bytes = ALLOCATED.load(Ordering::Relaxed) - bytes;
    println!("allocations: {name}: {count} allocations, {bytes} bytes");
}

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
        let encoded = request(&input, bytes);
        assert_eq!(check.check(encoded.clone()), Ok(()));
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        let name = format!("ModelInferRequest {} KiB tensor", bytes / 1024);
        allocations(&name, || check.check(encoded.clone()));
        group.bench_function(name, |b| b.iter(|| check.check(black_box(encoded.clone()))));
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
    allocations("ModelInferRequest 1024 KiB typed fp32_contents", || {
        check.check(encoded.clone())
    });
    group.bench_function("ModelInferRequest 1024 KiB typed fp32_contents", |b| {
        b.iter(|| check.check(black_box(encoded.clone())))
    });
    ruled(&mut group, &input_of(&pool), &limits);
    gzipped(&mut group, &input_of(&pool), &limits);
    group.finish();
}

fn input_of(pool: &DescriptorPool) -> prost_reflect::MessageDescriptor {
    pool.get_message_by_name("inference.ModelInferRequest")
        .unwrap()
}

/// An encoded `ModelInferRequest` for iris with `bytes` of FP32 raw contents, the bytes
/// made by a small LCG (as incompressible as a real tensor, and the same every run).
fn request(input: &prost_reflect::MessageDescriptor, bytes: usize) -> Bytes {
    let json = format!(
        r#"{{"model_name": "iris", "inputs": [{{"name": "input-0", "datatype": "FP32",
            "shape": [1, {}]}}]}}"#,
        bytes / 4
    );
    let mut reader = serde_json::Deserializer::from_str(&json);
    let mut message = DynamicMessage::deserialize(input.clone(), &mut reader).unwrap();
    let mut state = 0x2545_f491_u32;
    let data: Vec<u8> = (0..bytes)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let raw = Value::List(vec![Value::Bytes(Bytes::from(data))]);
    message.set_field_by_name("raw_input_contents", raw);
    Bytes::from(message.encode_to_vec())
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// The 1 KiB call held to a rule on its model and shapes (`grpc.rules`).
fn ruled(group: &mut Group<'_>, input: &prost_reflect::MessageDescriptor, limits: &Limits) {
    let schema = serde_json::json!({
        "required": ["model_name"],
        "properties": {"inputs": {"maxItems": 4, "items": {"properties": {"shape": {"items": {"maximum": 1_000_000}}}}}}
    });
    let rules = moat::spec::compile::standalone(&schema).unwrap();
    let shared = moat::spec::compile::SharedSchema(std::sync::Arc::new(rules));
    let check = MessageCheck::new(input.clone(), false, limits).with_rules(Some(shared));
    let encoded = request(input, 1024);
    assert_eq!(check.check(encoded.clone()), Ok(()));
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    allocations("ModelInferRequest 1 KiB tensor + grpc.rules", || {
        check.check(encoded.clone())
    });
    group.bench_function("ModelInferRequest 1 KiB tensor + grpc.rules", |b| {
        b.iter(|| check.check(black_box(encoded.clone())))
    });
}

/// The 1 MiB call gzip'd: its frame decompressed, checked and reframed, as stage 6 does.
fn gzipped(group: &mut Group<'_>, input: &prost_reflect::MessageDescriptor, limits: &Limits) {
    use moat::grpc::encoding::Encoding;
    use moat::grpc::framing::Framing;
    use std::io::Write as _;
    let plain = request(input, 1 << 20);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&plain).unwrap();
    let compressed = encoder.finish().unwrap();
    let mut framed = vec![1];
    framed.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&compressed);
    let framed = Bytes::from(framed);
    let check = MessageCheck::new(input.clone(), false, limits);
    group.throughput(Throughput::Bytes(plain.len() as u64));
    let once = || {
        let mut framing = Framing::new(4 << 20, true)
            .encoded(Encoding::Gzip)
            .checking(check.clone());
        let relayed = framing.feed(black_box(&framed)).unwrap();
        framing.finish().unwrap();
        relayed
    };
    allocations("ModelInferRequest 1024 KiB tensor, gzip", once);
    group.bench_function("ModelInferRequest 1024 KiB tensor, gzip", |b| b.iter(once));
}

criterion_group!(benches, bench);
criterion_main!(benches);
