//! The transaction index: tx hash → where it was committed, with few store writes per block.
//!
//! One store key per transaction cost 7–18 µs of sled work each (a batch of 10,000 random
//! 34-byte keys per block, flushed, growing from 100k to 400k keys), more than SPEC §9's whole
//! budget per transfer; the same entries appended to shared ≈ 4 KiB values cost about 1 µs.
//! So entries are grouped:
//!
//! - the first 12 bits of a tx hash pick one of [`BUCKETS`] buckets; a bucket is stored as a run
//!   of chunks `x/<bucket u16 BE><chunk u32 BE>` of up to [`CHUNK_ENTRIES`] entries
//!   (`hash ‖ height u64 BE ‖ index u32 BE`), and only its last chunk is ever rewritten;
//! - the buckets fall into [`GROUPS`] groups (bucket mod 16), and block `h` writes the entries
//!   of group `h mod 16` that are still pending (its own and those of the 15 blocks before it),
//!   with that group's entry counts (`x/n<group u8>`), in the block's own atomic batch;
//! - the rest wait in memory. Which entries are stored follows from the head height alone, so
//!   open re-indexes the last 16 blocks and a crash loses nothing.
//!
//! Every block writes a 16th of the buckets, so no block pays for a big flush. A lookup reads
//! one bucket: about (committed txs / 4,096) × 44 bytes, 1 MB at 100M txs.

use super::kv::{KvStore, WriteBatch};
use super::{corrupt, StoreError, TxLocation};
use crate::hash::Hash;
use crate::tx::HashedTx;
use std::collections::HashMap;

pub(crate) const BUCKETS: usize = 4096;
pub(crate) const GROUPS: usize = 16;
/// Buckets per group.
const PER_GROUP: usize = BUCKETS / GROUPS;
/// 93 entries of 44 bytes: a chunk stays under 4 KiB, the size sled handles best here.
pub(crate) const CHUNK_ENTRIES: usize = 93;
const ENTRY: usize = 44;

pub(crate) const CHUNK_PREFIX: &[u8] = b"x/";
const COUNTS_PREFIX: &[u8] = b"x/n";

pub(crate) fn chunk_key(bucket: usize, chunk: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..2].copy_from_slice(CHUNK_PREFIX);
    k[2..4].copy_from_slice(&(bucket as u16).to_be_bytes());
    k[4..].copy_from_slice(&chunk.to_be_bytes());
    k
}

fn counts_key(group: usize) -> [u8; 4] {
    [
        COUNTS_PREFIX[0],
        COUNTS_PREFIX[1],
        COUNTS_PREFIX[2],
        group as u8,
    ]
}

fn bucket_of(hash: &Hash) -> usize {
    (usize::from(hash.0[0]) << 4) | usize::from(hash.0[1] >> 4)
}

fn group_of(bucket: usize) -> usize {
    bucket % GROUPS
}

/// The group block `height` writes.
fn group_at(height: u64) -> usize {
    (height % GROUPS as u64) as usize
}

/// Whether an entry of `group` from block `height` is stored once `head` is committed: some
/// block in `height..=head` wrote that group.
fn stored_by(head: u64, height: u64, group: usize) -> bool {
    let wait = (group + GROUPS - group_at(height)) % GROUPS;
    wait as u64 <= head - height
}

fn entry(hash: &Hash, loc: TxLocation) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[..32].copy_from_slice(&hash.0);
    e[32..40].copy_from_slice(&loc.height.to_be_bytes());
    e[40..].copy_from_slice(&loc.index.to_be_bytes());
    e
}

pub(crate) struct TxIndex {
    /// Entries not stored yet, by group. Looked up, or drained and sorted by hash before they
    /// are written, so the maps' order never reaches the store.
    pending: Vec<HashMap<Hash, TxLocation>>,
    /// Stored entries per bucket.
    counts: Vec<u32>,
}

/// What one block's batch does to the index, installed once the batch is written.
pub(crate) struct IndexUpdate {
    group: usize,
    /// The group's counts after the write; `None`: the group had nothing to write.
    counts: Option<Vec<u32>>,
    /// This block's entries of the other groups, pending from now on.
    pending: Vec<(Hash, TxLocation)>,
}

impl TxIndex {
    /// The index of a new store; [`TxIndex::init_batch`] writes its counts.
    pub(crate) fn empty() -> Self {
        TxIndex {
            pending: vec![HashMap::new(); GROUPS],
            counts: vec![0; BUCKETS],
        }
    }

    /// Every group's (zero) counts: an index without them is from an older store layout.
    pub(crate) fn init_batch(&self, batch: &mut WriteBatch) {
        for g in 0..GROUPS {
            batch.put(counts_key(g).to_vec(), vec![0; 4 * PER_GROUP]);
        }
    }

    /// Loads the counts and re-indexes what the last blocks up to `head` left pending.
    pub(crate) fn load<K: KvStore>(
        kv: &K,
        head: u64,
        block_txs: impl Fn(u64) -> Result<Vec<HashedTx>, StoreError>,
    ) -> Result<Self, StoreError> {
        let mut index = TxIndex::empty();
        for g in 0..GROUPS {
            let k = counts_key(g);
            let bytes = kv.get(&k)?.ok_or_else(|| {
                corrupt(
                    &k,
                    "missing: the store predates this transaction index; delete the data \
                     directory and sync again",
                )
            })?;
            let bytes = bytes.as_ref();
            if bytes.len() != 4 * PER_GROUP {
                return Err(corrupt(
                    &k,
                    format!("{} bytes, expected {}", bytes.len(), 4 * PER_GROUP),
                ));
            }
            for (i, c) in bytes.chunks_exact(4).enumerate() {
                let mut n = [0u8; 4];
                n.copy_from_slice(c);
                index.counts[i * GROUPS + g] = u32::from_be_bytes(n);
            }
        }
        let from = head.saturating_sub(GROUPS as u64 - 1).max(1);
        for height in from..=head {
            for (i, tx) in block_txs(height)?.iter().enumerate() {
                let g = group_of(bucket_of(&tx.hash));
                if !stored_by(head, height, g) {
                    let loc = TxLocation {
                        height,
                        index: i as u32,
                    };
                    index.pending[g].insert(tx.hash, loc);
                }
            }
        }
        Ok(index)
    }

    pub(crate) fn get<K: KvStore>(
        &self,
        kv: &K,
        hash: &Hash,
    ) -> Result<Option<TxLocation>, StoreError> {
        let b = bucket_of(hash);
        if let Some(loc) = self.pending[group_of(b)].get(hash) {
            return Ok(Some(*loc));
        }
        let count = self.counts[b] as usize;
        for c in 0..count.div_ceil(CHUNK_ENTRIES) {
            let chunk = self.chunk(kv, b, c, count)?;
            for e in chunk.as_ref().chunks_exact(ENTRY) {
                if e[..32] == hash.0 {
                    let mut h = [0u8; 8];
                    h.copy_from_slice(&e[32..40]);
                    let mut i = [0u8; 4];
                    i.copy_from_slice(&e[40..]);
                    return Ok(Some(TxLocation {
                        height: u64::from_be_bytes(h),
                        index: u32::from_be_bytes(i),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Chunk `c` of bucket `b`, which holds `count` entries: checked to be as long as that says.
    fn chunk<K: KvStore>(
        &self,
        kv: &K,
        b: usize,
        c: usize,
        count: usize,
    ) -> Result<K::Value, StoreError> {
        let k = chunk_key(b, c as u32);
        let expected = (count - c * CHUNK_ENTRIES).min(CHUNK_ENTRIES) * ENTRY;
        let v = kv.get(&k)?.ok_or_else(|| corrupt(&k, "missing"))?;
        if v.as_ref().len() != expected {
            return Err(corrupt(
                &k,
                format!("{} bytes, expected {expected}", v.as_ref().len()),
            ));
        }
        Ok(v)
    }

    /// Adds to `batch` what block `height` (holding `txs`) writes of the index.
    pub(crate) fn stage<K: KvStore>(
        &self,
        kv: &K,
        height: u64,
        txs: &[HashedTx],
        batch: &mut WriteBatch,
    ) -> Result<IndexUpdate, StoreError> {
        let group = group_at(height);
        let mut write: Vec<(Hash, TxLocation)> =
            self.pending[group].iter().map(|(h, l)| (*h, *l)).collect();
        let mut pending = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            let loc = TxLocation {
                height,
                index: i as u32,
            };
            if group_of(bucket_of(&tx.hash)) == group {
                write.push((tx.hash, loc));
            } else {
                pending.push((tx.hash, loc));
            }
        }
        if write.is_empty() {
            return Ok(IndexUpdate {
                group,
                counts: None,
                pending,
            });
        }
        write.sort_unstable_by_key(|(h, _)| *h);
        let mut counts: Vec<u32> = (0..PER_GROUP)
            .map(|i| self.counts[i * GROUPS + group])
            .collect();
        for run in write.chunk_by(|a, b| bucket_of(&a.0) == bucket_of(&b.0)) {
            let b = bucket_of(&run[0].0);
            let count = &mut counts[b / GROUPS];
            let mut chunk = (*count as usize / CHUNK_ENTRIES) as u32;
            let mut bytes = Vec::with_capacity(CHUNK_ENTRIES * ENTRY);
            if !(*count as usize).is_multiple_of(CHUNK_ENTRIES) {
                let last = self.chunk(kv, b, chunk as usize, *count as usize)?;
                bytes.extend_from_slice(last.as_ref());
            }
            for (hash, loc) in run {
                bytes.extend_from_slice(&entry(hash, *loc));
                if bytes.len() == CHUNK_ENTRIES * ENTRY {
                    batch.put(chunk_key(b, chunk).to_vec(), std::mem::take(&mut bytes));
                    chunk += 1;
                }
            }
            if !bytes.is_empty() {
                batch.put(chunk_key(b, chunk).to_vec(), bytes);
            }
            *count = count
                .checked_add(run.len() as u32)
                .ok_or_else(|| corrupt(&chunk_key(b, chunk), "bucket count overflows u32"))?;
        }
        let encoded: Vec<u8> = counts.iter().flat_map(|c| c.to_be_bytes()).collect();
        batch.put(counts_key(group).to_vec(), encoded);
        Ok(IndexUpdate {
            group,
            counts: Some(counts),
            pending,
        })
    }

    /// Applies `update` once its batch is written.
    pub(crate) fn install(&mut self, update: IndexUpdate) {
        if let Some(counts) = update.counts {
            self.pending[update.group].clear();
            for (i, c) in counts.into_iter().enumerate() {
                self.counts[i * GROUPS + update.group] = c;
            }
        }
        for (hash, loc) in update.pending {
            self.pending[group_of(bucket_of(&hash))].insert(hash, loc);
        }
    }

    /// Entries held in memory, not stored yet.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.iter().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::kv::MemKv;
    use crate::{SecretKey, Tx, TxKind};

    fn txs(height: u64, n: usize) -> Vec<HashedTx> {
        let k = SecretKey::from_seed([7; 32]);
        (0..n)
            .map(|i| {
                HashedTx::new(Tx::signed(
                    "ait-test",
                    TxKind::Transfer {
                        to: crate::Address([i as u8; 20]),
                        amount: height * 1_000 + i as u64 + 1,
                    },
                    &k,
                    height,
                    1,
                ))
            })
            .collect()
    }

    /// A new store's index, its counts written.
    fn fresh() -> (MemKv, TxIndex) {
        let kv = MemKv::new();
        let index = TxIndex::empty();
        let mut batch = WriteBatch::default();
        index.init_batch(&mut batch);
        kv.write(batch).expect("write");
        (kv, index)
    }

    /// What committing block `height` does to the index: stage, write, install.
    fn commit(kv: &MemKv, index: &mut TxIndex, height: u64, txs: &[HashedTx]) {
        let mut batch = WriteBatch::default();
        let update = index.stage(kv, height, txs, &mut batch).expect("stage");
        kv.write(batch).expect("write");
        index.install(update);
    }

    /// Commits 40 blocks of 200 txs, reopening every 7th, and checks every tx is found where
    /// it was committed, and that unknown hashes are not.
    #[test]
    fn every_tx_is_found_across_groups_chunks_and_reopens() {
        let (kv, mut index) = fresh();
        let blocks: Vec<Vec<HashedTx>> = (1..=40).map(|h| txs(h, 200)).collect();
        for (i, block) in blocks.iter().enumerate() {
            let height = i as u64 + 1;
            commit(&kv, &mut index, height, block);
            if height.is_multiple_of(7) {
                index = TxIndex::load(&kv, height, |h| Ok(blocks[h as usize - 1].clone()))
                    .expect("load");
            }
        }
        // Of the last 16 blocks, what their groups have not written yet.
        assert!(index.pending() > 0 && index.pending() < 16 * 200);
        for (i, block) in blocks.iter().enumerate() {
            for (j, tx) in block.iter().enumerate() {
                let loc = index.get(&kv, &tx.hash).expect("read");
                assert_eq!(
                    loc,
                    Some(TxLocation {
                        height: i as u64 + 1,
                        index: j as u32
                    })
                );
            }
        }
        for tx in txs(41, 50) {
            assert_eq!(index.get(&kv, &tx.hash).expect("read"), None);
        }
    }

    #[test]
    fn long_buckets_span_chunks() {
        let (kv, mut index) = fresh();
        // 250 txs all in bucket 0x123 (group 3), committed at heights that write group 3.
        // Only hashes matter to the index, so they are set rather than searched for.
        let template = txs(1, 1).remove(0);
        let picked: Vec<HashedTx> = (0..250u32)
            .map(|i| {
                let mut tx = template.clone();
                tx.hash.0 = [0; 32];
                tx.hash.0[0] = 0x12;
                tx.hash.0[1] = 0x30;
                tx.hash.0[28..].copy_from_slice(&i.to_be_bytes());
                tx
            })
            .collect();
        for (i, part) in picked.chunks(50).enumerate() {
            commit(&kv, &mut index, 3 + 16 * i as u64, part);
        }
        assert_eq!(index.pending(), 0);
        assert_eq!(index.counts[0x123], 250);
        for c in 0..3 {
            assert!(kv.get(&chunk_key(0x123, c)).expect("read").is_some());
        }
        assert!(kv.get(&chunk_key(0x123, 3)).expect("read").is_none());
        for (i, tx) in picked.iter().enumerate() {
            let loc = index.get(&kv, &tx.hash).expect("read").expect("found");
            assert_eq!(loc.height, 3 + 16 * (i as u64 / 50));
            assert_eq!(loc.index, i as u32 % 50);
        }
        // A chunk cut short is reported, not misread.
        let mut batch = WriteBatch::default();
        batch.put(chunk_key(0x123, 1).to_vec(), vec![0; ENTRY]);
        kv.write(batch).expect("write");
        let err = index.get(&kv, &picked[249].hash).expect_err("corrupt");
        assert!(err.to_string().contains("expected"), "{err}");
    }
}
