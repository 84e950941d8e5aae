//! The state key space. Every entry the state root authenticates has one of these keys.
//!
//! | key | value |
//! |---|---|
//! | `acct/<20-byte address>` | [`crate::account::Account`] |
//! | `receipt/<32-byte receipt id>` | [`crate::execution::ReceiptRecord`] |
//! | `payment/<32-byte tx hash>` | [`crate::execution::Payment`]: a transfer to a coordinator |
//! | `param/<name>` | `u64` |
//! | `evidence/<32-byte hash of the offence>` | height it was punished at |
//! | `unbond/<8-byte big-endian height>` | `Vec<(Address, u64)>` released at that height |
//! | `validator/<20-byte address>` | the account's public key, learnt from its `Stake` tx |
//! | `validators/authorized` | `BTreeSet<Address>`: accounts the authorities allow to validate |
//! | `validators/active` | [`crate::validator_set::ValidatorSet`] voting on the next height |
//! | `meta/authorities`, `meta/coordinators` | `BTreeSet<Address>` |
//! | `meta/supply` | `u64` total supply |
//! | `meta/treasury` | `Address`; `meta/faucet`: `Option<Address>` |

use crate::address::Address;
use crate::hash::Hash;

fn with(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

pub const ACCOUNT_KEY_LEN: usize = 5 + 20;

pub fn account(a: &Address) -> Vec<u8> {
    account_key(a).to_vec()
}

/// [`account`] without the allocation: execution reads and writes one or two per transfer.
pub fn account_key(a: &Address) -> [u8; ACCOUNT_KEY_LEN] {
    let mut k = [0; ACCOUNT_KEY_LEN];
    k[..5].copy_from_slice(b"acct/");
    k[5..].copy_from_slice(&a.0);
    k
}
pub fn receipt(id: &Hash) -> Vec<u8> {
    with(b"receipt/", &id.0)
}
pub fn payment(tx: &Hash) -> Vec<u8> {
    with(b"payment/", &tx.0)
}
pub fn param(name: &str) -> Vec<u8> {
    with(b"param/", name.as_bytes())
}
pub fn evidence(offence: &Hash) -> Vec<u8> {
    with(b"evidence/", &offence.0)
}
pub fn unbonding(height: u64) -> Vec<u8> {
    with(b"unbond/", &height.to_be_bytes())
}

pub fn validator_key(a: &Address) -> Vec<u8> {
    with(b"validator/", &a.0)
}

pub const AUTHORIZED: &[u8] = b"validators/authorized";
pub const ACTIVE_SET: &[u8] = b"validators/active";
pub const AUTHORITIES: &[u8] = b"meta/authorities";
pub const COORDINATORS: &[u8] = b"meta/coordinators";
pub const SUPPLY: &[u8] = b"meta/supply";
pub const TREASURY: &[u8] = b"meta/treasury";
pub const FAUCET: &[u8] = b"meta/faucet";

/// Human-readable rendering of a key for error messages and logs.
pub fn display(key: &[u8]) -> String {
    match key.iter().position(|b| *b == b'/') {
        Some(i) if key[..i].iter().all(u8::is_ascii_alphabetic) => {
            let rest = &key[i + 1..];
            if rest.iter().all(|b| b.is_ascii_graphic()) {
                String::from_utf8_lossy(key).into_owned()
            } else {
                format!(
                    "{}/0x{}",
                    String::from_utf8_lossy(&key[..i]),
                    hex::encode(rest)
                )
            }
        }
        _ => format!("0x{}", hex::encode(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_displayable() {
        let a = account(&Address([1; 20]));
        assert_eq!(a.len(), 5 + 20);
        assert_eq!(display(&a), format!("acct/0x{}", "01".repeat(20)));
        assert_eq!(display(&param("base_fee")), "param/base_fee");
        assert_ne!(receipt(&Hash::ZERO), payment(&Hash::ZERO));
        assert!(
            unbonding(1) < unbonding(256),
            "big-endian heights sort by height"
        );
    }
}
