//! A bounded cache of decompressed public keys.
//!
//! Decompressing a key (a field square root plus a small-order check) costs a few µs, a sizeable
//! share of a batched signature check; busy senders sign many txs with one key, so most gossiped
//! txs hit the cache. Two generations give a cheap approximation of LRU with no per-hit
//! bookkeeping: when the hot map fills, it becomes the cold one and the old cold one is dropped;
//! a key found cold is promoted. The cache never changes a verdict, only its cost, so its
//! iteration-free `HashMap`s cannot make nodes disagree.

use crate::crypto::{PublicKey, SigError, VerifyingKey};
use std::collections::HashMap;

#[derive(Clone)]
pub(crate) struct KeyCache {
    /// Entries per generation; 0 disables the cache.
    cap: usize,
    hot: HashMap<PublicKey, VerifyingKey>,
    cold: HashMap<PublicKey, VerifyingKey>,
}

impl KeyCache {
    /// A cache holding at most `total` keys (split over its two generations).
    pub(crate) fn new(total: usize) -> KeyCache {
        KeyCache {
            cap: total / 2,
            hot: HashMap::new(),
            cold: HashMap::new(),
        }
    }

    /// The decompressed key. Invalid keys are not cached: they only come from bad txs, and
    /// caching them would let garbage push out useful entries.
    pub(crate) fn get(&mut self, pk: &PublicKey) -> Result<VerifyingKey, SigError> {
        if self.cap == 0 {
            return VerifyingKey::new(pk);
        }
        if let Some(key) = self.hot.get(pk) {
            return Ok(*key);
        }
        let key = match self.cold.remove(pk) {
            Some(key) => key,
            None => VerifyingKey::new(pk)?,
        };
        if self.hot.len() >= self.cap {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(*pk, key);
        Ok(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn stays_bounded_and_returns_the_right_key() {
        let mut cache = KeyCache::new(8);
        for round in 0..3 {
            for i in 1..=20u8 {
                let pk = SecretKey::from_seed([i; 32]).public();
                let key = cache.get(&pk).expect("valid key");
                assert_eq!(key.public_key(), &pk, "round {round}");
                assert!(cache.len() <= 8);
            }
        }
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(
            cache.get(&PublicKey(bad)).err(),
            Some(SigError::BadKey),
            "invalid keys are reported, not cached"
        );
        let mut off = KeyCache::new(0);
        let pk = SecretKey::from_seed([1; 32]).public();
        assert!(off.get(&pk).is_ok());
        assert_eq!(off.len(), 0);
    }
}
