//! A typed, write-buffering view of state: what execution and genesis read and write through.
//!
//! Writes stay in memory until [`Ledger::into_changes`] hands them to the store as one change
//! set, so a block's effects reach disk in a single atomic batch or not at all.

use super::{keys, read, StateChanges, StateError, StateReader};
use crate::account::Account;
use crate::address::Address;
use crate::codec;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, HashMap};

pub struct Ledger<R> {
    base: R,
    /// Accounts read or written so far; the flag marks written ones. Only looked up: the
    /// written ones are sorted before they leave (`into_changes`), so the map's order never
    /// reaches the state.
    accounts: HashMap<Address, (Account, bool)>,
    /// Every other write (few per block: parameters, supply, payments, receipts).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<R: StateReader> Ledger<R> {
    pub fn new(base: R) -> Self {
        Ledger {
            base,
            accounts: HashMap::new(),
            writes: BTreeMap::new(),
        }
    }

    pub fn base(&self) -> &R {
        &self.base
    }

    pub fn account(&mut self, a: &Address) -> Result<Account, StateError> {
        if let Some((acct, _)) = self.accounts.get(a) {
            return Ok(*acct);
        }
        let acct = super::account(&self.base, a)?;
        self.accounts.insert(*a, (acct, false));
        Ok(acct)
    }

    /// Records accounts read ahead from the base (see `Executor::prefetch`); those already
    /// read or written stay as they are.
    pub fn add_read_accounts(&mut self, read: impl IntoIterator<Item = (Address, Account)>) {
        for (a, acct) in read {
            self.accounts.entry(a).or_insert((acct, false));
        }
    }

    pub fn reserve_accounts(&mut self, n: usize) {
        self.accounts.reserve(n);
    }

    pub fn set_account(&mut self, a: Address, acct: Account) {
        self.accounts.insert(a, (acct, true));
    }

    /// A typed entry, seeing this ledger's own writes first.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        match self.writes.get(key) {
            Some(Some(bytes)) => codec::decode(bytes, codec::MAX_DECODE_BYTES)
                .map(Some)
                .map_err(|e| StateError::Corrupt {
                    key: keys::display(key),
                    reason: e.to_string(),
                }),
            Some(None) => Ok(None),
            None => read(&self.base, key),
        }
    }

    pub fn put<T: Serialize + ?Sized>(&mut self, key: Vec<u8>, value: &T) {
        self.writes.insert(key, Some(codec::encode(value)));
    }

    /// Writes bytes that are already a canonical encoding.
    pub fn put_raw(&mut self, key: Vec<u8>, bytes: Vec<u8>) {
        self.writes.insert(key, Some(bytes));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Every write as one change set. An account back at its default (never used, or emptied)
    /// is deleted rather than stored, so state holds only live accounts.
    ///
    /// Accounts are sorted by address, which is their keys' order, and merged with the other
    /// writes in one pass. Account keys are the accounts' own: the ledger never `put`s one.
    pub fn into_changes(self) -> StateChanges {
        let mut written: Vec<(Address, Account)> = self
            .accounts
            .into_iter()
            .filter_map(|(addr, (acct, dirty))| dirty.then_some((addr, acct)))
            .collect();
        written.sort_unstable_by_key(|(addr, _)| *addr);
        let other: usize = self
            .writes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let mut changes = StateChanges::with_capacity(
            written.len() + self.writes.len(),
            written.len() * (keys::ACCOUNT_KEY_LEN + Account::ENCODED_LEN) + other,
        );
        let mut writes = self.writes.into_iter().peekable();
        for (addr, acct) in written {
            let key = keys::account_key(&addr);
            while let Some((k, v)) = writes.next_if(|(k, _)| k.as_slice() < key.as_slice()) {
                push(&mut changes, &k, v.as_deref());
            }
            let value = (!acct.is_empty()).then(|| acct.encode());
            push(&mut changes, &key, value.as_ref().map(|v| v.as_slice()));
        }
        for (k, v) in writes {
            push(&mut changes, &k, v.as_deref());
        }
        changes
    }
}

/// Both sources are sorted and distinct, so every key comes after the last.
fn push(changes: &mut StateChanges, key: &[u8], value: Option<&[u8]>) {
    changes
        .push(key, value)
        .expect("ledger writes are merged in key order");
}

impl<R: StateReader> StateReader for Ledger<R> {
    /// Raw reads through the ledger see its pending writes, accounts included.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(addr) = key
            .strip_prefix(b"acct/".as_slice())
            .and_then(|rest| <[u8; 20]>::try_from(rest).ok())
        {
            if let Some((acct, true)) = self.accounts.get(&Address(addr)) {
                return Ok((!acct.is_empty()).then(|| acct.encode().to_vec()));
            }
        }
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemState;

    #[test]
    fn reads_see_writes_and_changes_drop_empty_accounts() {
        let a = Address([1; 20]);
        let b = Address([2; 20]);
        let mut base = MemState::default();
        base.0.insert(
            keys::account(&b),
            codec::encode(&Account {
                balance: 5,
                nonce: 1,
                stake: 0,
            }),
        );
        let mut l = Ledger::new(&base);
        assert_eq!(l.account(&a).expect("read"), Account::default());
        l.set_account(
            a,
            Account {
                balance: 9,
                nonce: 0,
                stake: 0,
            },
        );
        l.set_account(b, Account::default());
        l.put(keys::SUPPLY.to_vec(), &14u64);
        assert_eq!(l.get::<u64>(keys::SUPPLY).expect("read"), Some(14));
        assert_eq!(crate::state::account(&l, &a).expect("read").balance, 9);
        let changes = l.into_changes();
        assert_eq!(changes.get(&keys::account(&b)), Some(None));
        assert!(changes.get(&keys::account(&a)).is_some_and(|v| v.is_some()));
    }
}
