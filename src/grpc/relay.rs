//! What goes on of a gRPC stream's bytes when a compressed message lies in them: the bytes
//! before and after it as they came, the message's decompressed frame in its place (see
//! `framing`).

use bytes::Bytes;

/// What goes on in place of one piece of a stream (see [`Framing::feed`]): pieces of it
/// and decompressed frames, built only when a compressed message touches the piece, so
/// plain messages pass as they came, without a copy.
pub(super) struct Relay {
    out: Vec<Bytes>,
    /// Where the bytes still to pass as they came begin; `None` while held back.
    from: Option<usize>,
}

impl Relay {
    pub(super) fn new(holding_back: bool) -> Relay {
        Relay {
            out: Vec::new(),
            from: (!holding_back).then_some(0),
        }
    }

    /// A compressed message begins at `at`: what came before it goes on, it does not.
    pub(super) fn hold_back(&mut self, data: &Bytes, at: usize) {
        if let Some(from) = self.from.take() {
            self.out.push(data.slice(from..at));
        }
    }

    /// The compressed message ended just before `at`: `frame` goes on in its place.
    pub(super) fn replace(&mut self, data: &Bytes, at: usize, frame: Bytes) {
        self.hold_back(data, at);
        self.out.push(frame);
        self.from = Some(at);
    }

    /// What goes on: `None` when nothing was held back or replaced (the piece as it came).
    pub(super) fn finish(mut self, data: &Bytes) -> Option<Bytes> {
        if self.out.is_empty() && self.from == Some(0) {
            return None;
        }
        if let Some(from) = self.from {
            self.out.push(data.slice(from..));
        }
        self.out.retain(|piece| !piece.is_empty());
        match self.out.len() {
            0 => Some(Bytes::new()),
            1 => self.out.pop(),
            _ => Some(Bytes::from(self.out.concat())),
        }
    }
}
