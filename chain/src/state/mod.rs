//! Ledger state as a flat map of keys to canonical values, authenticated by the bucketed Merkle
//! commitment of SPEC §3.
//!
//! Execution reads through [`StateReader`] and produces [`StateChanges`]; the store turns those
//! into new bucket contents and a new `state_root` in one atomic write.

pub mod changes;
pub mod commitment;
pub mod keys;
pub mod ledger;
pub mod pool;
pub mod proof;

pub use changes::StateChanges;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("storage error: {0}")]
    Storage(String),
    #[error("corrupt state entry {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Read access to committed state (the store, or an overlay on top of it).
pub trait StateReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

impl<T: StateReader + ?Sized> StateReader for &T {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(key)
    }
}

/// An in-memory state, for genesis construction and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl MemState {
    pub fn apply(&mut self, changes: &StateChanges) {
        for (k, v) in changes.iter() {
            match v {
                Some(v) => self.0.insert(k.to_vec(), v.to_vec()),
                None => self.0.remove(k),
            };
        }
    }
}

impl StateReader for MemState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get(key).cloned())
    }
}

/// Reads and decodes a typed entry; absent entries are `None`, undecodable ones are corruption.
pub fn read<T: serde::de::DeserializeOwned>(
    reader: &(impl StateReader + ?Sized),
    key: &[u8],
) -> Result<Option<T>, StateError> {
    match reader.get(key)? {
        None => Ok(None),
        Some(bytes) => crate::codec::decode(&bytes, crate::codec::MAX_DECODE_BYTES)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                key: keys::display(key),
                reason: e.to_string(),
            }),
    }
}

/// The account at `address` (a fresh, empty account if it has never been touched).
pub fn account(
    reader: &(impl StateReader + ?Sized),
    address: &crate::address::Address,
) -> Result<crate::account::Account, StateError> {
    Ok(read(reader, &keys::account_key(address))?.unwrap_or_default())
}
