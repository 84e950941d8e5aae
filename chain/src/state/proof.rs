//! Inclusion and exclusion proofs against a `state_root` (SPEC §3), for light peers.
//!
//! A proof carries the complete pair list of the key's bucket plus the sibling hashes up to the
//! root. Because the pair list is complete and sorted, the same proof shape proves a value
//! (its pair is there) or an absence (its key hash is not). Proofs arrive from untrusted peers,
//! so [`StateProof::verify`] checks every structural property before trusting anything, and
//! names each failure.

use super::commitment::{self, bucket_of, pairs_hash};
use crate::hash::Hash;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProof {
    pub key: Vec<u8>,
    /// The value proven present, or `None` for a proof of absence.
    pub value: Option<Vec<u8>>,
    pub bucket: u32,
    /// The bucket's complete `(key_hash, value_hash)` list, sorted by key hash.
    pub pairs: Vec<(Hash, Hash)>,
    /// Sibling hashes from the bucket's leaf up to the root, bottom first.
    pub siblings: Vec<Hash>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("bucket count {0} is not a power of two between 2 and 2^20")]
    BadBucketCount(u64),
    #[error("the key belongs to bucket {expected}, the proof is for bucket {got}")]
    WrongBucket { expected: u32, got: u32 },
    #[error("expected {expected} sibling hashes, got {got}")]
    WrongSiblingCount { expected: usize, got: usize },
    #[error("pair {index} has a key hash outside bucket {bucket}")]
    PairOutsideBucket { index: usize, bucket: u32 },
    #[error("pair {index} is not sorted after the previous one")]
    Unsorted { index: usize },
    #[error("pair {index} repeats the previous key hash")]
    DuplicatePair { index: usize },
    #[error("the proof claims a value but the bucket has no pair for the key")]
    MissingPair,
    #[error("the value's hash differs from the one in the bucket")]
    ValueMismatch,
    #[error("the proof claims absence but the bucket has a pair for the key")]
    KeyPresent,
    #[error("the proof leads to root {computed}, not {expected}")]
    RootMismatch { expected: Hash, computed: Hash },
}

impl StateProof {
    /// Checks the proof against `root` of a state with `num_buckets` buckets and returns the
    /// proven value (`None`: proven absent).
    pub fn verify(&self, root: &Hash, num_buckets: u64) -> Result<Option<&[u8]>, ProofError> {
        let depth =
            commitment::depth(num_buckets).map_err(|_| ProofError::BadBucketCount(num_buckets))?;
        let key_hash = Hash::of(&self.key);
        let expected = bucket_of(&key_hash, depth);
        if self.bucket != expected {
            return Err(ProofError::WrongBucket {
                expected,
                got: self.bucket,
            });
        }
        if self.siblings.len() != depth as usize {
            return Err(ProofError::WrongSiblingCount {
                expected: depth as usize,
                got: self.siblings.len(),
            });
        }
        for (index, (kh, _)) in self.pairs.iter().enumerate() {
            if bucket_of(kh, depth) != self.bucket {
                return Err(ProofError::PairOutsideBucket {
                    index,
                    bucket: self.bucket,
                });
            }
            if index > 0 {
                let prev = &self.pairs[index - 1].0;
                match prev.cmp(kh) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Err(ProofError::DuplicatePair { index }),
                    std::cmp::Ordering::Greater => return Err(ProofError::Unsorted { index }),
                }
            }
        }
        let found = self
            .pairs
            .binary_search_by(|(kh, _)| kh.cmp(&key_hash))
            .ok()
            .map(|i| &self.pairs[i].1);
        match (&self.value, found) {
            (Some(v), Some(vh)) if Hash::of(v) != *vh => return Err(ProofError::ValueMismatch),
            (Some(_), None) => return Err(ProofError::MissingPair),
            (None, Some(_)) => return Err(ProofError::KeyPresent),
            _ => {}
        }
        let mut node = pairs_hash(self.pairs.iter().map(|(k, v)| (k, v)));
        let mut idx = self.bucket;
        for sib in &self.siblings {
            node = if idx.is_multiple_of(2) {
                Hash::node(&node, sib)
            } else {
                Hash::node(sib, &node)
            };
            idx /= 2;
        }
        if node != *root {
            return Err(ProofError::RootMismatch {
                expected: *root,
                computed: node,
            });
        }
        Ok(self.value.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::commitment::{Bucket, BucketTree};
    use std::collections::BTreeMap;

    const N: u64 = 16;

    /// A small committed state, and a way to prove keys against it the way the store does.
    struct Fixture {
        tree: BucketTree,
        buckets: BTreeMap<u32, Bucket>,
    }

    impl Fixture {
        fn new() -> Self {
            let mut tree = BucketTree::empty(N).expect("valid");
            let mut buckets: BTreeMap<u32, Bucket> = BTreeMap::new();
            let mut leaves = BTreeMap::new();
            for i in 0..60u32 {
                let k = format!("acct/{i}").into_bytes();
                let kh = Hash::of(&k);
                let b = tree.bucket_of(&kh);
                let bucket = buckets.entry(b).or_default();
                bucket.set(kh, &k, Some(&i.to_le_bytes()));
                leaves.insert(b, bucket.hash());
            }
            tree.update(&leaves.into_iter().collect::<Vec<_>>());
            Fixture { tree, buckets }
        }

        fn prove(&self, key: &[u8]) -> StateProof {
            let kh = Hash::of(key);
            let b = self.tree.bucket_of(&kh);
            let bucket = self.buckets.get(&b).cloned().unwrap_or_default();
            StateProof {
                key: key.to_vec(),
                value: bucket.get(&kh, key).map(<[u8]>::to_vec),
                bucket: b,
                pairs: bucket.pairs().collect(),
                siblings: self.tree.siblings(b),
            }
        }
    }

    #[test]
    fn present_and_absent_keys_verify() {
        let f = Fixture::new();
        let root = f.tree.root();
        let p = f.prove(b"acct/7");
        assert_eq!(p.verify(&root, N), Ok(Some(&7u32.to_le_bytes()[..])));
        for i in 100..140 {
            let p = f.prove(format!("acct/{i}").as_bytes());
            assert_eq!(p.verify(&root, N), Ok(None));
        }
    }

    #[test]
    fn empty_bucket_proves_absence() {
        let tree = BucketTree::empty(N).expect("valid");
        let key = b"nothing".to_vec();
        let b = tree.bucket_of(&Hash::of(&key));
        let p = StateProof {
            key,
            value: None,
            bucket: b,
            pairs: vec![],
            siblings: tree.siblings(b),
        };
        assert_eq!(p.verify(&tree.root(), N), Ok(None));
    }

    #[test]
    fn every_tampering_is_rejected() {
        let f = Fixture::new();
        let root = f.tree.root();
        // A present key in a bucket with at least two other pairs, so reordering is possible.
        let good = (0..60)
            .map(|i| f.prove(format!("acct/{i}").as_bytes()))
            .find(|p| p.pairs.len() >= 3)
            .expect("some bucket holds three keys");
        assert!(good.verify(&root, N).is_ok());
        let check = |p: &StateProof, want: fn(&ProofError) -> bool| {
            let err = p.verify(&root, N).expect_err("tampered proof must fail");
            assert!(want(&err), "unexpected error {err:?}");
        };

        let mut p = good.clone();
        p.value = Some(b"forged".to_vec());
        check(&p, |e| matches!(e, ProofError::ValueMismatch));

        let mut p = good.clone();
        p.value = None;
        check(&p, |e| matches!(e, ProofError::KeyPresent));

        let mut p = good.clone();
        let kh = Hash::of(&p.key);
        p.pairs.retain(|(k, _)| *k != kh);
        check(&p, |e| matches!(e, ProofError::MissingPair));

        let mut p = good.clone();
        p.pairs.swap(0, 1);
        check(&p, |e| matches!(e, ProofError::Unsorted { index: 1 }));

        let mut p = good.clone();
        p.pairs.insert(1, p.pairs[0]);
        check(&p, |e| matches!(e, ProofError::DuplicatePair { index: 1 }));

        let mut p = good.clone();
        p.bucket ^= 1;
        check(&p, |e| matches!(e, ProofError::WrongBucket { .. }));

        let mut p = good.clone();
        p.siblings.pop();
        check(&p, |e| matches!(e, ProofError::WrongSiblingCount { .. }));
        let mut p = good.clone();
        p.siblings.push(Hash::ZERO);
        check(&p, |e| matches!(e, ProofError::WrongSiblingCount { .. }));

        let mut p = good.clone();
        p.siblings[2] = Hash::of(b"x");
        check(&p, |e| matches!(e, ProofError::RootMismatch { .. }));

        // Drop another key's pair: the list is still sorted and holds ours, but is incomplete.
        let mut p = good.clone();
        let other = p.pairs.iter().position(|(k, _)| *k != kh).expect("other");
        p.pairs.remove(other);
        check(&p, |e| matches!(e, ProofError::RootMismatch { .. }));

        // A pair from another bucket.
        let mut p = good.clone();
        let foreign = (0..1000)
            .map(|i| Hash::of(format!("x{i}").as_bytes()))
            .find(|h| f.tree.bucket_of(h) != p.bucket)
            .expect("some hash in another bucket");
        p.pairs.push((foreign, Hash::ZERO));
        p.pairs.sort();
        check(&p, |e| matches!(e, ProofError::PairOutsideBucket { .. }));

        // An absent key in the same bucket cannot borrow a present key's proof with a value.
        let absent = f.prove(b"acct/999");
        let mut p = absent.clone();
        p.value = Some(vec![1]);
        check(&p, |e| matches!(e, ProofError::MissingPair));

        assert!(matches!(
            good.verify(&root, 12),
            Err(ProofError::BadBucketCount(12))
        ));
        assert!(matches!(
            good.verify(&Hash::ZERO, N),
            Err(ProofError::RootMismatch { .. })
        ));
    }

    #[test]
    fn round_trips_through_the_codec_and_json() {
        let p = Fixture::new().prove(b"acct/3");
        let bytes = crate::codec::encode(&p);
        let back: StateProof = crate::codec::decode(&bytes, bytes.len()).expect("decodes");
        assert_eq!(back, p);
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(
            serde_json::from_str::<StateProof>(&json).expect("parses"),
            p
        );
    }
}
