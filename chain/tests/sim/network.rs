//! The simulated network: partitions and per-link delay, loss and duplication.

use super::config::NetParams;
use super::rng::SplitMix64;

#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Group id per node while partitioned.
    groups: Option<Vec<u8>>,
}

impl Network {
    pub fn partition(&mut self, groups: Vec<u8>) {
        self.groups = Some(groups);
    }

    pub fn heal(&mut self) {
        self.groups = None;
    }

    pub fn is_partitioned(&self) -> bool {
        self.groups.is_some()
    }

    pub fn link_up(&self, a: usize, b: usize) -> bool {
        match &self.groups {
            None => true,
            Some(g) => g.get(a) == g.get(b),
        }
    }

    /// Delivery delays for one message on one link: empty if lost, two if duplicated.
    pub fn delays(&self, rng: &mut SplitMix64, p: &NetParams) -> Vec<u64> {
        if p.loss_permille > 0 && rng.chance(p.loss_permille) {
            return Vec::new();
        }
        let copies = if p.dup_permille > 0 && rng.chance(p.dup_permille) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                if p.long_permille > 0 && rng.chance(p.long_permille) {
                    rng.range(p.max_delay_ms, p.long_max_ms.max(p.max_delay_ms))
                } else {
                    rng.range(p.min_delay_ms, p.max_delay_ms)
                }
            })
            .collect()
    }
}
