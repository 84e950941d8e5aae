//! The bucketed Merkle state commitment of SPEC §3.
//!
//! Every entry `(k, v)` lands in the bucket named by the top `log2(num_buckets)` bits of
//! `SHA-256(k)`. A bucket's hash covers its `(SHA-256(k), SHA-256(v))` pairs sorted by key hash
//! (32 zero bytes when empty), and `state_root` is a complete binary Merkle tree over the bucket
//! hashes. A block's work is then proportional to the buckets it touches: each touched bucket is
//! re-hashed once, and each tree node above them is recomputed once.
//!
//! The alternatives the spec measured (a sparse Merkle tree per key, or one store key per entry)
//! were 4–20× slower, because they pay a store round trip or a tree path per entry rather than
//! per bucket.

use crate::codec::{self, CodecError};
use crate::hash::Hash;
use crate::state::pool::BucketPool;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Smallest bucket count: a tree needs at least one pair of leaves.
pub const MIN_BUCKETS: u64 = 2;
/// Largest bucket count: caps the in-memory tree at 2^21 hashes (64 MiB).
pub const MAX_BUCKETS: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitmentError {
    #[error("state bucket count {0} is not a power of two between 2 and 2^20")]
    BadBucketCount(u64),
}

/// Checks `num_buckets` and returns the tree depth, `log2(num_buckets)`.
pub fn depth(num_buckets: u64) -> Result<u32, CommitmentError> {
    if num_buckets.is_power_of_two() && (MIN_BUCKETS..=MAX_BUCKETS).contains(&num_buckets) {
        Ok(num_buckets.trailing_zeros())
    } else {
        Err(CommitmentError::BadBucketCount(num_buckets))
    }
}

/// Bucket of a key hash: its top `depth` bits, big-endian. `depth` is at most 20, so the
/// first four bytes always suffice.
pub fn bucket_of(key_hash: &Hash, depth: u32) -> u32 {
    debug_assert!((1..=20).contains(&depth));
    let top = u32::from_be_bytes([key_hash.0[0], key_hash.0[1], key_hash.0[2], key_hash.0[3]]);
    top >> (32 - depth)
}

/// Why a bucket read back from the store cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BucketError {
    #[error("undecodable: {0}")]
    Codec(#[from] CodecError),
    #[error("malformed layout: {0}")]
    Layout(&'static str),
    #[error("entry {index} is not sorted after the previous one (or repeats it)")]
    Unsorted { index: usize },
    #[error("entry {index} has a key hash that does not match its key")]
    KeyHash { index: usize },
    #[error("entry {index} has a value hash that does not match its value")]
    ValueHash { index: usize },
    #[error("entry {index} belongs to bucket {actual}, not this one")]
    Misplaced { index: usize, actual: u32 },
    #[error("stored as an empty bucket (empty buckets are deleted, not stored)")]
    StoredEmpty,
}

/// One entry of a bucket: its hashes, and its key and value borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key_hash: Hash,
    pub value_hash: Hash,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// All entries of one bucket, sorted by `(key_hash, key)`.
///
/// The key breaks ties only in the (never observed) case of a SHA-256 collision, so that even
/// then every node orders the bucket the same way.
///
/// One shared allocation, laid out as the bucket is stored (less the length prefixes) after
/// an 8-byte entry count: the `(key hash, value hash)` pairs, then each entry's key end and
/// value end in the data (u32 LE), then `key 0 || value 0 || key 1 || value 1 || …`.
///
/// - One allocation: a block replaces thousands of buckets, and at 1M entries a bucket
///   (~2 KiB) is past glibc's per-thread cache, so each allocation and free takes the
///   allocator's slow path. With the pairs, offsets and data in separate arrays, malloc and
///   free were about a fifth of an update (a profile); one buffer took the update at 1M entries
///   from 5.5 to 4.35 µs per entry.
/// - Shared, as an `Arc<[u8]>`, so the reference count sits on the same cache line as the count
///   and the first pairs: a read that finds the bucket in memory waits on one cache miss to
///   reach its entries, not two (an `Arc<Bucket>` holding a buffer pointer was a miss for the
///   `Arc`, then one for the buffer). Cloning a bucket shares it.
/// - The value hash is kept beside the value so re-hashing a bucket is one SHA-256 over the
///   contiguous pairs, not one per value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    buf: Arc<[u8]>,
}

/// The entry count before the arrays (u64 LE, so the pairs stay 8-byte aligned).
const HEADER: usize = 8;

impl Default for Bucket {
    fn default() -> Self {
        Bucket::with_room(0)
    }
}

/// Bytes per entry of the pair array and of the offset array.
const PAIR_BYTES: usize = 64;
const ENDS_BYTES: usize = 8;

/// Buckets up to this many entries are searched front to back: the pairs are 64 bytes apart,
/// so a binary search misses the CPU cache once per step, each miss waiting for the last,
/// where a scan reads consecutive lines the hardware prefetches.
const LINEAR_SEARCH: usize = 32;

/// The order of key hashes (their bytes' order), deciding on the first eight bytes as one
/// integer: inside a bucket the leading bytes are shared and the next ones almost never tie, so
/// this is one comparison where a byte-wise `memcmp` call was a tenth of executing a block.
pub(crate) fn cmp_key_hash(a: &[u8; 32], b: &[u8; 32]) -> std::cmp::Ordering {
    let head = |h: &[u8; 32]| u64::from_be_bytes(h.as_chunks::<8>().0[0]);
    head(a).cmp(&head(b)).then_with(|| a[8..].cmp(&b[8..]))
}

/// The order of bucket entries: by key hash, then (on a hash collision) by key.
fn cmp_entry(a: (&[u8; 32], &[u8]), b: (&[u8; 32], &[u8])) -> std::cmp::Ordering {
    cmp_key_hash(a.0, b.0).then_with(|| a.1.cmp(b.1))
}

/// A bucket's three arrays, borrowed from a [`Bucket`] or from stored bytes being decoded.
#[derive(Clone, Copy)]
struct Parts<'a> {
    pairs: &'a [[u8; PAIR_BYTES]],
    /// Key end and value end of each entry, in turn; entry `i`'s key starts where entry
    /// `i - 1`'s value ends (0 for the first).
    ends: &'a [[u8; 4]],
    data: &'a [u8],
}

impl<'a> Parts<'a> {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn key_hash(&self, i: usize) -> &'a [u8; 32] {
        &self.pairs[i].as_chunks::<32>().0[0]
    }

    fn value_hash(&self, i: usize) -> &'a [u8; 32] {
        &self.pairs[i].as_chunks::<32>().0[1]
    }

    fn end(&self, j: usize) -> usize {
        u32::from_le_bytes(self.ends[j]) as usize
    }

    fn key(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 { 0 } else { self.end(2 * i - 1) };
        &self.data[start..self.end(2 * i)]
    }

    fn value(&self, i: usize) -> &'a [u8] {
        &self.data[self.end(2 * i)..self.end(2 * i + 1)]
    }

    fn position(&self, key_hash: &Hash, key: &[u8]) -> Result<usize, usize> {
        self.position_from(0, key_hash, key)
    }

    /// [`Parts::position`] for a key known to sort at or after entry `from`.
    fn position_from(&self, from: usize, key_hash: &Hash, key: &[u8]) -> Result<usize, usize> {
        // Compare keys only on a key-hash tie, i.e. for the entry itself.
        let before =
            |p: &[u8; PAIR_BYTES]| cmp_key_hash(&p.as_chunks::<32>().0[0], &key_hash.0).is_lt();
        let rest = &self.pairs[from.min(self.len())..];
        let i = from
            + if rest.len() <= LINEAR_SEARCH {
                rest.iter().position(|p| !before(p)).unwrap_or(rest.len())
            } else {
                rest.partition_point(before)
            };
        let mut j = i;
        while j < self.len() && self.key_hash(j) == &key_hash.0 {
            match self.key(j).cmp(key) {
                std::cmp::Ordering::Less => j += 1,
                std::cmp::Ordering::Equal => return Ok(j),
                std::cmp::Ordering::Greater => break,
            }
        }
        Err(j)
    }
}

/// A change to one bucket entry: key hash, key, and the new value (`None` deletes).
pub type EntryChange<'a> = (Hash, &'a [u8], Option<&'a [u8]>);

/// The pair array, offset array and data of a stored bucket.
type StoredParts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits stored bucket bytes into its three length-prefixed byte strings (pairs, offsets,
/// data: the codec's layout of a struct of three byte strings), exactly as the codec would
/// (bounded, no trailing bytes; a test checks they agree), but borrowing them instead of
/// allocating three copies: this runs on every bucket-cache miss.
fn split_stored(bytes: &[u8]) -> Result<StoredParts<'_>, BucketError> {
    if bytes.len() > codec::MAX_DECODE_BYTES {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max: codec::MAX_DECODE_BYTES,
        }
        .into());
    }
    let mut rest = bytes;
    let mut take = || -> Result<&[u8], BucketError> {
        let truncated = || CodecError::Malformed("truncated byte string".into());
        let (len, tail) = rest.split_first_chunk::<8>().ok_or_else(truncated)?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| truncated())?;
        if len > tail.len() {
            return Err(truncated().into());
        }
        let (blob, tail) = tail.split_at(len);
        rest = tail;
        Ok(blob)
    };
    let (pairs, ends, data) = (take()?, take()?, take()?);
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { extra: rest.len() }.into());
    }
    Ok((pairs, ends, data))
}

/// Largest bucket the store accepts writing: far above anything real (1M entries over 65,536
/// buckets is ~2 KiB each), and well under the codec's decode limit, so a bucket that was
/// written can always be read back.
pub const MAX_BUCKET_BYTES: usize = 32 << 20;

/// Writes a bucket's entries, in order, into its exactly sized buffer.
struct BucketWriter<'b> {
    pairs: &'b mut [u8],
    ends: &'b mut [u8],
    data: &'b mut [u8],
    /// Entries and data bytes written so far.
    n: usize,
    at: usize,
}

impl<'b> BucketWriter<'b> {
    fn new(buf: &'b mut [u8], len: usize) -> Self {
        let (pairs, rest) = buf.split_at_mut(len * PAIR_BYTES);
        let (ends, data) = rest.split_at_mut(len * ENDS_BYTES);
        BucketWriter {
            pairs,
            ends,
            data,
            n: 0,
            at: 0,
        }
    }

    /// Offsets are u32: callers keep buckets under [`MAX_BUCKET_BYTES`] (the store refuses to
    /// write larger ones), so they cannot overflow.
    fn push(&mut self, key_hash: &[u8; 32], value_hash: &[u8; 32], key: &[u8], value: &[u8]) {
        let pair = &mut self.pairs[self.n * PAIR_BYTES..][..PAIR_BYTES];
        pair[..32].copy_from_slice(key_hash);
        pair[32..].copy_from_slice(value_hash);
        let ends = &mut self.ends[self.n * ENDS_BYTES..][..ENDS_BYTES];
        self.data[self.at..][..key.len()].copy_from_slice(key);
        self.at += key.len();
        ends[..4].copy_from_slice(&(self.at as u32).to_le_bytes());
        self.data[self.at..][..value.len()].copy_from_slice(value);
        self.at += value.len();
        ends[4..].copy_from_slice(&(self.at as u32).to_le_bytes());
        self.n += 1;
    }

    /// Copies entries `from..to` of `old` unchanged: pairs and data as they are, offsets
    /// moved by where the data now starts.
    fn copy_run(&mut self, old: &Parts<'_>, from: usize, to: usize) {
        if from >= to {
            return;
        }
        let count = to - from;
        self.pairs[self.n * PAIR_BYTES..][..count * PAIR_BYTES]
            .copy_from_slice(old.pairs[from..to].as_flattened());
        let start = if from == 0 { 0 } else { old.end(2 * from - 1) };
        let end = old.end(2 * to - 1);
        self.data[self.at..][..end - start].copy_from_slice(&old.data[start..end]);
        let ends = &mut self.ends[self.n * ENDS_BYTES..][..count * ENDS_BYTES];
        for (new, old_end) in ends.chunks_exact_mut(4).zip(&old.ends[2 * from..2 * to]) {
            let moved = u32::from_le_bytes(*old_end) as usize - start + self.at;
            new.copy_from_slice(&(moved as u32).to_le_bytes());
        }
        self.n += count;
        self.at += end - start;
    }
}

impl Bucket {
    /// An empty bucket with `size` bytes of room after the header, all zero: to be
    /// overwritten whole (see [`BucketPool`]).
    pub(super) fn with_room(size: usize) -> Bucket {
        // Collecting a sized iterator allocates the `Arc` once, at its final size.
        Bucket {
            buf: std::iter::repeat_n(0u8, HEADER + size).collect(),
        }
    }

    pub fn len(&self) -> usize {
        u64::from_le_bytes(self.buf.as_chunks::<HEADER>().0[0]) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arrays, after the header.
    fn body(&self) -> &[u8] {
        &self.buf[HEADER..]
    }

    fn parts(&self) -> Parts<'_> {
        let len = self.len();
        let (pairs, rest) = self.body().split_at(len * PAIR_BYTES);
        let (ends, data) = rest.split_at(len * ENDS_BYTES);
        Parts {
            pairs: pairs.as_chunks().0,
            ends: ends.as_chunks().0,
            data,
        }
    }

    pub fn entry(&self, i: usize) -> Entry<'_> {
        let p = self.parts();
        Entry {
            key_hash: Hash(*p.key_hash(i)),
            value_hash: Hash(*p.value_hash(i)),
            key: p.key(i),
            value: p.value(i),
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        (0..self.len()).map(|i| self.entry(i))
    }

    /// The `(key_hash, value_hash)` pairs, sorted: what the bucket hash and proofs cover.
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = (Hash, Hash)> + '_ {
        let p = self.parts();
        (0..p.len()).map(move |i| (Hash(*p.key_hash(i)), Hash(*p.value_hash(i))))
    }

    /// Bytes of keys and values (what [`MAX_BUCKET_BYTES`] bounds, with the hashes).
    pub fn size(&self) -> usize {
        self.buf.len() - HEADER
    }

    /// The value of `key`, whose hash the caller has already computed (it also picked the
    /// bucket with it).
    pub fn get(&self, key_hash: &Hash, key: &[u8]) -> Option<&[u8]> {
        let p = self.parts();
        p.position(key_hash, key).ok().map(|i| p.value(i))
    }

    /// Sets (`Some`) or deletes (`None`) `key`; returns whether the bucket changed. For tests:
    /// the store changes a bucket once per block, with all its changes ([`Bucket::with_changes`]).
    #[cfg(test)]
    pub(crate) fn set(&mut self, key_hash: Hash, key: &[u8], value: Option<&[u8]>) -> bool {
        match self.with_changes(&[(key_hash, key, value)], &mut BucketPool::default()) {
            Some(changed) => {
                *self = changed;
                true
            }
            None => false,
        }
    }

    /// This bucket with `changes` applied (`(key hash, key, new value or None to delete)`,
    /// sorted by `(key hash, key)`, each key once), or `None` if none of them changes it.
    ///
    /// A first pass sizes the result (and finds out whether anything changes, allocating
    /// nothing if not); a second merges into one bucket of exactly that size, taken from
    /// `pool` when it holds one.
    pub fn with_changes(
        &self,
        changes: &[EntryChange<'_>],
        pool: &mut BucketPool,
    ) -> Option<Bucket> {
        debug_assert!(changes
            .windows(2)
            .all(|w| (&w[0].0, w[0].1) < (&w[1].0, w[1].1)));
        let old = self.parts();
        let (mut len, mut data_len, mut changed) = (old.len(), old.data.len(), false);
        let mut from = 0;
        for (kh, k, v) in changes {
            let at = old.position_from(from, kh, k);
            from = match at {
                Ok(i) => i + 1,
                Err(i) => i,
            };
            match (at, v) {
                (Ok(i), Some(v)) if *v == old.value(i) => {}
                (Ok(i), Some(v)) => {
                    data_len = data_len + v.len() - old.value(i).len();
                    changed = true;
                }
                (Ok(i), None) => {
                    len -= 1;
                    data_len -= old.key(i).len() + old.value(i).len();
                    changed = true;
                }
                (Err(_), Some(v)) => {
                    len += 1;
                    data_len += k.len() + v.len();
                    changed = true;
                }
                (Err(_), None) => {}
            }
        }
        if !changed {
            return None;
        }
        let mut bucket = pool.take(len * (PAIR_BYTES + ENDS_BYTES) + data_len);
        let buf = bucket
            .buffer_mut()
            .expect("the pool hands out unshared buckets");
        let (header, body) = buf.split_at_mut(HEADER);
        header.copy_from_slice(&(len as u64).to_le_bytes());
        let mut out = BucketWriter::new(body, len);
        // The unchanged entries between two changes are copied as one run: most of a bucket,
        // as a block changes one or two entries of each it touches. Each position is found
        // again, from the last, over the entries its run copies anyway: keeping the sizing
        // pass's positions would take a buffer per bucket.
        let mut i = 0;
        for (kh, k, v) in changes {
            let at = old.position_from(i, kh, k);
            let (Ok(p) | Err(p)) = at;
            out.copy_run(&old, i, p);
            i = p;
            match (at, v) {
                (Ok(_), Some(v)) if *v == old.value(i) => out.copy_run(&old, i, i + 1),
                (Ok(_), Some(v)) => out.push(old.key_hash(i), &Hash::of(v).0, k, v),
                (Ok(_), None) => {}
                (Err(_), Some(v)) => {
                    out.push(&kh.0, &Hash::of(v).0, k, v);
                    continue;
                }
                (Err(_), None) => continue,
            }
            i += 1;
        }
        out.copy_run(&old, i, old.len());
        // Every byte is written (a pooled buffer holds another bucket's bytes): the sizing
        // pass and the merge agree whenever `changes` are sorted and unique, as required.
        assert_eq!(
            (out.n, out.at),
            (len, data_len),
            "changes not sorted or not unique"
        );
        Some(bucket)
    }

    /// The whole buffer, header included, if no one else shares this bucket.
    pub(super) fn buffer_mut(&mut self) -> Option<&mut [u8]> {
        Arc::get_mut(&mut self.buf)
    }

    /// The bucket hash: SHA-256 over the sorted `(key_hash || value_hash)` pairs, or
    /// [`Hash::ZERO`] for an empty bucket.
    pub fn hash(&self) -> Hash {
        match self.len() {
            0 => Hash::ZERO,
            n => Hash::of(&self.body()[..n * PAIR_BYTES]),
        }
    }

    /// Rough heap footprint, for bounding caches of decoded buckets: the buffer, the `Arc`'s
    /// two counts and the allocator's header.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.buf.len() + 16 + 16
    }

    /// The bytes stored for this bucket. Only this node reads them back; what other nodes see
    /// is the bucket hash, so this layout is not consensus-critical.
    pub fn encode(&self) -> Vec<u8> {
        // The codec's layout of a struct of three byte strings (u64 LE length, then the bytes),
        // written by hand into one exactly sized buffer; a test pins it to the codec's output.
        let p = self.parts();
        let mut out = Vec::with_capacity(24 + self.size());
        for part in [p.pairs.as_flattened(), p.ends.as_flattened(), p.data] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Decodes stored bytes, checking everything lookups rely on (layout and order); cheap
    /// enough for every read. [`Bucket::verify`] re-hashes keys and values, done on open.
    pub fn decode(bytes: &[u8]) -> Result<Bucket, BucketError> {
        let (pairs, ends, data) = split_stored(bytes)?;
        if pairs.is_empty() {
            return Err(BucketError::StoredEmpty);
        }
        let (pair_array, tail) = pairs.as_chunks::<PAIR_BYTES>();
        if !tail.is_empty() {
            return Err(BucketError::Layout(
                "pair array is not a whole number of pairs",
            ));
        }
        let n = pair_array.len();
        if ends.len() != n * ENDS_BYTES {
            return Err(BucketError::Layout(
                "offset array does not match the pair count",
            ));
        }
        if data.len() > u32::MAX as usize {
            return Err(BucketError::Layout("data over 4 GiB"));
        }
        let parts = Parts {
            pairs: pair_array,
            ends: ends.as_chunks().0,
            data,
        };
        let mut prev_end = 0;
        for j in 0..2 * n {
            let end = parts.end(j);
            if end < prev_end {
                return Err(BucketError::Layout("offsets go backwards"));
            }
            prev_end = end;
        }
        if prev_end != data.len() {
            return Err(BucketError::Layout("offsets do not cover the data exactly"));
        }
        for i in 1..n {
            let ord = cmp_entry(
                (parts.key_hash(i - 1), parts.key(i - 1)),
                (parts.key_hash(i), parts.key(i)),
            );
            if ord != std::cmp::Ordering::Less {
                return Err(BucketError::Unsorted { index: i });
            }
        }
        let mut bucket = Bucket::with_room(pairs.len() + ends.len() + data.len());
        let buf = bucket.buffer_mut().expect("a new bucket is unshared");
        buf[..HEADER].copy_from_slice(&(n as u64).to_le_bytes());
        let mut at = HEADER;
        for part in [pairs, ends, data] {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(bucket)
    }

    /// Checks every stored hash against the key or value it claims to hash, and that every
    /// entry belongs in bucket `index`.
    pub fn verify(&self, index: u32, depth: u32) -> Result<(), BucketError> {
        for (i, e) in self.entries().enumerate() {
            if Hash::of(e.key) != e.key_hash {
                return Err(BucketError::KeyHash { index: i });
            }
            if Hash::of(e.value) != e.value_hash {
                return Err(BucketError::ValueHash { index: i });
            }
            let actual = bucket_of(&e.key_hash, depth);
            if actual != index {
                return Err(BucketError::Misplaced { index: i, actual });
            }
        }
        Ok(())
    }
}

/// Hash of a sorted pair list, as proof verification computes it. [`Bucket::hash`] computes
/// the same in one call over its contiguous pairs (a proptest pins the two together).
pub fn pairs_hash<'a>(pairs: impl IntoIterator<Item = (&'a Hash, &'a Hash)>) -> Hash {
    let mut h = Sha256::new();
    let mut any = false;
    for (k, v) in pairs {
        h.update(k.0);
        h.update(v.0);
        any = true;
    }
    if any {
        Hash(h.finalize().into())
    } else {
        Hash::ZERO
    }
}

/// The Merkle tree over bucket hashes, in heap layout: `nodes[1]` is the root, the children of
/// `nodes[i]` are `nodes[2i]` and `nodes[2i + 1]`, and bucket `b`'s hash is
/// `nodes[num_buckets + b]`. `nodes[0]` is unused.
///
/// Kept whole in memory (4 MiB at the default 65,536 buckets) so that updating a block's
/// buckets needs no store reads for inner nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketTree {
    depth: u32,
    nodes: Vec<Hash>,
}

/// New hashes for the tree nodes a set of bucket changes touches, computed against one version
/// of the tree without modifying it.
///
/// Proposers and validators need the new root before the block is decided; the node hashes are
/// kept so committing the block installs them without hashing anything again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeUpdate {
    base_root: Hash,
    root: Hash,
    nodes: Vec<(u32, Hash)>,
}

impl TreeUpdate {
    /// Root of the tree this update was computed against.
    pub fn base_root(&self) -> Hash {
        self.base_root
    }

    /// Root after the update.
    pub fn root(&self) -> Hash {
        self.root
    }
}

impl BucketTree {
    /// The tree of an empty state: every bucket hash is zero.
    pub fn empty(num_buckets: u64) -> Result<BucketTree, CommitmentError> {
        let depth = depth(num_buckets)?;
        let n = num_buckets as usize;
        let mut nodes = vec![Hash::ZERO; 2 * n];
        // Every node on one level of an all-empty tree has the same hash.
        let mut level_hash = Hash::ZERO;
        let mut width = n;
        while width > 1 {
            level_hash = Hash::node(&level_hash, &level_hash);
            width /= 2;
            nodes[width..2 * width].fill(level_hash);
        }
        Ok(BucketTree { depth, nodes })
    }

    /// Builds the whole tree from every bucket hash, in bucket order.
    pub fn from_leaves(leaves: &[Hash]) -> Result<BucketTree, CommitmentError> {
        let depth = depth(leaves.len() as u64)?;
        let n = leaves.len();
        let mut nodes = vec![Hash::ZERO; 2 * n];
        nodes[n..].copy_from_slice(leaves);
        for i in (1..n).rev() {
            nodes[i] = Hash::node(&nodes[2 * i], &nodes[2 * i + 1]);
        }
        Ok(BucketTree { depth, nodes })
    }

    pub fn root(&self) -> Hash {
        self.nodes[1]
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    pub fn num_buckets(&self) -> u64 {
        1u64 << self.depth
    }

    /// Bucket of `key_hash` in this tree.
    pub fn bucket_of(&self, key_hash: &Hash) -> u32 {
        bucket_of(key_hash, self.depth)
    }

    /// Hash of bucket `b`. Panics if `b` is out of range (a caller bug, not bad input: bucket
    /// indices come from [`BucketTree::bucket_of`]).
    pub fn leaf(&self, b: u32) -> Hash {
        self.nodes[self.nodes.len() / 2 + b as usize]
    }

    /// Sibling hashes from bucket `b`'s leaf up to (not including) the root, bottom first.
    pub fn siblings(&self, b: u32) -> Vec<Hash> {
        let mut idx = self.nodes.len() / 2 + b as usize;
        let mut out = Vec::with_capacity(self.depth as usize);
        while idx > 1 {
            out.push(self.nodes[idx ^ 1]);
            idx /= 2;
        }
        out
    }

    /// Computes the new node hashes for new bucket hashes `leaves` (`(bucket, hash)`, sorted
    /// by bucket, each bucket once; callers group changes by bucket anyway, so they come that
    /// way for free). Each touched node is hashed exactly once, level by level.
    ///
    /// Unsorted or repeated input is tolerated (sorted here, the last hash for a bucket wins),
    /// so a caller bug cannot produce a wrong root.
    pub fn plan(&self, leaves: &[(u32, Hash)]) -> TreeUpdate {
        let n = self.nodes.len() / 2;
        let mut level: Vec<(usize, Hash)> =
            leaves.iter().map(|(b, h)| (n + *b as usize, *h)).collect();
        if !level.windows(2).all(|w| w[0].0 < w[1].0) {
            level.reverse();
            level.sort_by_key(|(i, _)| *i); // stable: the last input for a bucket comes first
            level.dedup_by_key(|(i, _)| *i);
        }
        let mut nodes = Vec::with_capacity(level.len() * 2 + self.depth as usize);
        let mut root = self.root();
        while let Some(&(first, _)) = level.first() {
            if first == 1 {
                root = level[0].1;
                nodes.push((1, root));
                break;
            }
            let mut next = Vec::with_capacity(level.len().div_ceil(2));
            let mut i = 0;
            while i < level.len() {
                let (idx, h) = level[i];
                let (left, right) = if idx % 2 == 0 {
                    match level.get(i + 1) {
                        Some(&(sib, sh)) if sib == idx + 1 => {
                            i += 1;
                            (h, sh)
                        }
                        _ => (h, self.nodes[idx + 1]),
                    }
                } else {
                    (self.nodes[idx - 1], h)
                };
                i += 1;
                next.push((idx / 2, Hash::node(&left, &right)));
            }
            nodes.extend(level.iter().map(|&(i, h)| (i as u32, h)));
            level = next;
        }
        TreeUpdate {
            base_root: self.root(),
            root,
            nodes,
        }
    }

    /// Installs an update computed by [`BucketTree::plan`] on this same tree version. Returns
    /// false (and changes nothing) if the tree has moved on since.
    pub fn apply(&mut self, update: &TreeUpdate) -> bool {
        if update.base_root != self.root() {
            return false;
        }
        for &(i, h) in &update.nodes {
            self.nodes[i as usize] = h;
        }
        true
    }

    /// Sets bucket hashes and updates their paths.
    pub fn update(&mut self, leaves: &[(u32, Hash)]) {
        let plan = self.plan(leaves);
        self.apply(&plan);
    }
}

/// State root of a whole state built from scratch. The store never needs this (it updates
/// incrementally); genesis tooling and tests use it as the reference.
pub fn state_root<'a>(
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    num_buckets: u64,
) -> Result<Hash, CommitmentError> {
    let depth = depth(num_buckets)?;
    // By bucket, then as a bucket orders its entries; of a key given twice, the last value.
    let mut sorted: BTreeMap<(u32, Hash, &[u8]), &[u8]> = BTreeMap::new();
    for (k, v) in entries {
        let kh = Hash::of(k);
        sorted.insert((bucket_of(&kh, depth), kh, k), v);
    }
    let mut leaves = vec![Hash::ZERO; num_buckets as usize];
    let mut changes: Vec<EntryChange<'_>> = Vec::new();
    let mut pool = BucketPool::default();
    let mut entries = sorted.into_iter().peekable();
    while let Some(((b, kh, k), v)) = entries.next() {
        changes.push((kh, k, Some(v)));
        if entries.peek().is_none_or(|((next, _, _), _)| *next != b) {
            if let Some(bucket) = Bucket::default().with_changes(&changes, &mut pool) {
                leaves[b as usize] = bucket.hash();
            }
            changes.clear();
        }
    }
    Ok(BucketTree::from_leaves(&leaves)?.root())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    /// A copy of `b` with its arrays edited by `f` (entry count unchanged).
    fn edited(b: &Bucket, f: impl FnOnce(&mut [u8])) -> Bucket {
        let mut buf = b.buf.to_vec();
        f(&mut buf[HEADER..]);
        Bucket { buf: buf.into() }
    }

    /// A byte string that bincode writes as one length-prefixed copy rather than byte by byte.
    struct Blob(Vec<u8>);

    impl Serialize for Blob {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Blob {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Blob;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                    Ok(Blob(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                    Ok(Blob(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    /// The stored form of a bucket as a codec type: the three arrays of [`Bucket`], offsets as
    /// u32 LE. `Bucket::encode` and `split_stored` implement exactly this layout by hand.
    #[derive(Serialize, Deserialize)]
    struct StoredBucket {
        pairs: Blob,
        ends: Blob,
        data: Blob,
    }

    /// An independent, deliberately naive root: concatenate sorted pairs per bucket, then fold
    /// the leaf level pairwise until one hash is left.
    fn naive_root(state: &BTreeMap<Vec<u8>, Vec<u8>>, num_buckets: u64) -> Hash {
        let bits = num_buckets.trailing_zeros();
        let mut per_bucket: Vec<Vec<(Hash, Hash)>> = vec![Vec::new(); num_buckets as usize];
        for (k, v) in state {
            let kh = Hash::of(k);
            let top = u64::from_be_bytes(kh.0[..8].try_into().expect("8 bytes"));
            per_bucket[(top >> (64 - bits)) as usize].push((kh, Hash::of(v)));
        }
        let mut level: Vec<Hash> = per_bucket
            .into_iter()
            .map(|mut pairs| {
                if pairs.is_empty() {
                    return Hash::ZERO;
                }
                pairs.sort();
                let mut buf = Vec::new();
                for (k, v) in pairs {
                    buf.extend_from_slice(&k.0);
                    buf.extend_from_slice(&v.0);
                }
                Hash::of(&buf)
            })
            .collect();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| Hash::node(&p[0], &p[1])).collect();
        }
        level[0]
    }

    /// Incremental state kept the way the store keeps it: buckets plus the tree, updated per
    /// batch of changes.
    struct Incremental {
        tree: BucketTree,
        buckets: BTreeMap<u32, Bucket>,
    }

    impl Incremental {
        fn new(n: u64) -> Self {
            Incremental {
                tree: BucketTree::empty(n).expect("valid count"),
                buckets: BTreeMap::new(),
            }
        }

        fn apply(&mut self, changes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
            let mut leaves = BTreeMap::new();
            for (k, v) in changes {
                let kh = Hash::of(k);
                let b = self.tree.bucket_of(&kh);
                let bucket = self.buckets.entry(b).or_default();
                bucket.set(kh, k, v.as_deref());
                leaves.insert(b, bucket.hash());
            }
            self.tree.update(&leaves.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn bucket_index_is_top_bits() {
        let kh = Hash::of(b"acct/x");
        let expected = u16::from_be_bytes([kh.0[0], kh.0[1]]) as u32;
        assert_eq!(bucket_of(&kh, 16), expected);
        assert_eq!(bucket_of(&kh, 1), (kh.0[0] >> 7) as u32);
        assert_eq!(bucket_of(&kh, 20), (expected << 4) | (kh.0[2] >> 4) as u32);
        for bad in [0, 1, 3, 6, 1 << 21, u64::MAX] {
            assert_eq!(depth(bad), Err(CommitmentError::BadBucketCount(bad)));
        }
        assert_eq!(depth(2), Ok(1));
        assert_eq!(depth(1 << 20), Ok(20));
    }

    #[test]
    fn empty_tree_matches_from_leaves() {
        for n in [2u64, 4, 1024] {
            let empty = BucketTree::empty(n).expect("valid");
            let built = BucketTree::from_leaves(&vec![Hash::ZERO; n as usize]).expect("valid");
            assert_eq!(empty, built);
            assert_eq!(empty.root(), naive_root(&BTreeMap::new(), n));
        }
        assert!(BucketTree::from_leaves(&[Hash::ZERO; 3]).is_err());
    }

    #[test]
    fn bucket_hash_is_over_sorted_pairs() {
        let mut b = Bucket::default();
        assert_eq!(b.hash(), Hash::ZERO);
        let entries: [(&[u8], &[u8]); 3] = [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")];
        for (k, v) in entries {
            assert!(b.set(Hash::of(k), k, Some(v)));
        }
        assert!(
            !b.set(Hash::of(b"a"), b"a", Some(b"1")),
            "same value: no change"
        );
        assert!(
            !b.set(Hash::of(b"zz"), b"zz", None),
            "deleting absent: no change"
        );
        let mut pairs: Vec<(Hash, Hash)> = entries
            .iter()
            .map(|(k, v)| (Hash::of(k), Hash::of(v)))
            .collect();
        pairs.sort();
        let mut buf = Vec::new();
        for (k, v) in &pairs {
            buf.extend_from_slice(&k.0);
            buf.extend_from_slice(&v.0);
        }
        assert_eq!(b.hash(), Hash::of(&buf));
        assert_eq!(b.pairs().collect::<Vec<_>>(), pairs);
        assert_eq!(b.get(&Hash::of(b"b"), b"b"), Some(&b"2"[..]));
        assert_eq!(Bucket::decode(&b.encode()), Ok(b.clone()));
    }

    #[test]
    fn lookups_find_every_key_in_small_and_large_buckets() {
        for n in [1usize, LINEAR_SEARCH, LINEAR_SEARCH + 1, 300] {
            let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
            let mut changes: Vec<EntryChange<'_>> = keys
                .iter()
                .map(|k| (Hash::of(k), k.as_slice(), Some(k.as_slice())))
                .collect();
            changes.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            let b = Bucket::default()
                .with_changes(&changes, &mut BucketPool::default())
                .expect("new entries");
            assert_eq!(b.len(), n);
            for k in &keys {
                assert_eq!(b.get(&Hash::of(k), k), Some(k.as_slice()), "{n} entries");
                let absent = [k.as_slice(), b"x"].concat();
                assert_eq!(b.get(&Hash::of(&absent), &absent), None, "{n} entries");
            }
        }
    }

    #[test]
    fn encoding_is_the_codec_layout() {
        let mut b = Bucket::default();
        for k in [&b"a"[..], b"bb", b"ccc"] {
            b.set(Hash::of(k), k, Some(b"value"));
        }
        let mut pairs = Vec::new();
        for (k, v) in b.pairs() {
            pairs.extend_from_slice(&k.0);
            pairs.extend_from_slice(&v.0);
        }
        let (mut ends, mut data) = (Vec::new(), Vec::new());
        for e in b.entries() {
            data.extend_from_slice(e.key);
            ends.extend_from_slice(&(data.len() as u32).to_le_bytes());
            data.extend_from_slice(e.value);
            ends.extend_from_slice(&(data.len() as u32).to_le_bytes());
        }
        let via_codec = codec::encode(&StoredBucket {
            pairs: Blob(pairs),
            ends: Blob(ends),
            data: Blob(data),
        });
        assert_eq!(b.encode(), via_codec);
    }

    proptest! {
        /// The borrowing splitter accepts exactly what the codec accepts, with the same parts.
        #[test]
        fn split_agrees_with_the_codec(
            parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 3),
            cut in any::<prop::sample::Index>(),
            extra in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let whole = codec::encode(&StoredBucket {
                pairs: Blob(parts[0].clone()),
                ends: Blob(parts[1].clone()),
                data: Blob(parts[2].clone()),
            });
            let (a, b, c) = split_stored(&whole).expect("valid framing");
            prop_assert_eq!((a, b, c), (&parts[0][..], &parts[1][..], &parts[2][..]));
            let mut variants = vec![whole[..cut.index(whole.len())].to_vec()];
            let mut longer = whole.clone();
            longer.extend_from_slice(&extra);
            variants.push(longer);
            for bytes in variants {
                let ours = split_stored(&bytes).map(|(a, b, c)| (a.to_vec(), b.to_vec(), c.to_vec()));
                let theirs = codec::decode::<StoredBucket>(&bytes, codec::MAX_DECODE_BYTES)
                    .map(|s| (s.pairs.0, s.ends.0, s.data.0));
                prop_assert_eq!(ours.is_ok(), theirs.is_ok());
                if let (Ok(x), Ok(y)) = (ours, theirs) {
                    prop_assert_eq!(x, y);
                }
            }
        }
    }

    #[test]
    fn decode_and_verify_catch_corruption() {
        let mut b = Bucket::default();
        for k in [&b"a"[..], b"b", b"c"] {
            b.set(Hash::of(k), k, Some(b"v"));
        }
        assert_eq!(
            Bucket::decode(&Bucket::default().encode()),
            Err(BucketError::StoredEmpty)
        );
        let n = b.len();
        let swapped = edited(&b, |body| body[..2 * PAIR_BYTES].rotate_left(PAIR_BYTES));
        assert!(matches!(
            Bucket::decode(&swapped.encode()),
            Err(BucketError::Unsorted { .. })
        ));
        for (i, bad) in [(1usize, 0u32), (2, u32::MAX)] {
            let at = n * PAIR_BYTES + i * ENDS_BYTES;
            let broken = edited(&b, |body| {
                body[at..at + 4].copy_from_slice(&bad.to_le_bytes());
                body[at + 4..at + 8].copy_from_slice(&bad.to_le_bytes());
            });
            assert!(matches!(
                Bucket::decode(&broken.encode()),
                Err(BucketError::Layout(_))
            ));
        }
        let mut longer = b.buf.to_vec();
        longer.push(0);
        let short = Bucket { buf: longer.into() };
        assert!(matches!(
            Bucket::decode(&short.encode()),
            Err(BucketError::Layout(_))
        ));
        let mut bytes = b.encode();
        bytes.pop();
        assert!(matches!(Bucket::decode(&bytes), Err(BucketError::Codec(_))));

        // With one bucket bit, every key lands in bucket 0 or 1; verify it per bucket.
        let single: Vec<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|k| (Hash::of(k.as_bytes()), k.as_bytes()))
            .filter(|(kh, _)| bucket_of(kh, 1) == 0)
            .collect();
        let mut zero = Bucket::default();
        for (kh, k) in &single {
            zero.set(*kh, k, Some(b"v"));
        }
        assert_eq!(zero.verify(0, 1), Ok(()));
        assert!(matches!(
            zero.verify(1, 1),
            Err(BucketError::Misplaced { .. })
        ));
        let bad_value = edited(&zero, |body| {
            let last = body.len() - 1;
            body[last] = b'w';
        });
        let n = bad_value.len();
        assert_eq!(
            bad_value.verify(0, 1),
            Err(BucketError::ValueHash { index: n - 1 })
        );
        let bad_key = edited(&zero, |body| body[n * (PAIR_BYTES + ENDS_BYTES)] ^= 1);
        assert_eq!(bad_key.verify(0, 1), Err(BucketError::KeyHash { index: 0 }));
    }

    #[test]
    fn siblings_fold_to_root() {
        let mut inc = Incremental::new(8);
        let changes = (0u8..20)
            .map(|i| (vec![i], Some(vec![i, i])))
            .collect::<BTreeMap<_, _>>();
        inc.apply(&changes);
        for b in 0..8u32 {
            let mut h = inc.tree.leaf(b);
            let mut idx = b;
            let sibs = inc.tree.siblings(b);
            assert_eq!(sibs.len(), 3);
            for s in sibs {
                h = if idx % 2 == 0 {
                    Hash::node(&h, &s)
                } else {
                    Hash::node(&s, &h)
                };
                idx /= 2;
            }
            assert_eq!(h, inc.tree.root());
        }
    }

    #[test]
    fn plan_does_not_modify_and_apply_checks_base() {
        let mut t = BucketTree::empty(16).expect("valid");
        let before = t.clone();
        let plan = t.plan(&[(3, Hash::of(b"x")), (4, Hash::of(b"y"))]);
        assert_eq!(t, before);
        assert_eq!(plan.base_root(), before.root());
        assert!(t.apply(&plan));
        assert_eq!(t.root(), plan.root());
        assert!(!t.apply(&plan), "stale plan refused");
        let mut leaves = vec![Hash::ZERO; 16];
        leaves[3] = Hash::of(b"x");
        leaves[4] = Hash::of(b"y");
        assert_eq!(BucketTree::from_leaves(&leaves).expect("valid"), t);
        let noop = t.plan(&[]);
        assert_eq!(noop.root(), t.root());
        // Unsorted, repeated input: sorted, and the last hash for a bucket wins.
        let messy = t.plan(&[
            (9, Hash::of(b"a")),
            (2, Hash::of(b"b")),
            (9, Hash::of(b"c")),
        ]);
        let clean = t.plan(&[(2, Hash::of(b"b")), (9, Hash::of(b"c"))]);
        assert_eq!(messy, clean);
    }

    fn change_batches() -> impl Strategy<Value = Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>> {
        // A small key space, so batches overwrite and delete each other's keys.
        prop::collection::vec(
            prop::collection::btree_map(
                (0u8..48).prop_map(|k| vec![b'k', k]),
                prop::option::weighted(0.75, prop::collection::vec(any::<u8>(), 0..6)),
                0..24,
            ),
            1..8,
        )
    }

    proptest! {
        /// The fast order of key hashes is their bytes' order, also when they share a prefix.
        #[test]
        fn key_hash_order_is_byte_order(a: [u8; 32], mut b: [u8; 32], shared in 0usize..=32) {
            b[..shared].copy_from_slice(&a[..shared]);
            prop_assert_eq!(cmp_key_hash(&a, &b), a.cmp(&b));
        }

        /// One merge pass gives exactly what one `set` per change gives.
        #[test]
        fn with_changes_equals_repeated_set(
            base in prop::collection::btree_map(
                prop::collection::vec(0u8..6, 0..3),
                prop::collection::vec(any::<u8>(), 0..5),
                0..20,
            ),
            batch in prop::collection::btree_map(
                prop::collection::vec(0u8..6, 0..3),
                prop::option::weighted(0.7, prop::collection::vec(0u8..3, 0..3)),
                0..20,
            ),
        ) {
            let mut bucket = Bucket::default();
            for (k, v) in &base {
                bucket.set(Hash::of(k), k, Some(v));
            }
            let mut expected = bucket.clone();
            let mut changed = false;
            for (k, v) in &batch {
                changed |= expected.set(Hash::of(k), k, v.as_deref());
            }
            let mut changes: Vec<EntryChange<'_>> = batch
                .iter()
                .map(|(k, v)| (Hash::of(k), k.as_slice(), v.as_deref()))
                .collect();
            changes.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            // A pooled buffer of the right length, full of another bucket's bytes: every one
            // must be overwritten.
            let mut pool = BucketPool::new(usize::MAX);
            pool.recycle(Bucket {
                buf: vec![0xa5; HEADER + expected.size()].into(),
            });
            match bucket.with_changes(&changes, &mut pool) {
                Some(merged) => {
                    prop_assert!(changed);
                    prop_assert_eq!(merged, expected);
                }
                None => prop_assert!(!changed),
            }
        }

        /// The flat layout behaves as a sorted map, and survives its stored form.
        #[test]
        fn bucket_behaves_as_a_map(
            ops in prop::collection::vec(
                (
                    prop::collection::vec(0u8..4, 0..4),
                    prop::option::weighted(0.7, prop::collection::vec(any::<u8>(), 0..9)),
                ),
                0..60,
            ),
        ) {
            let mut bucket = Bucket::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (k, v) in &ops {
                let changed = bucket.set(Hash::of(k), k, v.as_deref());
                let before = model.get(k).cloned();
                match v {
                    Some(v) => model.insert(k.clone(), v.clone()),
                    None => model.remove(k),
                };
                prop_assert_eq!(changed, before != model.get(k).cloned());
            }
            prop_assert_eq!(bucket.len(), model.len());
            for (k, v) in &model {
                prop_assert_eq!(bucket.get(&Hash::of(k), k), Some(v.as_slice()));
            }
            let mut sorted: Vec<(Hash, Hash, Vec<u8>, Vec<u8>)> = model
                .iter()
                .map(|(k, v)| (Hash::of(k), Hash::of(v), k.clone(), v.clone()))
                .collect();
            sorted.sort();
            let entries: Vec<(Hash, Hash, Vec<u8>, Vec<u8>)> = bucket
                .entries()
                .map(|e| (e.key_hash, e.value_hash, e.key.to_vec(), e.value.to_vec()))
                .collect();
            prop_assert_eq!(entries, sorted);
            let pairs: Vec<(Hash, Hash)> = bucket.pairs().collect();
            prop_assert_eq!(bucket.hash(), pairs_hash(pairs.iter().map(|(k, v)| (k, v))));
            if bucket.is_empty() {
                prop_assert_eq!(Bucket::decode(&bucket.encode()), Err(BucketError::StoredEmpty));
            } else {
                prop_assert_eq!(Bucket::decode(&bucket.encode()), Ok(bucket.clone()));
            }
        }

        #[test]
        fn incremental_root_equals_root_from_scratch(
            batches in change_batches(),
            bits in 1u32..6,
        ) {
            let n = 1u64 << bits;
            let mut inc = Incremental::new(n);
            let mut state = BTreeMap::new();
            for batch in &batches {
                inc.apply(batch);
                for (k, v) in batch {
                    match v {
                        Some(v) => state.insert(k.clone(), v.clone()),
                        None => state.remove(k),
                    };
                }
                let expected = naive_root(&state, n);
                prop_assert_eq!(inc.tree.root(), expected);
                let from_scratch = state_root(
                    state.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
                    n,
                ).expect("valid count");
                prop_assert_eq!(from_scratch, expected);
            }
        }

        #[test]
        fn insertion_order_does_not_matter(
            entries in prop::collection::btree_map(
                prop::collection::vec(any::<u8>(), 0..8),
                prop::collection::vec(any::<u8>(), 0..8),
                0..40,
            ),
            seed in any::<u64>(),
        ) {
            let n = 8;
            let mut forward = Incremental::new(n);
            for (k, v) in &entries {
                forward.apply(&[(k.clone(), Some(v.clone()))].into());
            }
            // Another order: rotate by a seed-chosen amount, one entry per batch.
            let list: Vec<_> = entries.iter().collect();
            let mut other = Incremental::new(n);
            for i in 0..list.len() {
                let (k, v) = list[(i + seed as usize % list.len().max(1)) % list.len()];
                other.apply(&[(k.clone(), Some(v.clone()))].into());
            }
            prop_assert_eq!(forward.tree.root(), other.tree.root());
            prop_assert_eq!(forward.tree.root(), naive_root(&entries, n));
        }
    }
}
