//! A gRPC call's message compression (`grpc-encoding`): the encodings moat can read, and
//! a compressed message decompressed within `grpc.max_message_bytes` — a decompression bomb
//! stops at the limit, never allocating what it would expand to. moat forwards the
//! decompressed message it checked (flag 0), not the compressed bytes: the model's
//! decompressor might read them otherwise (a second gzip member, trailing bytes), and the
//! message that reaches it must be the one that was checked.

use std::io::Read as _;

use bytes::Bytes;
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use http::HeaderMap;

use super::framing::{self, FramingError};
use crate::reject::Rejection;

/// A call's message encoding, from its `grpc-encoding` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Identity,
    Gzip,
    /// gRPC's `deflate` is the zlib format (RFC 1950), as grpc-core and grpc-java write it.
    Deflate,
}

impl Encoding {
    /// The call's encoding; one moat cannot read (snappy, zstd, …) is refused before any
    /// message is read, as the gRPC spec asks: UNIMPLEMENTED with `grpc-accept-encoding`.
    pub fn of(headers: &HeaderMap) -> Result<Encoding, Rejection> {
        let Some(value) = headers.get("grpc-encoding") else {
            return Ok(Encoding::Identity);
        };
        match value.as_bytes() {
            b"identity" => Ok(Encoding::Identity),
            b"gzip" => Ok(Encoding::Gzip),
            b"deflate" => Ok(Encoding::Deflate),
            _ => Err(Rejection::GrpcEncodingUnsupported),
        }
    }

    /// `compressed` as the message it encodes, refused past `limit` bytes once decompressed,
    /// and framed as it goes on (an uncompressed 5-byte prefix, then the message): one
    /// buffer, the message never copied again. `[5..]` is the message.
    pub fn decompress(self, compressed: &[u8], limit: u64) -> Result<Bytes, FramingError> {
        let guess = compressed.len().saturating_mul(4).min(1 << 20);
        let mut message = Vec::with_capacity(5 + guess);
        message.extend_from_slice(&[0; 5]);
        let read = match self {
            Encoding::Identity => {
                return Err(FramingError::Malformed(
                    "a message is flagged compressed but the call names no grpc-encoding",
                ));
            }
            Encoding::Gzip => {
                let mut decoder = MultiGzDecoder::new(compressed);
                let read = (&mut decoder).take(limit + 1).read_to_end(&mut message);
                read.map(|_| true)
            }
            Encoding::Deflate => {
                let mut decoder = ZlibDecoder::new(compressed);
                let read = (&mut decoder).take(limit + 1).read_to_end(&mut message);
                // Bytes after the zlib stream would be read by no one; refuse them.
                read.map(|_| decoder.total_in() == compressed.len() as u64)
            }
        };
        let length = message.len() - 5;
        let prefix = (length as u64 <= limit)
            .then(|| framing::prefix(length))
            .flatten();
        message[..5].copy_from_slice(&prefix.ok_or(FramingError::TooLarge { limit })?);
        match read {
            Ok(true) => Ok(Bytes::from(message)),
            Ok(false) => Err(FramingError::Malformed(
                "a compressed message carries bytes after its deflate stream",
            )),
            Err(_) => Err(FramingError::Malformed(
                "a compressed message does not decompress as its grpc-encoding says",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write as _;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn the_header_names_the_encoding_and_an_unknown_one_is_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(Encoding::of(&headers), Ok(Encoding::Identity));
        headers.insert("grpc-encoding", "gzip".parse().unwrap());
        assert_eq!(Encoding::of(&headers), Ok(Encoding::Gzip));
        headers.insert("grpc-encoding", "zstd".parse().unwrap());
        assert_eq!(
            Encoding::of(&headers),
            Err(Rejection::GrpcEncodingUnsupported)
        );
        // What a refusal says moat accepts is what it reads.
        for name in crate::reject::GRPC_ENCODINGS.split(',') {
            headers.insert("grpc-encoding", name.parse().unwrap());
            assert!(Encoding::of(&headers).is_ok(), "{name}");
        }
    }

    #[test]
    fn a_message_decompresses_to_what_was_compressed() {
        let message = b"a message, compressed".repeat(10);
        let framed = |m: &[u8]| [&[0][..], &(m.len() as u32).to_be_bytes(), m].concat();
        let gzipped = Encoding::Gzip.decompress(&gzip(&message), 1000);
        assert_eq!(gzipped.as_deref(), Ok(&framed(&message)[..]));
        let deflated = Encoding::Deflate.decompress(&zlib(&message), 1000);
        assert_eq!(deflated.as_deref(), Ok(&framed(&message)[..]));
        // Two gzip members are one message, as `gzip -d` reads them.
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(
            Encoding::Gzip.decompress(&two, 10).as_deref(),
            Ok(&framed(b"abcd")[..])
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 16 MiB of zeros in a few KiB: refused having decompressed one byte past the limit.
        let bomb = gzip(&vec![0; 16 << 20]);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let refused = Encoding::Gzip.decompress(&bomb, 1 << 20);
        assert_eq!(refused, Err(FramingError::TooLarge { limit: 1 << 20 }));
    }

    #[test]
    fn garbage_trailing_bytes_and_a_missing_encoding_are_malformed() {
        let malformed =
            |r: Result<Bytes, FramingError>| matches!(r, Err(FramingError::Malformed(_)));
        assert!(malformed(Encoding::Gzip.decompress(b"not gzip", 100)));
        let mut trailing = zlib(b"abc");
        trailing.push(0);
        assert!(malformed(Encoding::Deflate.decompress(&trailing, 100)));
        let mut trailing = gzip(b"abc");
        trailing.push(0);
        assert!(malformed(Encoding::Gzip.decompress(&trailing, 100)));
        assert!(malformed(Encoding::Identity.decompress(b"abc", 100)));
    }
}
