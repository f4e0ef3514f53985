//! libFuzzer target `key_store`: see `moat::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moat::fuzz::run("key_store", data));
