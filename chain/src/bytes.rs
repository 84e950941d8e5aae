//! Fixed-size byte strings (hashes, public keys, signatures).
//!
//! One type, two faces: the canonical (binary) encoding writes the raw bytes with no length
//! prefix; human-readable formats (JSON) show lowercase `0x`-prefixed hex, as SPEC §2 requires.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{self, SerializeTuple, Serializer};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HexError {
    #[error("expected 0x-prefixed hex")]
    MissingPrefix,
    #[error("expected {expected} bytes of hex, got {got}")]
    WrongLength { expected: usize, got: usize },
    #[error("invalid hex: {0}")]
    Invalid(String),
}

/// Parses `0x`-prefixed hex into exactly `N` bytes. Upper-case digits are accepted on input;
/// output is always lower case.
pub fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let digits = s.strip_prefix("0x").ok_or(HexError::MissingPrefix)?;
    if digits.len() != 2 * N {
        return Err(HexError::WrongLength {
            expected: N,
            got: digits.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| HexError::Invalid(e.to_string()))?;
    Ok(out)
}

/// `0x`-prefixed lowercase hex of arbitrary bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    s.push_str(&hex::encode(bytes));
    s
}

/// Longest byte string whose hex is written without a heap allocation (a signature).
const MAX_STACK_HEX: usize = 64;

pub(crate) fn serialize_fixed<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    s: S,
) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        // On the stack: a JSON answer of a big block holds thousands of hashes, keys and
        // signatures, and a heap string each was most of its allocations.
        let mut buf = [0u8; 2 + 2 * MAX_STACK_HEX];
        match buf.get_mut(..2 + 2 * N) {
            Some(out) => {
                out[..2].copy_from_slice(b"0x");
                hex::encode_to_slice(bytes, &mut out[2..]).map_err(ser::Error::custom)?;
                s.serialize_str(std::str::from_utf8(out).map_err(ser::Error::custom)?)
            }
            None => s.serialize_str(&to_hex(bytes)),
        }
    } else {
        let mut t = s.serialize_tuple(N)?;
        for b in bytes {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

pub(crate) fn deserialize_fixed<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<[u8; N], D::Error> {
    struct HexVisitor<const N: usize>;
    impl<const N: usize> Visitor<'_> for HexVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "0x-prefixed hex of {N} bytes")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_hex::<N>(v).map_err(E::custom)
        }
    }
    struct TupleVisitor<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for TupleVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }
    if d.is_human_readable() {
        d.deserialize_str(HexVisitor::<N>)
    } else {
        d.deserialize_tuple(N, TupleVisitor::<N>)
    }
}

/// Declares a fixed-size byte newtype with hex Display/Debug/FromStr and the dual serde form.
macro_rules! fixed_bytes {
    ($(#[$meta:meta])* $name:ident, $n:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $n]);

        #[allow(dead_code)]
        impl $name {
            pub const LEN: usize = $n;
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }
        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::bytes::to_hex(&self.0))
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
        impl std::str::FromStr for $name {
            type Err = $crate::bytes::HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::bytes::parse_hex::<$n>(s).map($name)
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::bytes::serialize_fixed(&self.0, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::bytes::deserialize_fixed::<D, $n>(d).map($name)
            }
        }
    };
}
pub(crate) use fixed_bytes;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fixed_bytes!(Six, 6);

    #[test]
    fn binary_is_raw_and_json_is_hex() {
        let v = Six([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]);
        assert_eq!(codec::encode(&v), v.0.to_vec());
        assert_eq!(codec::decode::<Six>(&v.0, 6), Ok(v));
        let json = serde_json::to_string(&v).expect("json");
        assert_eq!(json, "\"0xdeadbeef0001\"");
        assert_eq!(serde_json::from_str::<Six>(&json).expect("parse"), v);
        assert_eq!(v.to_string().parse::<Six>(), Ok(v));
    }

    #[test]
    fn hex_errors_name_the_problem() {
        assert_eq!(parse_hex::<2>("abcd"), Err(HexError::MissingPrefix));
        assert_eq!(
            parse_hex::<2>("0xabcdef"),
            Err(HexError::WrongLength {
                expected: 2,
                got: 3
            })
        );
        assert!(matches!(
            parse_hex::<2>("0xzzzz"),
            Err(HexError::Invalid(_))
        ));
        assert_eq!(parse_hex::<2>("0xABcd"), Ok([0xab, 0xcd]));
        assert!(serde_json::from_str::<Six>("\"0x00\"").is_err());
    }
}
