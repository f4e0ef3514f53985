//! A gRPC call's messages as they pass: each a 5-byte prefix (a compressed flag, a
//! big-endian length) and that many bytes. Read from the prefix, a message over
//! `grpc.max_message_bytes` is refused before any of it is held; a stream that ends inside
//! a prefix or a message — a length that promises more than was sent — is refused instead
//! of leaving the model waiting for bytes that never come; a unary call carries exactly one
//! message. With a [`MessageCheck`], each message is also checked against its type as soon
//! as its last byte has passed (a message that came in one piece is checked in place; one
//! split over several is gathered first, within the limit). Plain state over bytes: no I/O,
//! fed by `admit::Bounded`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::message::MessageCheck;
use crate::reject::{FieldError, Rejection};

#[derive(Debug, Clone)]
pub struct Framing {
    limit: u64,
    unary: bool,
    messages: u64,
    state: State,
    check: Option<MessageCheck>,
    /// The message being gathered, when it is checked and came in pieces.
    gathered: BytesMut,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// `have` bytes of the next prefix read, into `prefix`.
    Prefix { have: usize, prefix: [u8; 5] },
    /// Inside a message, `left` bytes of it still to come.
    Message { left: u64 },
}

/// Where a stream is between messages: the next prefix to read from its first byte.
const NEXT: State = State::Prefix {
    have: 0,
    prefix: [0; 5],
};

/// `message` with its 5-byte prefix (not compressed), as a call carries it; `None` past
/// the 4 GiB a prefix can announce.
pub fn frame(message: &[u8]) -> Option<Bytes> {
    let length = u32::try_from(message.len()).ok()?;
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(length);
    framed.put_slice(message);
    Some(framed.freeze())
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
    /// Messages of at most `limit` bytes; `unary`: the method takes exactly one.
    pub fn new(limit: u64, unary: bool) -> Framing {
        Framing {
            limit,
            unary,
            messages: 0,
            state: NEXT,
            check: None,
            gathered: BytesMut::new(),
        }
    }

    /// The same, each message checked against its type by `check`.
    pub fn checking(mut self, check: MessageCheck) -> Framing {
        self.check = Some(check);
        self
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, data: &Bytes) -> Result<(), FramingError> {
        let mut data = data.clone();
        while !data.is_empty() {
            match &mut self.state {
                State::Message { left } => {
                    // `take` ≤ `data.len()`, so the cast back cannot truncate.
                    let take = (*left).min(data.len() as u64) as usize;
                    let whole = *left == take as u64 && self.gathered.is_empty();
                    *left -= take as u64;
                    let done = *left == 0;
                    let piece = data.split_to(take);
                    if self.check.is_some() {
                        if whole {
                            self.checked(piece)?;
                            continue;
                        }
                        self.gathered.extend_from_slice(&piece);
                    }
                    if done {
                        let message = self.gathered.split().freeze();
                        self.checked(message)?;
                    }
                }
                State::Prefix { have, prefix } => {
                    let take = (5 - *have).min(data.len());
                    prefix[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data.advance(take);
                    if *have == 5 {
                        let prefix = *prefix;
                        self.message(prefix)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A complete prefix: the message it announces.
    fn message(&mut self, prefix: [u8; 5]) -> Result<(), FramingError> {
        if prefix[0] > 1 {
            return Err(FramingError::Malformed(
                "a message's compressed flag is neither 0 nor 1",
            ));
        }
        // A checked message must be readable as its type; decompression is not built yet.
        if prefix[0] == 1 && self.check.is_some() {
            return Err(FramingError::Malformed(
                "compressed messages (grpc-encoding) are not accepted: send them uncompressed",
            ));
        }
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
            0 => self.checked(Bytes::new()),
            left => {
                self.state = State::Message { left };
                Ok(())
            }
        }
    }

    /// A whole message has passed: checked (when a check is set), and the next prefix is
    /// read from here on.
    fn checked(&mut self, message: Bytes) -> Result<(), FramingError> {
        self.state = NEXT;
        let Some(check) = &self.check else {
            return Ok(());
        };
        check
            .check(message)
            .map_err(|errors| FramingError::Invalid {
                message: self.messages,
                errors,
            })
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
        stream.extend(frame(1, b""));
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
}
