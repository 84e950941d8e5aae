//! A bounded cache of decoded state buckets.
//!
//! Execution reads a key, then `prepare` rewrites the bucket holding it: without a cache every
//! touched bucket is fetched from sled and decoded twice per block, and hot accounts on every
//! block. Buckets are shared as `Arc`s so a hit costs no copy. Known-empty buckets are cached
//! too, so reads of absent keys skip the store as well.
//!
//! Eviction is CLOCK (second chance): cheap, and close enough to LRU for this access pattern.
//! Only lookups go through the `HashMap`; nothing iterates it, so its order cannot leak into
//! results.

use crate::state::commitment::Bucket;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

struct Slot {
    bucket: Arc<Bucket>,
    size: usize,
    referenced: bool,
}

pub(crate) struct BucketCache {
    budget: usize,
    bytes: usize,
    slots: HashMap<u32, Slot>,
    /// Every cached bucket exactly once, in CLOCK order.
    clock: VecDeque<u32>,
}

impl BucketCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        BucketCache {
            budget: budget_bytes,
            bytes: 0,
            slots: HashMap::new(),
            clock: VecDeque::new(),
        }
    }

    pub(crate) fn get(&mut self, b: u32) -> Option<Arc<Bucket>> {
        let slot = self.slots.get_mut(&b)?;
        slot.referenced = true;
        Some(slot.bucket.clone())
    }

    /// Caches `bucket` as the committed content of `b`, evicting others if over budget.
    pub(crate) fn insert(&mut self, b: u32, bucket: Arc<Bucket>) {
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
                self.slots.insert(
                    b,
                    Slot {
                        bucket,
                        size,
                        referenced: false,
                    },
                );
                self.clock.push_back(b);
            }
        }
        self.evict();
    }

    /// Whether another `size` bytes fit without evicting (used to warm the cache on open
    /// without churning it).
    pub(crate) fn has_room(&self, size: usize) -> bool {
        self.bytes + size <= self.budget
    }

    fn evict(&mut self) {
        while self.bytes > self.budget {
            let Some(b) = self.clock.pop_front() else {
                return;
            };
            let Some(slot) = self.slots.get_mut(&b) else {
                continue;
            };
            if std::mem::take(&mut slot.referenced) {
                self.clock.push_back(b);
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

    fn bucket(n: usize) -> Arc<Bucket> {
        let mut b = Bucket::default();
        for i in 0..n {
            let k = format!("k{i}").into_bytes();
            b.set(Hash::of(&k), &k, Some(&[0u8; 100]));
        }
        Arc::new(b)
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
}
