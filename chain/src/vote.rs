//! Signed consensus votes (SPEC §5), defined here because `Evidence` transactions carry them.

use crate::address::Address;
use crate::crypto::{self, Domain, PublicKey, SecretKey, SigError, Signature, VerifyingKey};
use crate::hash::Hash;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    Prepare,
    Commit,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub height: u64,
    pub view: u64,
    pub phase: Phase,
    pub block_hash: Hash,
    pub validator: PublicKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub sig: Signature,
}

impl Vote {
    pub fn digest(&self, chain_id: &str) -> Hash {
        crypto::signing_digest(Domain::Vote, chain_id, self)
    }

    pub fn sign(self, chain_id: &str, key: &SecretKey) -> SignedVote {
        let sig = key.sign_digest(&self.digest(chain_id));
        SignedVote { vote: self, sig }
    }

    /// Same validator, height, view and phase, different block: the double-sign that slashes.
    pub fn conflicts_with(&self, other: &Vote) -> bool {
        self.validator == other.validator
            && self.height == other.height
            && self.view == other.view
            && self.phase == other.phase
            && self.block_hash != other.block_hash
    }
}

impl SignedVote {
    pub fn verify(&self, chain_id: &str) -> Result<(), SigError> {
        let key = VerifyingKey::new(&self.vote.validator)?;
        crypto::verify(&key, &self.vote.digest(chain_id), &self.sig)
    }

    pub fn validator_address(&self) -> Address {
        Address::of(&self.vote.validator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(hash: &[u8], key: &SecretKey) -> Vote {
        Vote {
            height: 5,
            view: 1,
            phase: Phase::Prepare,
            block_hash: Hash::of(hash),
            validator: key.public(),
        }
    }

    #[test]
    fn conflict_needs_same_slot_and_different_block() {
        let k = SecretKey::from_seed([1; 32]);
        let a = vote(b"a", &k);
        assert!(a.conflicts_with(&vote(b"b", &k)));
        assert!(!a.conflicts_with(&a.clone()));
        assert!(!a.conflicts_with(&Vote {
            view: 2,
            ..vote(b"b", &k)
        }));
        assert!(!a.conflicts_with(&Vote {
            height: 6,
            ..vote(b"b", &k)
        }));
        assert!(!a.conflicts_with(&Vote {
            phase: Phase::Commit,
            ..vote(b"b", &k)
        }));
        let other = SecretKey::from_seed([2; 32]);
        assert!(!a.conflicts_with(&vote(b"b", &other)));
    }

    #[test]
    fn signatures_bind_chain_and_content() {
        let k = SecretKey::from_seed([1; 32]);
        let sv = vote(b"a", &k).sign("c", &k);
        assert_eq!(sv.verify("c"), Ok(()));
        assert!(sv.verify("d").is_err());
        let mut forged = sv.clone();
        forged.vote.block_hash = Hash::of(b"b");
        assert!(forged.verify("c").is_err());
    }
}
