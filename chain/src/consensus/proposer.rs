//! Who proposes at (height, view): weighted round-robin by power (SPEC §5).
//!
//! Tendermint's proposer priority (every step each validator gains its power, the highest is
//! chosen and pays the total) gives each validator slots in proportion to its power, spread
//! evenly. Run over raw stakes its cycle can be as long as the total stake, and Tendermint
//! carries the priorities from block to block as state. Here the powers are first scaled to
//! at most [`RESOLUTION`] units (every validator keeps at least one), one whole cycle of the
//! priority algorithm is computed once per validator set, and slot `height + view` of that cycle
//! proposes. The proposer is then a pure function of the set, the height and the view, as the
//! spec asks, and every view of a height moves to the next slot, so no fixed leader can stall
//! the chain.

use crate::validator_set::ValidatorSet;

/// Scaled powers sum to at most about this; shares are exact to 1/RESOLUTION of the total.
pub const RESOLUTION: u64 = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposerSchedule {
    /// Validator indices, one per slot of the cycle.
    slots: Vec<u16>,
}

impl ProposerSchedule {
    /// The cycle for `set`. An empty set yields an empty schedule (no one proposes).
    pub fn new(set: &ValidatorSet) -> ProposerSchedule {
        let total = u128::from(set.total_power());
        if total == 0 {
            return ProposerSchedule { slots: Vec::new() };
        }
        // Exact shares when the reduced powers are small enough, scaled ones otherwise.
        let powers: Vec<u64> = set.validators().iter().map(|v| v.power).collect();
        let g = powers.iter().copied().fold(0, gcd).max(1);
        let mut weights: Vec<u64> = powers.iter().map(|p| p / g).collect();
        if weights.iter().sum::<u64>() > RESOLUTION {
            weights = powers
                .iter()
                .map(|&p| {
                    let scaled = u128::from(p) * u128::from(RESOLUTION) / total;
                    u64::try_from(scaled).unwrap_or(RESOLUTION).max(1)
                })
                .collect();
            let g = weights.iter().copied().fold(0, gcd).max(1);
            for w in &mut weights {
                *w /= g;
            }
        }
        let cycle: u64 = weights.iter().sum();
        let cycle_i = i128::from(cycle);
        let mut priority = vec![0i128; weights.len()];
        let mut slots = Vec::with_capacity(usize::try_from(cycle).unwrap_or(0));
        for _ in 0..cycle {
            for (p, w) in priority.iter_mut().zip(&weights) {
                *p += i128::from(*w);
            }
            // Highest priority wins; ties go to the lower index (the set's canonical order).
            let mut best = 0;
            for i in 1..priority.len() {
                if priority[i] > priority[best] {
                    best = i;
                }
            }
            priority[best] -= cycle_i;
            slots.push(u16::try_from(best).unwrap_or(u16::MAX));
        }
        ProposerSchedule { slots }
    }

    /// Index into the set of the proposer for (`height`, `view`); `None` for an empty set.
    pub fn proposer(&self, height: u64, view: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = (u128::from(height) + u128::from(view)) % self.slots.len() as u128;
        Some(usize::from(self.slots[slot as usize]))
    }

    pub fn cycle_len(&self) -> usize {
        self.slots.len()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::crypto::SecretKey;
    use crate::validator_set::Candidate;
    use proptest::prelude::*;

    fn set(powers: &[u64]) -> ValidatorSet {
        let cands = powers
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let pk = SecretKey::from_seed([i as u8 + 1; 32]).public();
                Candidate {
                    address: Address::of(&pk),
                    pubkey: pk,
                    stake: p,
                }
            })
            .collect();
        ValidatorSet::select(cands, 1, 100)
    }

    #[test]
    fn equal_powers_rotate_in_set_order() {
        let s = ProposerSchedule::new(&set(&[7, 7, 7, 7]));
        assert_eq!(s.cycle_len(), 4);
        let seq: Vec<usize> = (0..8).filter_map(|h| s.proposer(h, 0)).collect();
        assert_eq!(seq, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        // The next view of a height is the next slot.
        assert_eq!(s.proposer(5, 1), s.proposer(6, 0));
    }

    #[test]
    fn slots_follow_power_and_spread_evenly() {
        let st = set(&[300, 100, 100]);
        let s = ProposerSchedule::new(&st);
        assert_eq!(s.cycle_len(), 5);
        let seq: Vec<usize> = (0..5).filter_map(|h| s.proposer(h, 0)).collect();
        assert_eq!(seq.iter().filter(|&&i| i == 0).count(), 3);
        // The heavy validator never proposes three times in a row within a cycle.
        assert!(seq.windows(3).all(|w| !w.iter().all(|&i| i == 0)));
    }

    #[test]
    fn empty_set_has_no_proposer() {
        assert_eq!(ProposerSchedule::new(&set(&[])).proposer(1, 0), None);
    }

    proptest! {
        #[test]
        fn every_validator_proposes_in_proportion(powers in prop::collection::vec(1u64..1_000_000_000_000, 1..20)) {
            let st = set(&powers);
            let s = ProposerSchedule::new(&st);
            let n = s.cycle_len();
            prop_assert!(n as u64 <= RESOLUTION + st.len() as u64);
            let mut counts = vec![0u64; st.len()];
            for h in 0..n as u64 {
                counts[s.proposer(h, 0).unwrap()] += 1;
            }
            let total = st.total_power() as f64;
            for (v, c) in st.validators().iter().zip(&counts) {
                prop_assert!(*c >= 1, "every validator gets a slot");
                let share = v.power as f64 / total;
                let got = *c as f64 / n as f64;
                prop_assert!((share - got).abs() <= 2.0 / RESOLUTION as f64 + 1.0 / n as f64 + share * 0.02,
                    "share {} got {}", share, got);
            }
            // Same set, same schedule: the proposer is a function of its inputs.
            prop_assert_eq!(ProposerSchedule::new(&st), s);
        }
    }
}
