//! A bounded cache of decoded state buckets.
//!
//! Execution reads a key, then `prepare` rewrites the bucket holding it: without a cache every
//! touched bucket is fetched from sled and decoded twice per block, and hot accounts on every
//! block. Buckets are shared (a clone is a reference count), so a hit costs no copy.
//! Known-empty buckets are cached too, so reads of absent keys skip the store as well.
//!
//! Eviction is CLOCK (second chance): cheap, and close enough to LRU for this access pattern.
//! Only lookups go through the `HashMap`; nothing iterates it, so its order cannot leak into
//! results.

use crate::state::commitment::Bucket;
use std::collections::{HashMap, VecDeque};

struct Slot {
    bucket: Bucket,
    size: usize,
    referenced: bool,
    /// Which insertion this slot is: CLOCK entries of removed slots are skipped.
    generation: u64,
}

pub(crate) struct BucketCache {
    budget: usize,
    bytes: usize,
    slots: HashMap<u32, Slot>,
    /// Every cached bucket once, in CLOCK order (plus stale entries of removed ones, which
    /// eviction skips and [`BucketCache::remove`] compacts away).
    clock: VecDeque<(u32, u64)>,
    generation: u64,
}

impl BucketCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        BucketCache {
            budget: budget_bytes,
            bytes: 0,
            slots: HashMap::new(),
            clock: VecDeque::new(),
            generation: 0,
        }
    }

    pub(crate) fn get(&mut self, b: u32) -> Option<Bucket> {
        let slot = self.slots.get_mut(&b)?;
        slot.referenced = true;
        Some(slot.bucket.clone())
    }

    /// Caches `bucket` as the committed content of `b`, evicting others if over budget.
    pub(crate) fn insert(&mut self, b: u32, bucket: Bucket) {
        if self.budget == 0 {
            return;
        }
        let size = bucket.approx_bytes() + 64;
        match self.slots.get_mut(&b) {
            Some(slot) => {
                self.bytes = self.bytes - slot.size + size;
                slot.bucket = bucket;
                slot.size = size;
                slot.referenced = true;
            }
            None => {
                self.bytes += size;
                self.generation += 1;
                self.slots.insert(
                    b,
                    Slot {
                        bucket,
                        size,
                        referenced: false,
                        generation: self.generation,
                    },
                );
                self.clock.push_back((b, self.generation));
            }
        }
        self.evict();
    }

    /// Drops `b` (its committed content now lives elsewhere, e.g. held for write-back) and
    /// returns what was cached.
    pub(crate) fn remove(&mut self, b: u32) -> Option<Bucket> {
        let slot = self.slots.remove(&b)?;
        self.bytes -= slot.size;
        if self.clock.len() > 2 * self.slots.len() + 1024 {
            let slots = &self.slots;
            self.clock
                .retain(|(b, g)| slots.get(b).is_some_and(|s| s.generation == *g));
        }
        Some(slot.bucket)
    }

    /// Whether another `size` bytes fit without evicting (used to warm the cache on open
    /// without churning it).
    pub(crate) fn has_room(&self, size: usize) -> bool {
        self.bytes + size <= self.budget
    }

    fn evict(&mut self) {
        while self.bytes > self.budget {
            let Some((b, generation)) = self.clock.pop_front() else {
                return;
            };
            let Some(slot) = self
                .slots
                .get_mut(&b)
                .filter(|s| s.generation == generation)
            else {
                continue;
            };
            if std::mem::take(&mut slot.referenced) {
                self.clock.push_back((b, generation));
            } else if let Some(slot) = self.slots.remove(&b) {
                self.bytes -= slot.size;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash;

    fn bucket(n: usize) -> Bucket {
        let mut b = Bucket::default();
        for i in 0..n {
            let k = format!("k{i}").into_bytes();
            b.set(Hash::of(&k), &k, Some(&[0u8; 100]));
        }
        b
    }

    #[test]
    fn stays_within_budget_and_prefers_referenced() {
        let one = bucket(4).approx_bytes() + 64;
        let mut c = BucketCache::new(one * 3);
        for b in 0..3 {
            c.insert(b, bucket(4));
        }
        assert!(c.get(0).is_some());
        c.insert(3, bucket(4));
        assert!(c.bytes() <= one * 3);
        assert!(c.get(0).is_some(), "referenced bucket survived");
        assert!(c.get(1).is_none(), "unreferenced oldest bucket evicted");
        c.insert(0, bucket(1));
        assert_eq!(c.get(0).map(|b| b.len()), Some(1), "replaced in place");
        let mut off = BucketCache::new(0);
        off.insert(0, bucket(1));
        assert!(off.get(0).is_none());
    }

    #[test]
    fn removed_buckets_free_their_room_and_stale_clock_entries_are_skipped() {
        let one = bucket(4).approx_bytes() + 64;
        let mut c = BucketCache::new(one * 2);
        for round in 0..5000u32 {
            c.insert(round % 3, bucket(4));
            c.remove(round % 3);
            assert!(c.get(round % 3).is_none());
        }
        assert_eq!(c.bytes(), 0);
        assert!(c.clock.len() <= 2 * c.slots.len() + 1025);
        for b in 0..3 {
            c.insert(b, bucket(4));
        }
        assert!(c.bytes() <= one * 2);
        assert!(c.get(2).is_some(), "newest kept");
    }
}
