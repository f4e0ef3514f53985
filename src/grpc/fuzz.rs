//! Fuzz target of a gRPC call's framing and deadline (`fuzz/`, replayed by
//! `tests/fuzz_targets.rs`). The first byte picks the method's kind and message bound; the
//! rest is the request stream, its compressed messages gzip. [`Framing`] reads it the same
//! however the stream is cut, and agrees with a reading of the whole stream at once — the
//! verdict, and the stream it forwards (compressed messages decompressed in place). Any bytes as `grpc-timeout` read
//! as a deadline, or none; one that reads goes on rounded up, never shorter.

use http::HeaderValue;

use super::encoding::Encoding;
use super::framing::{Framing, FramingError, frame};
use super::message::MessageCheck;
use super::timeout;

pub fn target(bytes: &[u8]) {
    let Some((&first, stream)) = bytes.split_first() else {
        return;
    };
    let unary = first & 1 == 1;
    let limit = u64::from(first >> 1) * 3;
    let whole = at_once(stream, limit, unary);
    for cut in [1, 2, 5, 7, stream.len().max(1)] {
        assert_eq!(
            fed(stream, limit, unary, cut),
            whole,
            "cut every {cut} bytes"
        );
    }
    deadline(bytes);
}

/// The stream fed `cut` bytes at a time, then finished: what went on.
fn fed(stream: &[u8], limit: u64, unary: bool, cut: usize) -> Result<Vec<u8>, FramingError> {
    let mut framing = Framing::new(limit, unary).encoded(Encoding::Gzip);
    let mut relayed = Vec::new();
    for piece in stream.chunks(cut) {
        let piece = bytes::Bytes::copy_from_slice(piece);
        let out = framing.feed(&piece)?;
        relayed.extend_from_slice(&out.unwrap_or(piece));
    }
    framing.finish()?;
    Ok(relayed)
}

/// The same, from the whole stream in one reading.
fn at_once(mut stream: &[u8], limit: u64, unary: bool) -> Result<Vec<u8>, FramingError> {
    let mut relayed = Vec::new();
    let mut messages = 0;
    while !stream.is_empty() {
        let Some((prefix, rest)) = stream.split_first_chunk::<5>() else {
            return Err(FramingError::Malformed(
                "the stream ended inside a message's 5-byte prefix",
            ));
        };
        if prefix[0] > 1 {
            return Err(FramingError::Malformed(
                "a message's compressed flag is neither 0 nor 1",
            ));
        }
        messages += 1;
        if unary && messages > 1 {
            return Err(FramingError::Malformed(
                "a unary method takes one message and more were sent",
            ));
        }
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        if u64::from(length) > limit {
            return Err(FramingError::TooLarge { limit });
        }
        let (Some(message), Some(after)) =
            (rest.get(..length as usize), rest.get(length as usize..))
        else {
            return Err(FramingError::Malformed(
                "the stream ended inside a message: its length prefix promises more bytes than \
                 were sent",
            ));
        };
        match prefix[0] {
            1 => {
                // Reframed by `frame`, so the prefix `decompress` wrote is checked too.
                let framed = Encoding::Gzip.decompress(message, limit)?;
                relayed.extend_from_slice(&frame(&framed[5..]).unwrap_or_default());
            }
            _ => relayed.extend_from_slice(&stream[..5 + message.len()]),
        }
        stream = after;
    }
    match unary && messages == 0 {
        true => Err(FramingError::Malformed(
            "a unary method takes one message and none was sent",
        )),
        false => Ok(relayed),
    }
}

fn deadline(bytes: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return;
    };
    let Some(deadline) = timeout::parse(&value) else {
        return;
    };
    let forwarded = timeout::parse(&timeout::format(deadline));
    assert!(
        forwarded.is_some_and(|f| f >= deadline),
        "{deadline:?} went on as {forwarded:?}"
    );
}

/// Fuzz target `grpc_message`: any bytes as an Open Inference Protocol `ModelInferRequest`
/// (the proto moat ships), checked as stage 6 checks a message. It never panics; a verdict
/// is the same twice; a message the strict check passes, the lenient one (unknown fields
/// allowed) passes too; and a refusal always names at least one reason.
pub fn message(bytes: &[u8]) {
    let Some((strict, lenient)) = &*CHECKS else {
        panic!("the shipped OIP proto compiles");
    };
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    let verdict = strict.check(bytes.clone());
    assert_eq!(
        verdict,
        strict.check(bytes.clone()),
        "the same verdict twice"
    );
    match verdict {
        Ok(()) => assert_eq!(
            lenient.check(bytes),
            Ok(()),
            "strict passed, lenient refused"
        ),
        Err(errors) => assert!(
            !errors.is_empty() && errors.iter().all(|e| !e.message.is_empty()),
            "{errors:?}"
        ),
    }
}

/// The strict and the lenient check of `ModelInferRequest`, from the OIP proto compiled in
/// memory.
static CHECKS: std::sync::LazyLock<Option<(MessageCheck, MessageCheck)>> =
    std::sync::LazyLock::new(|| {
        let mut compiler = protox::Compiler::with_file_resolver(Shipped);
        compiler.open_file(OIP_NAME).ok()?;
        let input = compiler
            .descriptor_pool()
            .get_message_by_name(crate::oip::INFER_REQUEST)?;
        let limits = crate::config::Limits::default();
        Some((
            MessageCheck::new(input.clone(), false, &limits),
            MessageCheck::new(input, true, &limits),
        ))
    });

const OIP_NAME: &str = "open_inference_grpc.proto";

/// Serves the one proto the target needs from the binary itself.
struct Shipped;

impl protox::file::FileResolver for Shipped {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match name {
            OIP_NAME => protox::file::File::from_source(
                name,
                include_str!("../../examples/grpc/open_inference_grpc.proto"),
            ),
            _ => Err(protox::Error::file_not_found(name)),
        }
    }
}
