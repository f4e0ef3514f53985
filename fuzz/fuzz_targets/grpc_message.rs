//! libFuzzer target `grpc_message`: see `moat::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moat::fuzz::run("grpc_message", data));
