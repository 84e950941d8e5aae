//! The funded devnet accounts: deterministic keys, so a demo or a bench (or a test) can sign for
//! account `i` without reading any file, and the same accounts exist on every devnet.
//!
//! The seeds are public (SHA-256 of a fixed string): these keys protect nothing and must never
//! hold value on a real chain. They are still written as 0600 key files, because the node's key
//! reader (`aitbc-node tx … --key`) refuses anything looser.

use aitbc_chain::{Address, Hash, SecretKey};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Accounts a new devnet funds unless `--accounts` says otherwise: enough senders for a bench
/// to stay clear of the 64-pending-nonces-per-sender mempool bound at 10,000 tx/s.
pub const DEFAULT_ACCOUNTS: u32 = 1_000;
/// Genesis balance of each devnet account: 1,000,000 AIT.
pub const ACCOUNT_BALANCE: u64 = 1_000_000 * aitbc_chain::params::AIT;
/// Folder of the account key files inside the devnet folder.
pub const ACCOUNTS_DIR: &str = "accounts";
/// Index of the accounts (number, address, key file) inside [`ACCOUNTS_DIR`].
pub const ACCOUNTS_INDEX: &str = "accounts.json";

/// The seed of devnet account `i`: SHA-256 of `"aitbc devnet account {i}"`.
pub fn account_seed(i: u32) -> [u8; 32] {
    Hash::of(format!("aitbc devnet account {i}").as_bytes()).0
}

/// The signing key of devnet account `i`.
pub fn account_key(i: u32) -> SecretKey {
    SecretKey::from_seed(account_seed(i))
}

/// The address of devnet account `i`.
pub fn account_address(i: u32) -> Address {
    Address::of(&account_key(i).public())
}

/// The key file of account `i` in the devnet folder `dir`.
pub fn account_key_path(dir: &Path, i: u32) -> PathBuf {
    dir.join(ACCOUNTS_DIR).join(format!("account{i}"))
}

#[derive(Serialize)]
struct IndexEntry {
    index: u32,
    address: String,
    key_file: String,
}

/// Writes the key files of accounts `0..count` (mode 0600, in a 0700 folder) and the index,
/// and returns their addresses in order. Never overwrites a key file.
pub fn write_accounts(dir: &Path, count: u32) -> Result<Vec<Address>> {
    let folder = dir.join(ACCOUNTS_DIR);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&folder)
        .with_context(|| format!("creating {}", folder.display()))?;
    let mut addresses = Vec::with_capacity(count as usize);
    let mut index = Vec::with_capacity(count as usize);
    for i in 0..count {
        let path = account_key_path(dir, i);
        aitbc_node::keys::write_seed_file(&path, &account_seed(i))?;
        let address = account_address(i);
        addresses.push(address);
        index.push(IndexEntry {
            index: i,
            address: address.to_string(),
            key_file: format!("account{i}"),
        });
    }
    let json = serde_json::to_string_pretty(&index)? + "\n";
    let path = folder.join(ACCOUNTS_INDEX);
    fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn accounts_are_deterministic_distinct_and_written_0600() {
        assert_eq!(account_seed(7), account_seed(7));
        assert_ne!(account_seed(0), account_seed(1));
        // Pinned, so a demo or bench written against these accounts keeps finding its funds.
        assert_eq!(
            account_seed(0),
            Hash::of(b"aitbc devnet account 0").0,
            "seed derivation changed"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs = write_accounts(dir.path(), 5).expect("write");
        assert_eq!(addrs.len(), 5);
        assert_eq!(addrs[3], account_address(3));
        for i in 0..5 {
            let path = account_key_path(dir.path(), i);
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let key = aitbc_node::keys::load_validator_key(&path).expect("loads as a key");
            assert_eq!(Address::of(&key.public()), addrs[i as usize]);
        }
        let index: serde_json::Value = serde_json::from_slice(
            &fs::read(dir.path().join(ACCOUNTS_DIR).join(ACCOUNTS_INDEX)).expect("index"),
        )
        .expect("json");
        assert_eq!(index[4]["address"], addrs[4].to_string());
        assert!(write_accounts(dir.path(), 5).is_err(), "overwrote");
    }
}
