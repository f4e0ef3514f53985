//! A gRPC call's messages as they pass: each a 5-byte prefix (a compressed flag, a
//! big-endian length) and that many bytes. Read from the prefix, a message over
//! `grpc.max_message_bytes` is refused before any of it is held; a stream that ends inside
//! a prefix or a message — a length that promises more than was sent — is refused instead
//! of leaving the model waiting for bytes that never come; a unary call carries exactly one
//! message. With a [`MessageCheck`], each message is also checked against its type as soon
//! as its last byte has passed (a message that came in one piece is checked in place; one
//! split over several is gathered first, within the limit). A compressed message is held
//! back, decompressed within the same limit (see `encoding`), checked, and forwarded
//! decompressed in its place. Plain state over bytes: no I/O, fed by `admit::Bounded`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::encoding::Encoding;
use super::message::MessageCheck;
use super::relay::Relay;
use crate::reject::{FieldError, Rejection};

#[derive(Debug, Clone)]
pub struct Framing {
    limit: u64,
    unary: bool,
    messages: u64,
    state: State,
    check: Option<MessageCheck>,
    encoding: Encoding,
    /// The message being gathered, when it is checked or compressed and came in pieces.
    gathered: BytesMut,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// `have` bytes of the next prefix read, into `prefix`.
    Prefix { have: usize, prefix: [u8; 5] },
    /// Inside a message, `left` bytes of it still to come; a `compressed` one is held back
    /// from its prefix on, and goes on decompressed once whole.
    Message { left: u64, compressed: bool },
}

/// Where a stream is between messages: the next prefix to read from its first byte.
const NEXT: State = State::Prefix {
    have: 0,
    prefix: [0; 5],
};

/// `message` with its 5-byte prefix (not compressed), as a call carries it; `None` past
/// the 4 GiB a prefix can announce.
pub fn frame(message: &[u8]) -> Option<Bytes> {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_slice(&prefix(message.len())?);
    framed.put_slice(message);
    Some(framed.freeze())
}

/// The 5-byte prefix of an uncompressed message of `length` bytes; `None` past the 4 GiB
/// a prefix can announce.
pub fn prefix(length: usize) -> Option<[u8; 5]> {
    let [a, b, c, d] = u32::try_from(length).ok()?.to_be_bytes();
    Some([0, a, b, c, d])
}

/// Why a call's messages are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingError {
    TooLarge {
        limit: u64,
    },
    Malformed(&'static str),
    /// The call's `message`th message (from 1) does not match its type.
    Invalid {
        message: u64,
        errors: Vec<FieldError>,
    },
}

impl FramingError {
    pub fn rejection(self) -> Rejection {
        match self {
            FramingError::TooLarge { limit } => Rejection::GrpcMessageTooLarge { limit },
            FramingError::Malformed(reason) => Rejection::InvalidGrpcMessage(reason),
            FramingError::Invalid { message, errors } => {
                Rejection::GrpcMessageSchema { message, errors }
            }
        }
    }
}

impl Framing {
    /// Messages of at most `limit` bytes (compressed, and again decompressed); `unary`:
    /// the method takes exactly one.
    pub fn new(limit: u64, unary: bool) -> Framing {
        Framing {
            limit,
            unary,
            messages: 0,
            state: NEXT,
            check: None,
            encoding: Encoding::Identity,
            gathered: BytesMut::new(),
        }
    }

    /// The same, each message checked against its type by `check`.
    pub fn checking(mut self, check: MessageCheck) -> Framing {
        self.check = Some(check);
        self
    }

    /// The same, compressed messages read as `encoding` (the call's `grpc-encoding`).
    pub fn encoded(mut self, encoding: Encoding) -> Framing {
        self.encoding = encoding;
        self
    }

    /// Reads the next bytes of the stream. What goes on in their place: `None` for the
    /// bytes as they came, or — when a compressed message began, lay or ended in them —
    /// the bytes with that message held back, and its decompressed frame once it is whole.
    pub fn feed(&mut self, data: &Bytes) -> Result<Option<Bytes>, FramingError> {
        let mut relay = Relay::new(self.holding_back());
        let mut rest = data.clone();
        while !rest.is_empty() {
            let at = data.len() - rest.len();
            match &mut self.state {
                State::Message { left, compressed } => {
                    // `take` ≤ `rest.len()`, so the cast back cannot truncate.
                    let take = (*left).min(rest.len() as u64) as usize;
                    let whole = *left == take as u64 && self.gathered.is_empty();
                    let compressed = *compressed;
                    *left -= take as u64;
                    let done = *left == 0;
                    let piece = rest.split_to(take);
                    if let Some(forward) = self.passed(piece, whole, done, compressed)? {
                        relay.replace(data, at + take, forward);
                    }
                }
                State::Prefix { have, prefix } => {
                    if *have == 0 && rest[0] == 1 {
                        relay.hold_back(data, at);
                    }
                    let take = (5 - *have).min(rest.len());
                    prefix[*have..*have + take].copy_from_slice(&rest[..take]);
                    *have += take;
                    rest.advance(take);
                    if *have == 5 {
                        let prefix = *prefix;
                        if let Some(forward) = self.message(prefix)? {
                            relay.replace(data, at + take, forward);
                        }
                    }
                }
            }
        }
        Ok(relay.finish(data))
    }

    /// Whether the stream is inside a compressed message (or its prefix).
    fn holding_back(&self) -> bool {
        match self.state {
            State::Prefix { have, prefix } => have > 0 && prefix[0] == 1,
            State::Message { compressed, .. } => compressed,
        }
    }

    /// `piece` of the current message has passed, the rest of it if `done` (all of it if
    /// `whole`): a message that is read (checked or compressed) is gathered, and read once
    /// done. `Some` frame to forward in place of a compressed one.
    fn passed(
        &mut self,
        piece: Bytes,
        whole: bool,
        done: bool,
        compressed: bool,
    ) -> Result<Option<Bytes>, FramingError> {
        if self.check.is_none() && !compressed {
            if done {
                self.state = NEXT;
            }
            return Ok(None);
        }
        if whole {
            return self.checked(piece, compressed);
        }
        self.gathered.extend_from_slice(&piece);
        match done {
            true => {
                let message = self.gathered.split().freeze();
                self.checked(message, compressed)
            }
            false => Ok(None),
        }
    }

    /// A complete prefix: the message it announces.
    fn message(&mut self, prefix: [u8; 5]) -> Result<Option<Bytes>, FramingError> {
        let compressed = match prefix[0] {
            0 => false,
            1 if self.encoding == Encoding::Identity => {
                return Err(FramingError::Malformed(
                    "a message is flagged compressed but the call names no grpc-encoding",
                ));
            }
            1 => true,
            _ => {
                return Err(FramingError::Malformed(
                    "a message's compressed flag is neither 0 nor 1",
                ));
            }
        };
        self.messages += 1;
        self.state = NEXT;
        if self.unary && self.messages > 1 {
            return Err(FramingError::Malformed(
                "a unary method takes one message and more were sent",
            ));
        }
        let length = u64::from(u32::from_be_bytes([
            prefix[1], prefix[2], prefix[3], prefix[4],
        ]));
        if length > self.limit {
            return Err(FramingError::TooLarge { limit: self.limit });
        }
        match length {
            0 => self.checked(Bytes::new(), compressed),
            left => {
                self.state = State::Message { left, compressed };
                Ok(None)
            }
        }
    }

    /// A whole message has passed: decompressed if it is compressed, checked (when a check
    /// is set), and the next prefix is read from here on. `Some` frame to forward in place
    /// of a compressed message: the one checked.
    fn checked(&mut self, message: Bytes, compressed: bool) -> Result<Option<Bytes>, FramingError> {
        self.state = NEXT;
        let (message, forward) = match compressed {
            true => {
                let framed = self.encoding.decompress(&message, self.limit)?;
                (framed.slice(5..), Some(framed))
            }
            false => (message, None),
        };
        if let Some(check) = &self.check {
            check
                .check(message)
                .map_err(|errors| FramingError::Invalid {
                    message: self.messages,
                    errors,
                })?;
        }
        Ok(forward)
    }

    /// The stream ended: it must end between messages, and a unary call must have sent one.
    pub fn finish(&self) -> Result<(), FramingError> {
        match self.state {
            State::Message { .. } => Err(FramingError::Malformed(
                "the stream ended inside a message: its length prefix promises more bytes than \
                 were sent",
            )),
            State::Prefix { have, .. } if have > 0 => Err(FramingError::Malformed(
                "the stream ended inside a message's 5-byte prefix",
            )),
            _ if self.unary && self.messages == 0 => Err(FramingError::Malformed(
                "a unary method takes one message and none was sent",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Feeds `bytes` cut into pieces of every size from 1 up, and finishes.
    fn verdicts(limit: u64, unary: bool, bytes: &[u8]) -> Vec<Result<(), FramingError>> {
        (1..=bytes.len().max(1))
            .map(|size| {
                let mut framing = Framing::new(limit, unary);
                for piece in bytes.chunks(size) {
                    framing.feed(&Bytes::copy_from_slice(piece))?;
                }
                framing.finish()
            })
            .collect()
    }

    #[test]
    fn messages_pass_however_the_stream_is_cut() {
        let mut stream = frame(0, b"hello");
        stream.extend(frame(0, b""));
        stream.extend(frame(0, &[7; 300]));
        assert!(verdicts(300, false, &stream).iter().all(Result::is_ok));
        assert!(
            verdicts(300, true, &frame(0, b"one"))
                .iter()
                .all(Result::is_ok)
        );
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_prefix() {
        // Only the prefix is sent: the refusal needs none of the message.
        let prefix = &frame(0, &[0; 301])[..5];
        let mut framing = Framing::new(300, false);
        assert_eq!(
            framing.feed(&Bytes::copy_from_slice(prefix)),
            Err(FramingError::TooLarge { limit: 300 })
        );
    }

    #[test]
    fn a_stream_cut_short_or_a_second_unary_message_is_malformed() {
        let whole = frame(0, b"hello");
        for cut in 1..whole.len() {
            let verdict = verdicts(100, false, &whole[..cut]);
            assert!(verdict.iter().all(Result::is_err), "cut at {cut}");
        }
        let mut two = frame(0, b"a");
        two.extend(frame(0, b"b"));
        assert!(verdicts(100, true, &two).iter().all(Result::is_err));
        assert!(verdicts(100, false, &two).iter().all(Result::is_ok));
        assert!(Framing::new(100, true).finish().is_err(), "no message");
        assert!(
            Framing::new(100, false).finish().is_ok(),
            "a stream may be empty"
        );
        assert!(
            verdicts(100, false, &frame(2, b"x"))
                .iter()
                .all(Result::is_err)
        );
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// What a gzip stream turns into, fed in pieces of every size: the same plain stream.
    #[test]
    fn compressed_messages_go_on_decompressed_however_the_stream_is_cut() {
        let mut stream = frame(0, b"plain");
        stream.extend(frame(1, &gzip(b"squeezed")));
        stream.extend(frame(0, b""));
        stream.extend(frame(1, &gzip(&[]))); // an empty message, compressed
        stream.extend(frame(0, b"tail"));
        let mut expected = frame(0, b"plain");
        expected.extend(frame(0, b"squeezed"));
        expected.extend(frame(0, b""));
        expected.extend(frame(0, b""));
        expected.extend(frame(0, b"tail"));
        for size in 1..=stream.len() {
            let mut framing = Framing::new(100, false).encoded(Encoding::Gzip);
            let mut relayed = Vec::new();
            for piece in stream.chunks(size) {
                let piece = Bytes::copy_from_slice(piece);
                let out = framing.feed(&piece).unwrap();
                relayed.extend_from_slice(&out.unwrap_or(piece));
            }
            framing.finish().unwrap();
            assert_eq!(relayed, expected, "pieces of {size}");
        }
    }

    #[test]
    fn a_compressed_message_is_bounded_decompressed_and_needs_an_encoding() {
        let bomb = frame(1, &gzip(&[0; 10_000]));
        let mut framing = Framing::new(1000, true).encoded(Encoding::Gzip);
        assert_eq!(
            framing.feed(&Bytes::from(bomb.clone())),
            Err(FramingError::TooLarge { limit: 1000 })
        );
        let mut plain = Framing::new(100_000, true);
        assert!(matches!(
            plain.feed(&Bytes::from(bomb)),
            Err(FramingError::Malformed(_))
        ));
    }
}
