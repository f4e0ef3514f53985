//! Fuzz target of the LLM meter's event reader (`fuzz/`, replayed by
//! `tests/fuzz_targets.rs`): an upstream event stream, cut into frames at boundaries the
//! input's first bytes choose. Without a limit every byte passes, in order, and the count
//! comes out the same wherever the frames were cut (here: one frame, and the chosen cuts).

use bytes::Bytes;

use super::{Feed, Meter};

/// Feeds `frames` through a meter; what it passed on, its counts.
fn metered<'a>(frames: impl Iterator<Item = &'a [u8]>) -> (Vec<u8>, u64, u64, bool) {
    let mut meter = Meter::new(true, true, 7, None, false);
    let mut out = Vec::new();
    for frame in frames {
        match meter.feed(Bytes::copy_from_slice(frame)) {
            Feed::Pass(bytes) => out.extend_from_slice(&bytes),
            Feed::Hold => {}
            Feed::Cut(_) => panic!("a meter without a limit cut the stream"),
        }
    }
    if let Some(tail) = meter.end() {
        out.extend_from_slice(&tail);
    }
    (out, meter.prompt, meter.completion, meter.reported)
}

pub fn target(bytes: &[u8]) {
    let Some((&cuts, stream)) = bytes.split_first() else {
        return;
    };
    let whole = metered(std::iter::once(stream));
    assert_eq!(whole.0, stream, "the stream changed on its way through");
    // Frames of 1 to 16 bytes, their sizes drawn from the first byte.
    let mut sizes = (1..).map(|i: usize| 1 + (usize::from(cuts) * 7 + i * 13) % 16);
    let mut rest = stream;
    let frames = std::iter::from_fn(|| {
        let size = sizes.next()?.min(rest.len());
        let (frame, tail) = rest.split_at(size);
        rest = tail;
        (!frame.is_empty()).then_some(frame)
    });
    let split = metered(frames);
    assert_eq!(
        split, whole,
        "cutting the frames elsewhere changed the events"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_with_usage_is_counted_the_same_cut_anywhere() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let (out, prompt, completion, reported) = metered(std::iter::once(&stream[..]));
        assert_eq!(
            (&out[..], prompt, completion, reported),
            (&stream[..], 3, 2, true)
        );
        for first in [0u8, 1, 200] {
            let mut input = vec![first];
            input.extend_from_slice(stream);
            target(&input);
        }
    }
}
