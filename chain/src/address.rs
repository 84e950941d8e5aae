//! Account addresses: `bech32(hrp = "ait", SHA-256(pubkey)[0..20])` (SPEC §2).

use crate::crypto::PublicKey;
use crate::hash::Hash;
use bech32::{Bech32, Hrp};
use serde::de::{self, Deserializer, Visitor};
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

const HRP: Hrp = Hrp::parse_unchecked("ait");

/// A 20-byte account address. Binary form: the 20 raw bytes; text form: `ait1…`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 20]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("invalid bech32 address: {0}")]
    Bech32(String),
    #[error("address prefix must be \"ait\", got {0:?}")]
    WrongPrefix(String),
    #[error("address must hold 20 bytes, got {0}")]
    WrongLength(usize),
}

impl Address {
    pub fn of(pubkey: &PublicKey) -> Address {
        let h = Hash::of(pubkey.as_bytes());
        let mut a = [0u8; 20];
        a.copy_from_slice(&h.0[..20]);
        Address(a)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 20 bytes always fit bech32's length limit, so encoding cannot fail.
        let s = bech32::encode::<Bech32>(HRP, &self.0).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hrp, data) = bech32::decode(s).map_err(|e| AddressError::Bech32(e.to_string()))?;
        if hrp != HRP {
            return Err(AddressError::WrongPrefix(hrp.to_string()));
        }
        let bytes: [u8; 20] = data
            .as_slice()
            .try_into()
            .map_err(|_| AddressError::WrongLength(data.len()))?;
        Ok(Address(bytes))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            crate::bytes::serialize_fixed(&self.0, s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            struct V;
            impl Visitor<'_> for V {
                type Value = Address;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an ait1… address")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Address, E> {
                    v.parse().map_err(E::custom)
                }
            }
            d.deserialize_str(V)
        } else {
            crate::bytes::deserialize_fixed::<D, 20>(d).map(Address)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn round_trips_text_and_binary() {
        let a = Address::of(&SecretKey::from_seed([7; 32]).public());
        let s = a.to_string();
        assert!(s.starts_with("ait1"), "{s}");
        assert_eq!(s.parse::<Address>(), Ok(a));
        assert_eq!(crate::codec::encode(&a), a.0.to_vec());
        let json = serde_json::to_string(&a).expect("json");
        assert_eq!(serde_json::from_str::<Address>(&json).expect("parse"), a);
    }

    #[test]
    fn rejects_bad_addresses() {
        let a = Address([1; 20]).to_string();
        let mut flipped = a.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'q' { b'p' } else { b'q' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert!(matches!(
            flipped.parse::<Address>(),
            Err(AddressError::Bech32(_))
        ));
        let other = bech32::encode::<Bech32>(Hrp::parse_unchecked("btc"), &[1; 20]).expect("enc");
        assert_eq!(
            other.parse::<Address>(),
            Err(AddressError::WrongPrefix("btc".into()))
        );
        let short = bech32::encode::<Bech32>(HRP, &[1; 19]).expect("enc");
        assert_eq!(short.parse::<Address>(), Err(AddressError::WrongLength(19)));
    }
}
