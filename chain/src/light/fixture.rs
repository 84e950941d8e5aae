//! Certified header chains signed by known keys, for tests and benchmarks of light peers.
//! The headers link and are certified exactly as a real chain's are; their tx and state roots
//! are placeholders, since header verification never looks inside them.

use super::{CertifiedHeader, Trusted};
use crate::block::{CommitCertificate, CommitSig, Header};
use crate::crypto::SecretKey;
use crate::hash::Hash;
use crate::validator_set::{Candidate, ValidatorSet};
use crate::Address;

/// The set of `keys`, each with power `1000`.
pub fn set_of(keys: &[SecretKey]) -> ValidatorSet {
    let candidates = keys
        .iter()
        .map(|k| Candidate {
            address: Address::of(&k.public()),
            pubkey: k.public(),
            stake: 1000,
        })
        .collect();
    ValidatorSet::select(candidates, 1, u64::MAX)
}

/// `n` keys from seeds `first..first + n`.
pub fn keys(first: u8, n: u8) -> Vec<SecretKey> {
    (first..first + n)
        .map(|i| SecretKey::from_seed([i; 32]))
        .collect()
}

/// A genesis-like trusted start (height 0) for the set of `keys`.
pub fn genesis(chain_id: &str, keys: &[SecretKey]) -> Trusted {
    let set = set_of(keys);
    Trusted {
        header: Header {
            chain_id: chain_id.into(),
            height: 0,
            view: 0,
            timestamp_ms: 1_000,
            parent_hash: Hash::ZERO,
            proposer: Address([0; 20]),
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            validators_hash: set.hash(),
            next_validators_hash: set.hash(),
            last_commit_hash: Hash::ZERO,
            evidence_hash: Hash::ZERO,
        },
        next_set: set,
    }
}

/// A certificate for `header` signed by every key in `signers`.
pub fn certify(chain_id: &str, header: &Header, signers: &[SecretKey]) -> CommitCertificate {
    let mut c = CommitCertificate {
        height: header.height,
        view: header.view,
        block_hash: header.hash(),
        signatures: Vec::with_capacity(signers.len()),
    };
    for k in signers {
        let sig = c.vote_for(k.public()).sign(chain_id, k).sig;
        c.signatures.push(CommitSig {
            validator: k.public(),
            sig,
        });
    }
    c
}

/// `count` headers on top of `start`, signed by `keys` (the keys of `start.next_set`). At
/// each `(height, new_keys)` in `changes` the header announces the set of `new_keys`, which
/// signs from the following height on.
pub fn headers(
    start: &Trusted,
    keys: &[SecretKey],
    count: u64,
    changes: &[(u64, Vec<SecretKey>)],
) -> Vec<CertifiedHeader> {
    let chain_id = start.header.chain_id.clone();
    let mut signers: &[SecretKey] = keys;
    let mut set = start.next_set.clone();
    let mut parent = start.header.clone();
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let height = parent.height + 1;
        let change = changes.iter().find(|(h, _)| *h == height);
        let next = change.map(|(_, ks)| set_of(ks));
        let header = Header {
            chain_id: chain_id.clone(),
            height,
            view: 0,
            timestamp_ms: parent.timestamp_ms + 1_000,
            parent_hash: parent.hash(),
            proposer: set.validators()[0].address,
            tx_root: Hash::of(&height.to_le_bytes()),
            state_root: Hash::of(&height.to_be_bytes()),
            validators_hash: set.hash(),
            next_validators_hash: next.as_ref().unwrap_or(&set).hash(),
            last_commit_hash: Hash::ZERO,
            evidence_hash: Hash::ZERO,
        };
        let commit = certify(&chain_id, &header, signers);
        out.push(CertifiedHeader {
            header: header.clone(),
            commit,
            next_validators: next,
        });
        if let Some((_, ks)) = change {
            signers = ks;
            set = set_of(ks);
        }
        parent = header;
    }
    out
}
