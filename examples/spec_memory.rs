//! Heap held by a compiled spec: `cargo run --release --example spec_memory -- SPEC`.
//! Reads glibc's allocator counters around `spec::load`, so it measures what moat keeps
//! per spec (validators, routes, parameters), apart from the binary and the runtime.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2().uordblks }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn in_use() -> usize {
    0
}

fn main() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: spec_memory SPEC (an OpenAPI file)")?;
    let before = in_use();
    let docs = moat::spec::source::from_file(std::path::Path::new(&path))?;
    let parsed = in_use();
    let spec = moat::spec::load(docs).map_err(|problems| problems.join("\n"))?;
    let compiled = in_use();
    let bodies = spec
        .operations
        .iter()
        .filter_map(|op| op.body.as_ref())
        .flat_map(|body| &body.media)
        .filter(|media| media.schema.is_some())
        .count();
    println!(
        "{path}: {} operations, {bodies} body schemas; parsed documents {} KiB (freed after \
         compiling), compiled spec {} KiB",
        spec.operations.len(),
        (parsed - before) / 1024,
        compiled.saturating_sub(before) / 1024,
    );
    Ok(())
}
