//! The one canonical encoding of every consensus object (SPEC §2).
//!
//! Everything that is hashed, signed, gossiped or stored goes through this module, so the wire
//! format can be swapped in one place. bincode 2.0.1 with `standard()` + fixed-width little-endian
//! integers: enum tags are u32, lengths u64, `Option` tags u8. Decoding is always bounded and
//! rejects trailing bytes, so each value has exactly one accepted byte string.

use bincode::config::{self, Configuration, Fixint, Limit, LittleEndian, NoLimit};
use serde::{de::DeserializeOwned, Serialize};

/// Hard ceiling on any single decode, whatever the caller's own bound. A hostile length prefix
/// can claim at most this much before bincode refuses it.
pub const MAX_DECODE_BYTES: usize = 64 << 20;

const ENCODE: Configuration<LittleEndian, Fixint, NoLimit> =
    config::standard().with_fixed_int_encoding();
const DECODE: Configuration<LittleEndian, Fixint, Limit<MAX_DECODE_BYTES>> = config::standard()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DECODE_BYTES>();

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("encoded value is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("{extra} trailing bytes after the encoded value")]
    TrailingBytes { extra: usize },
}

/// Canonical bytes of `value`.
///
/// Our consensus types are plain structs, enums, `Vec`s and `BTreeMap`s, which bincode always
/// encodes; a failure here is a programming error (a type serde cannot size), not bad input.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, ENCODE)
        .expect("consensus types always have a canonical encoding")
}

/// Appends the canonical bytes of `value` to `out` (no intermediate allocation).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    bincode::serde::encode_into_std_write(value, out, ENCODE)
        .expect("consensus types always have a canonical encoding");
}

/// Length of the canonical encoding of `value`, without allocating it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    bincode::serde::encode_into_std_write(value, &mut c, ENCODE)
        .expect("consensus types always have a canonical encoding");
    c.0
}

/// Decodes exactly one `T` from `bytes`, which must be at most `max_len` long and hold nothing
/// after the value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, CodecError> {
    let max = max_len.min(MAX_DECODE_BYTES);
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, DECODE)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - read,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Sample {
        a: u64,
        b: Vec<u8>,
        c: Option<u16>,
        d: BTreeMap<String, u32>,
    }

    fn sample() -> Sample {
        Sample {
            a: 7,
            b: vec![1, 2, 3],
            c: Some(9),
            d: [("x".to_string(), 1u32)].into_iter().collect(),
        }
    }

    #[test]
    fn round_trips_and_fixes_layout() {
        let bytes = encode(&sample());
        // u64 fixed (8) + len u64 (8) + 3 + option tag (1) + u16 (2) + map len (8) + str len (8) + 1 + u32 (4)
        assert_eq!(bytes.len(), 8 + 8 + 3 + 1 + 2 + 8 + 8 + 1 + 4);
        assert_eq!(&bytes[..8], &7u64.to_le_bytes());
        assert_eq!(encoded_len(&sample()), bytes.len());
        let back: Sample = decode(&bytes, 1024).expect("decodes");
        assert_eq!(back, sample());
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert_eq!(
            decode::<Sample>(&bytes, 1024),
            Err(CodecError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn rejects_oversized_input() {
        let bytes = encode(&sample());
        assert!(matches!(
            decode::<Sample>(&bytes, 4),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_truncated_and_hostile_lengths() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert!(
                decode::<Sample>(&bytes[..cut], 1024).is_err(),
                "cut at {cut}"
            );
        }
        // A length prefix claiming 2^63 bytes must fail without allocating it.
        let mut hostile = 7u64.to_le_bytes().to_vec();
        hostile.extend_from_slice(&(1u64 << 63).to_le_bytes());
        assert!(matches!(
            decode::<Sample>(&hostile, 1024),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_bad_option_tag_and_bad_utf8() {
        let mut bytes = encode(&sample());
        bytes[8 + 8 + 3] = 2; // option tag must be 0 or 1
        assert!(decode::<Sample>(&bytes, 1024).is_err());
        let s = encode(&"ab".to_string());
        let mut bad = s.clone();
        bad[8] = 0xff;
        assert!(decode::<String>(&bad, 64).is_err());
    }
}
