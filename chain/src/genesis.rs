//! Genesis: the JSON file that fixes a chain's first state and, through its hash, the chain.
//!
//! `genesis_time` is milliseconds since the Unix epoch. The genesis hash is SHA-256 of the
//! canonical encoding of the parsed file, so any change to any field makes another chain.
//! Height 0 is a header derived from the file (no transactions, no certificate); block 1 is the
//! first block validators vote on.

use crate::account::Account;
use crate::address::Address;
use crate::block::Header;
use crate::codec;
use crate::crypto::{PublicKey, SecretKey, VerifyingKey};
use crate::hash::Hash;
use crate::params::{ParamError, Params};
use crate::state::ledger::Ledger;
use crate::state::{keys, MemState, StateChanges, StateError};
use crate::validator_set::{Candidate, ValidatorSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Genesis files larger than this are refused before parsing.
pub const MAX_GENESIS_BYTES: usize = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub pubkey: PublicKey,
    /// Bonded at genesis; becomes the validator's voting power.
    pub stake: u64,
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    pub genesis_time: u64,
    #[serde(default)]
    pub params: Params,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    pub validators: Vec<GenesisValidator>,
    /// Accounts allowed to send `Authorize` and `ParamUpdate` (the PoA half).
    #[serde(default)]
    pub authorities: Vec<Address>,
    /// Coordinators whose attestations can back a receipt claim.
    #[serde(default)]
    pub coordinators: Vec<Address>,
    #[serde(default)]
    pub faucet: Option<Address>,
    pub treasury: Address,
}

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis file is {0} bytes, over the {MAX_GENESIS_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("genesis JSON: {0}")]
    Json(String),
    #[error("genesis chain_id {0:?} must be 1 to 64 characters of a-z, 0-9, '-', '_' or '.'")]
    BadChainId(String),
    #[error("genesis params: {0}")]
    Params(#[from] ParamError),
    #[error("genesis has no validators")]
    NoValidators,
    #[error("genesis has {count} validators, more than params.max_validators = {max}")]
    TooManyValidators { count: usize, max: u64 },
    #[error("genesis validator {0} is listed twice")]
    DuplicateValidator(PublicKey),
    #[error("genesis validator {0} has an invalid public key")]
    BadValidatorKey(PublicKey),
    #[error("genesis validator {pubkey} stakes {stake}, below params.min_stake = {min}")]
    StakeTooLow {
        pubkey: PublicKey,
        stake: u64,
        min: u64,
    },
    #[error("genesis {what} lists {address} twice")]
    Duplicate {
        what: &'static str,
        address: Address,
    },
    #[error("genesis balances and stakes add up to more than 2^64 - 1 units")]
    SupplyOverflow,
    #[error("genesis state: {0}")]
    State(#[from] StateError),
}

fn valid_chain_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

fn unique(
    what: &'static str,
    addrs: impl IntoIterator<Item = Address>,
) -> Result<BTreeSet<Address>, GenesisError> {
    let mut set = BTreeSet::new();
    for a in addrs {
        if !set.insert(a) {
            return Err(GenesisError::Duplicate { what, address: a });
        }
    }
    Ok(set)
}

impl Genesis {
    /// Parses and validates a genesis file.
    pub fn from_json(bytes: &[u8]) -> Result<Genesis, GenesisError> {
        if bytes.len() > MAX_GENESIS_BYTES {
            return Err(GenesisError::TooLarge(bytes.len()));
        }
        let g: Genesis =
            serde_json::from_slice(bytes).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), GenesisError> {
        if !valid_chain_id(&self.chain_id) {
            return Err(GenesisError::BadChainId(self.chain_id.clone()));
        }
        self.params.validate()?;
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if self.validators.len() as u64 > self.params.max_validators {
            return Err(GenesisError::TooManyValidators {
                count: self.validators.len(),
                max: self.params.max_validators,
            });
        }
        let mut keys = BTreeSet::new();
        for v in &self.validators {
            if !keys.insert(v.pubkey) {
                return Err(GenesisError::DuplicateValidator(v.pubkey));
            }
            VerifyingKey::new(&v.pubkey).map_err(|_| GenesisError::BadValidatorKey(v.pubkey))?;
            if v.stake < self.params.min_stake {
                return Err(GenesisError::StakeTooLow {
                    pubkey: v.pubkey,
                    stake: v.stake,
                    min: self.params.min_stake,
                });
            }
        }
        unique("accounts", self.accounts.iter().map(|a| a.address))?;
        unique("authorities", self.authorities.iter().copied())?;
        unique("coordinators", self.coordinators.iter().copied())?;
        self.supply()?;
        Ok(())
    }

    fn supply(&self) -> Result<u64, GenesisError> {
        self.accounts
            .iter()
            .map(|a| a.balance)
            .chain(self.validators.iter().map(|v| v.stake))
            .try_fold(0u64, |acc, x| acc.checked_add(x))
            .ok_or(GenesisError::SupplyOverflow)
    }

    /// The genesis hash, which pins the chain.
    pub fn hash(&self) -> Hash {
        Hash::of_encoded(self)
    }

    pub fn validator_set(&self) -> ValidatorSet {
        let candidates = self
            .validators
            .iter()
            .map(|v| Candidate {
                address: Address::of(&v.pubkey),
                pubkey: v.pubkey,
                stake: v.stake,
            })
            .collect();
        ValidatorSet::select(
            candidates,
            self.params.min_stake,
            self.params.max_validators,
        )
    }

    /// Every state entry at height 0.
    pub fn initial_state(&self) -> Result<StateChanges, GenesisError> {
        self.validate()?;
        let empty = MemState::default();
        let mut l = Ledger::new(&empty);
        for a in &self.accounts {
            let mut acct = l.account(&a.address)?;
            acct.balance = a.balance;
            l.set_account(a.address, acct);
        }
        let mut authorized = BTreeSet::new();
        for v in &self.validators {
            let addr = Address::of(&v.pubkey);
            let acct = l.account(&addr)?;
            l.set_account(
                addr,
                Account {
                    stake: v.stake,
                    ..acct
                },
            );
            l.put(keys::validator_key(&addr), &v.pubkey);
            authorized.insert(addr);
        }
        l.put(keys::AUTHORIZED.to_vec(), &authorized);
        l.put(keys::ACTIVE_SET.to_vec(), &self.validator_set());
        let authorities: BTreeSet<Address> = self.authorities.iter().copied().collect();
        let coordinators: BTreeSet<Address> = self.coordinators.iter().copied().collect();
        l.put(keys::AUTHORITIES.to_vec(), &authorities);
        l.put(keys::COORDINATORS.to_vec(), &coordinators);
        l.put(keys::SUPPLY.to_vec(), &self.supply()?);
        l.put(keys::TREASURY.to_vec(), &self.treasury);
        l.put(keys::FAUCET.to_vec(), &self.faucet);
        for (name, value) in self.params.entries() {
            l.put(keys::param(name), &value);
        }
        Ok(l.into_changes())
    }

    /// The height-0 header, given the root of [`Genesis::initial_state`].
    pub fn header(&self, state_root: Hash) -> Header {
        let set_hash = self.validator_set().hash();
        Header {
            chain_id: self.chain_id.clone(),
            height: 0,
            view: 0,
            timestamp_ms: self.genesis_time,
            parent_hash: self.hash(),
            proposer: Address([0; 20]),
            tx_root: Hash::ZERO,
            state_root,
            validators_hash: set_hash,
            next_validators_hash: set_hash,
            last_commit_hash: Hash::ZERO,
            evidence_hash: Hash::ZERO,
        }
    }

    /// A development genesis: each validator stakes `min_stake`, the first validator is the only
    /// authority, the treasury is a keyless address, and `accounts` get the given balances.
    pub fn dev(chain_id: &str, validators: &[&SecretKey], accounts: &[(Address, u64)]) -> Genesis {
        let params = Params::default();
        Genesis {
            chain_id: chain_id.to_string(),
            genesis_time: 0,
            validators: validators
                .iter()
                .enumerate()
                .map(|(i, k)| GenesisValidator {
                    pubkey: k.public(),
                    stake: params.min_stake,
                    name: format!("validator-{i}"),
                })
                .collect(),
            authorities: validators
                .iter()
                .take(1)
                .map(|k| Address::of(&k.public()))
                .collect(),
            coordinators: vec![],
            faucet: None,
            treasury: Address(
                Hash::of(b"aitbc treasury").0[..20]
                    .try_into()
                    .unwrap_or([0; 20]),
            ),
            accounts: accounts
                .iter()
                .map(|(address, balance)| GenesisAccount {
                    address: *address,
                    balance: *balance,
                })
                .collect(),
            params,
        }
    }
}

/// Canonical bytes of a genesis, for storing beside the chain.
pub fn encode(genesis: &Genesis) -> Vec<u8> {
    codec::encode(genesis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{read, MemState};

    fn keys_n(n: u8) -> Vec<SecretKey> {
        (1..=n).map(|i| SecretKey::from_seed([i; 32])).collect()
    }

    fn dev() -> Genesis {
        let ks = keys_n(4);
        let refs: Vec<&SecretKey> = ks.iter().collect();
        Genesis::dev("ait-test", &refs, &[(Address([7; 20]), 500)])
    }

    #[test]
    fn json_round_trip_keeps_hash() {
        let g = dev();
        let back = Genesis::from_json(g.to_json().as_bytes()).expect("valid");
        assert_eq!(back, g);
        assert_eq!(back.hash(), g.hash());
        let mut other = g.clone();
        other.genesis_time = 1;
        assert_ne!(other.hash(), g.hash());
    }

    #[test]
    fn initial_state_holds_accounts_stakes_set_and_supply() {
        let g = dev();
        let mut s = MemState::default();
        s.apply(&g.initial_state().expect("state"));
        assert_eq!(
            crate::state::account(&s, &Address([7; 20]))
                .expect("acct")
                .balance,
            500
        );
        let v0 = Address::of(&g.validators[0].pubkey);
        assert_eq!(
            crate::state::account(&s, &v0).expect("acct").stake,
            g.params.min_stake
        );
        let supply: u64 = read(&s, keys::SUPPLY).expect("read").expect("present");
        assert_eq!(supply, 500 + 4 * g.params.min_stake);
        let set: ValidatorSet = read(&s, keys::ACTIVE_SET).expect("read").expect("present");
        assert_eq!(set.len(), 4);
        assert_eq!(g.header(Hash::ZERO).next_validators_hash, set.hash());
        let fee: u64 = read(&s, &keys::param("base_fee"))
            .expect("read")
            .expect("present");
        assert_eq!(fee, g.params.base_fee);
    }

    #[test]
    fn rejects_each_invalid_genesis_with_a_named_reason() {
        type Mutation = Box<dyn Fn(&mut Genesis)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|g| g.chain_id = "Bad Id".into()), "chain_id"),
            (Box::new(|g| g.chain_id = String::new()), "chain_id"),
            (Box::new(|g| g.validators.clear()), "no validators"),
            (
                Box::new(|g| g.validators[1].stake = 1),
                "below params.min_stake",
            ),
            (
                Box::new(|g| g.validators[1].pubkey = g.validators[0].pubkey),
                "twice",
            ),
            (
                Box::new(|g| g.validators[1].pubkey = PublicKey([0; 32])),
                "invalid public key",
            ),
            (
                Box::new(|g| g.params.max_validators = 2),
                "more than params.max_validators",
            ),
            (Box::new(|g| g.params.slash_bps = 20_000), "slash_bps"),
            (
                Box::new(|g| g.accounts.push(g.accounts[0].clone())),
                "accounts lists",
            ),
            (
                Box::new(|g| g.authorities.push(g.authorities[0])),
                "authorities lists",
            ),
            (Box::new(|g| g.accounts[0].balance = u64::MAX), "2^64"),
        ];
        for (mutate, needle) in cases {
            let mut g = dev();
            mutate(&mut g);
            let err = g.validate().expect_err(needle).to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            assert!(Genesis::from_json(g.to_json().as_bytes()).is_err());
        }
    }

    #[test]
    fn rejects_malformed_json_and_unknown_fields() {
        assert!(matches!(
            Genesis::from_json(b"{"),
            Err(GenesisError::Json(_))
        ));
        let mut v: serde_json::Value = serde_json::from_str(&dev().to_json()).expect("json");
        v["surprise"] = serde_json::json!(1);
        let err = Genesis::from_json(v.to_string().as_bytes()).expect_err("unknown field");
        assert!(err.to_string().contains("surprise"), "{err}");
        let big = vec![b' '; MAX_GENESIS_BYTES + 1];
        assert!(matches!(
            Genesis::from_json(&big),
            Err(GenesisError::TooLarge(_))
        ));
    }
}
