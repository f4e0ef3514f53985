//! libFuzzer target `grpc`: see `moat::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moat::fuzz::run("grpc", data));
