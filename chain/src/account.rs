//! Account state (SPEC §3).

use serde::{Deserialize, Serialize};

/// Balances in base units (1 AIT = 10^6). A new account has nonce 0; its next tx carries
/// `nonce + 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
    pub stake: u64,
}

impl Account {
    /// Length of the canonical encoding: three fixed-width `u64`s.
    pub const ENCODED_LEN: usize = 24;

    pub fn is_empty(&self) -> bool {
        *self == Account::default()
    }

    /// The canonical encoding (`codec::encode`'s bytes: the fields as `u64` LE, in order),
    /// without allocating: a block encodes every account it touches.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0; Self::ENCODED_LEN];
        out[..8].copy_from_slice(&self.balance.to_le_bytes());
        out[8..16].copy_from_slice(&self.nonce.to_le_bytes());
        out[16..].copy_from_slice(&self.stake.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_is_the_canonical_encoding(balance: u64, nonce: u64, stake: u64) {
            let a = Account { balance, nonce, stake };
            let bytes = a.encode();
            prop_assert_eq!(bytes.to_vec(), crate::codec::encode(&a));
        }
    }
}
