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
    pub fn is_empty(&self) -> bool {
        *self == Account::default()
    }
}
