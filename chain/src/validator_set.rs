//! The validator set: who votes, with what power (SPEC §5).

use crate::address::Address;
use crate::crypto::PublicKey;
use crate::hash::Hash;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    pub address: Address,
    pub pubkey: PublicKey,
    pub power: u64,
}

/// Validators ordered by power (descending), then address: the one canonical order, so the
/// set's hash is a function of its members only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

/// A candidate for the set: an authorized account whose key is known, with its stake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub address: Address,
    pub pubkey: PublicKey,
    pub stake: u64,
}

impl ValidatorSet {
    /// The top `max_validators` candidates by stake with `stake >= min_stake`; power = stake.
    pub fn select(
        mut candidates: Vec<Candidate>,
        min_stake: u64,
        max_validators: u64,
    ) -> ValidatorSet {
        candidates.retain(|c| c.stake >= min_stake && c.stake > 0);
        candidates.sort_by(|a, b| b.stake.cmp(&a.stake).then(a.address.cmp(&b.address)));
        candidates.truncate(usize::try_from(max_validators).unwrap_or(usize::MAX));
        ValidatorSet {
            validators: candidates
                .into_iter()
                .map(|c| Validator {
                    address: c.address,
                    pubkey: c.pubkey,
                    power: c.stake,
                })
                .collect(),
        }
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    /// Sum of all power. Stakes are bounded by total supply (a u64), so this cannot overflow.
    pub fn total_power(&self) -> u64 {
        self.validators.iter().map(|v| v.power).sum()
    }

    /// True iff `power` is more than 2/3 of the total (the PBFT quorum).
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power()) * 2
    }

    pub fn get(&self, pubkey: &PublicKey) -> Option<&Validator> {
        self.validators.iter().find(|v| &v.pubkey == pubkey)
    }

    pub fn index_of(&self, pubkey: &PublicKey) -> Option<usize> {
        self.validators.iter().position(|v| &v.pubkey == pubkey)
    }

    pub fn hash(&self) -> Hash {
        Hash::of_encoded(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn cand(seed: u8, stake: u64) -> Candidate {
        let pk = SecretKey::from_seed([seed; 32]).public();
        Candidate {
            address: Address::of(&pk),
            pubkey: pk,
            stake,
        }
    }

    #[test]
    fn selects_top_by_stake_above_minimum() {
        let set = ValidatorSet::select(
            vec![
                cand(1, 50),
                cand(2, 300),
                cand(3, 200),
                cand(4, 5),
                cand(5, 300),
            ],
            10,
            3,
        );
        let powers: Vec<u64> = set.validators().iter().map(|v| v.power).collect();
        assert_eq!(powers, vec![300, 300, 200]);
        assert!(
            set.validators()[0].address < set.validators()[1].address,
            "ties by address"
        );
        assert_eq!(set.total_power(), 800);
    }

    #[test]
    fn quorum_is_strictly_more_than_two_thirds() {
        let set = ValidatorSet::select((1..=4).map(|i| cand(i, 10)).collect(), 1, 10);
        assert!(!set.is_quorum(20));
        assert!(!set.is_quorum(26));
        assert!(set.is_quorum(27));
        assert!(set.is_quorum(30));
    }

    #[test]
    fn hash_depends_on_members_not_input_order() {
        let a = ValidatorSet::select(vec![cand(1, 10), cand(2, 20)], 1, 10);
        let b = ValidatorSet::select(vec![cand(2, 20), cand(1, 10)], 1, 10);
        let c = ValidatorSet::select(vec![cand(2, 20), cand(1, 11)], 1, 10);
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
    }
}
