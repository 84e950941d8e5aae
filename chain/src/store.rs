//! The chain store (SPEC §4a): committed blocks, their certificates, the transaction index and
//! the state with its bucketed Merkle commitment, over any [`KvStore`].
//!
//! Layout, all in one key-value namespace so a block lands in one atomic batch:
//!
//! | key | value |
//! |---|---|
//! | `s/<bucket u32 BE>` | the bucket's entries ([`Bucket`]); absent = empty bucket |
//! | `j/<height u64 BE><chunk u32 BE>` | that block's state changes (in 4 KiB chunks), until every bucket they touch is written |
//! | `b/<height u64 BE>` | the block |
//! | `h/<block hash>` | its height, u64 BE |
//! | `c/<height u64 BE>` | the certificate that decided that height |
//! | `x/<bucket u16 BE><chunk u32 BE>`, `x/n<group u8>` | the transaction index, grouped (see `tx_index`) |
//! | `m/head` | head height, u64 BE |
//! | `m/genesis_hash` | the genesis hash the store was created for |
//!
//! "Nothing committed is ever lost": [`ChainStore::commit_block`] writes a block and everything
//! it changes in one batch and flushes before it returns, and [`ChainStore::open`] refuses a
//! store whose head block or state does not check out, rather than run on it.

mod cache;
mod journal;
pub mod kv;
mod tx_index;

pub use kv::{KvError, KvStore, MemKv, SledConfig, SledKv, WriteBatch};

use crate::block::{Block, CommitCertificate, Header};
use crate::codec;
use crate::genesis::{Genesis, GenesisError};
use crate::hash::Hash;
use crate::parallel;
use crate::state::commitment::{self, Bucket, BucketTree, CommitmentError, TreeUpdate};
use crate::state::keys as state_keys;
use crate::state::pool::BucketPool;
use crate::state::proof::StateProof;
use crate::state::{StateChanges, StateError, StateReader};
use crate::validator_set::ValidatorSet;
use cache::BucketCache;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use tx_index::{IndexUpdate, TxIndex};

/// What every refusal to open tells the operator to do.
const RESYNC: &str = "the store cannot be trusted: stop the node, delete its data directory \
                      and start it again to resync from peers";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Kv(#[from] KvError),
    #[error("store entry {key} is corrupt: {reason}; {RESYNC}")]
    Corrupt { key: String, reason: String },
    #[error(
        "the data directory holds the chain with genesis hash {stored}, but the configured \
         genesis hashes to {expected}; use that chain's genesis file, or delete the data \
         directory and start again to resync this chain from peers"
    )]
    GenesisMismatch { stored: Hash, expected: Hash },
    #[error("the store's head is height {height}, but that block is missing; {RESYNC}")]
    HeadBlockMissing { height: u64 },
    #[error(
        "the stored state hashes to {computed}, but head block {height} commits to \
         {header_root}; {RESYNC}"
    )]
    StateRootMismatch {
        height: u64,
        header_root: Hash,
        computed: Hash,
    },
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    #[error("state commitment: {0}")]
    Commitment(#[from] CommitmentError),
    #[error("block is for chain {got:?}, the store holds chain {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("block height {got} does not follow the head (expected {expected})")]
    WrongHeight { expected: u64, got: u64 },
    #[error("block's parent is {got}, but the head is {expected}")]
    WrongParent { expected: Hash, got: Hash },
    #[error(
        "state changes were prepared on state root {prepared_on}, but the store is now at \
         {current}; prepare them again"
    )]
    StalePrepared { prepared_on: Hash, current: Hash },
    #[error("block {height} commits to state root {header}, but its changes give {prepared}")]
    BlockStateRoot {
        height: u64,
        header: Hash,
        prepared: Hash,
    },
    #[error(
        "certificate is for height {cert_height} block {cert_hash}, not height {height} \
         block {hash}"
    )]
    CertificateMismatch {
        height: u64,
        hash: Hash,
        cert_height: u64,
        cert_hash: Hash,
    },
    #[error(
        "state bucket {bucket} would grow to {bytes} bytes, over the {max}-byte limit",
        max = commitment::MAX_BUCKET_BYTES
    )]
    BucketTooLarge { bucket: u32, bytes: usize },
    #[error(
        "an earlier commit failed to write ({0}); memory and disk may disagree: restart the \
         node"
    )]
    Poisoned(String),
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> StateError {
        match e {
            StoreError::Corrupt { key, reason } => StateError::Corrupt { key, reason },
            other => StateError::Storage(other.to_string()),
        }
    }
}

/// Record keys. Heights are big-endian so blocks sort by height.
mod key {
    use crate::hash::Hash;

    pub const HEAD: &[u8] = b"m/head";
    pub const GENESIS: &[u8] = b"m/genesis_hash";
    pub const BUCKET_PREFIX: &[u8] = b"s/";
    pub const JOURNAL_PREFIX: &[u8] = b"j/";
    pub const VALIDATORS_PREFIX: &[u8] = b"v/";

    fn with<const N: usize>(prefix: &[u8; 2], rest: &[u8]) -> [u8; N] {
        let mut k = [0u8; N];
        k[..2].copy_from_slice(prefix);
        k[2..].copy_from_slice(rest);
        k
    }
    pub fn bucket(b: u32) -> [u8; 6] {
        with(b"s/", &b.to_be_bytes())
    }
    /// Piece `chunk` of block `height` (see [`super::VALUE_CHUNK`]).
    pub fn block(height: u64, chunk: u32) -> [u8; 14] {
        with(b"b/", &height_chunk(height, chunk))
    }
    /// What every piece of block `height` starts with.
    pub fn block_pieces(height: u64) -> [u8; 10] {
        with(b"b/", &height.to_be_bytes())
    }
    pub fn cert(height: u64) -> [u8; 10] {
        with(b"c/", &height.to_be_bytes())
    }
    fn height_chunk(height: u64, chunk: u32) -> [u8; 12] {
        let mut rest = [0u8; 12];
        rest[..8].copy_from_slice(&height.to_be_bytes());
        rest[8..].copy_from_slice(&chunk.to_be_bytes());
        rest
    }
    pub fn journal(height: u64, chunk: u32) -> [u8; 14] {
        with(b"j/", &height_chunk(height, chunk))
    }
    /// Height and chunk of a `j/` key, if well formed.
    pub fn parse_journal(k: &[u8]) -> Option<(u64, u32)> {
        let rest: [u8; 12] = k.strip_prefix(JOURNAL_PREFIX)?.try_into().ok()?;
        let (h, c) = rest.split_at(8);
        Some((
            u64::from_be_bytes(h.try_into().ok()?),
            u32::from_be_bytes(c.try_into().ok()?),
        ))
    }
    /// The validator set that votes from `height + 1` on (written when block `height`
    /// changes it, and at genesis).
    pub fn validators(height: u64) -> [u8; 10] {
        with(b"v/", &height.to_be_bytes())
    }
    pub fn parse_validators(k: &[u8]) -> Option<u64> {
        let rest: [u8; 8] = k.strip_prefix(VALIDATORS_PREFIX)?.try_into().ok()?;
        Some(u64::from_be_bytes(rest))
    }
    pub fn block_hash(hash: &Hash) -> [u8; 34] {
        with(b"h/", &hash.0)
    }
    /// Bucket index of a `s/` key, if well formed.
    pub fn parse_bucket(k: &[u8]) -> Option<u32> {
        let rest: [u8; 4] = k.strip_prefix(BUCKET_PREFIX)?.try_into().ok()?;
        Some(u32::from_be_bytes(rest))
    }
    pub fn display(k: &[u8]) -> String {
        match k.split_first_chunk::<2>() {
            Some((p, rest)) if p[1] == b'/' && p[0].is_ascii_lowercase() => {
                let prefix = p[0] as char;
                match (prefix, rest.len()) {
                    ('s', 4) => format!(
                        "s/{}",
                        u32::from_be_bytes(rest.try_into().unwrap_or_default())
                    ),
                    ('b' | 'c' | 'v', 8) => {
                        format!(
                            "{prefix}/{}",
                            u64::from_be_bytes(rest.try_into().unwrap_or_default())
                        )
                    }
                    ('x', 6) => format!(
                        "x/{}/{}",
                        u16::from_be_bytes(rest[..2].try_into().unwrap_or_default()),
                        u32::from_be_bytes(rest[2..].try_into().unwrap_or_default())
                    ),
                    ('b' | 'j', 12) => format!(
                        "{prefix}/{}/{}",
                        u64::from_be_bytes(rest[..8].try_into().unwrap_or_default()),
                        u32::from_be_bytes(rest[8..].try_into().unwrap_or_default())
                    ),
                    _ if rest.iter().all(u8::is_ascii_graphic) => {
                        String::from_utf8_lossy(k).into_owned()
                    }
                    _ => format!("{prefix}/0x{}", hex::encode(rest)),
                }
            }
            _ => format!("0x{}", hex::encode(k)),
        }
    }
}

/// Puts `bytes` as pieces of [`VALUE_CHUNK`], piece `c` under `key(c)`.
fn put_pieces<const N: usize>(batch: &mut WriteBatch, bytes: &[u8], key: impl Fn(u32) -> [u8; N]) {
    for (c, piece) in bytes.chunks(VALUE_CHUNK).enumerate() {
        batch.put(key(c as u32).to_vec(), piece.to_vec());
    }
}

pub(crate) fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key::display(key),
        reason: reason.to_string(),
    }
}

fn read_u64(key: &[u8], bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(key, format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

/// One state change routed to its bucket: (bucket, key hash, key, new value).
type Change<'a> = (u32, Hash, &'a [u8], Option<&'a [u8]>);

/// Store tuning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Budget for decoded state buckets kept in memory that are also stored (0 turns the
    /// cache off).
    ///
    /// A hit saves a sled read and a decode (about 1 µs per state read on small states).
    /// Buckets held for write-back are served from memory too, outside this budget; memory
    /// spent there saves the writes as well, so it is the better use of a fixed budget
    /// (measured at 1M entries, sled cache 64 MiB: 16 MiB here + 160 MiB write-back ≈ 6 µs
    /// per updated entry, 32 + 64 MiB ≈ 23 µs, thread CPU on a busy 2-core machine).
    pub bucket_cache_bytes: usize,
    /// On open, re-hash every stored key and value, not only the pair lists. Catches a value
    /// corrupted on disk whose stored hash is intact, at the cost of two hashes per entry.
    pub verify_values_on_open: bool,
    /// Write-back budget: bucket bytes that may be held in memory newer than their stored
    /// copy (0 writes every touched bucket with its block). A state whose buckets all fit
    /// (≈ 130 B per entry: 1M entries ≈ 160 MiB) is written about once per
    /// `write_back_blocks` blocks per bucket; a larger one is written faster, as the budget
    /// overflows (at 1M entries and this default, ≈ 1,000 buckets of the ≈ 9,300 a block of
    /// 10,000 changes touches).
    ///
    /// A block's batch always holds its state changes as one journal record; a touched bucket
    /// is written when the write-back sweep passes it (at least `num_buckets /
    /// write_back_blocks` bucket indexes a block, further while the held buckets exceed this
    /// budget). A bucket touched by several blocks meanwhile is written once, and a block
    /// costs one store write for its state rather than one per bucket (sled costs about 5 µs
    /// per written key). Open replays the journal records still stored, so a crash loses
    /// nothing.
    pub write_back_bytes: usize,
    /// How long a touched bucket waits at most before it is written (one sweep): bounds the
    /// journal replayed on open to this many blocks, twice that right after an open, while
    /// the sweep catches up with the replayed buckets (≈ 0.6 MB and 30 ms of replay per block
    /// of 10,000 changes).
    pub write_back_blocks: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            bucket_cache_bytes: 16 << 20,
            verify_values_on_open: true,
            write_back_bytes: 112 << 20,
            write_back_blocks: 128,
        }
    }
}

/// Buckets whose committed content is newer than their stored copy, pinned in memory until
/// written: one slot per bucket, so the lookup every state read starts with is an array index
/// (a hash map lookup here cost about 0.3 µs per read, in cache misses). The slots hold only
/// the buckets (16 bytes each), so the array a read indexes stays small enough to stay cached;
/// the heights beside them are for commits.
#[derive(Default)]
struct DirtySet {
    buckets: Vec<Option<Bucket>>,
    /// For a held bucket, the height of the first block that changed it since it was last
    /// written: the journal must keep every record from there on.
    since: Vec<u64>,
    len: usize,
}

impl DirtySet {
    fn new(num_buckets: u64) -> Self {
        let n = num_buckets as usize;
        DirtySet {
            buckets: vec![None; n],
            since: vec![0; n],
            len: 0,
        }
    }

    fn get(&self, b: &u32) -> Option<&Bucket> {
        self.buckets.get(*b as usize)?.as_ref()
    }

    fn get_mut(&mut self, b: &u32) -> Option<&mut Bucket> {
        self.buckets.get_mut(*b as usize)?.as_mut()
    }

    /// Held bucket `b` and where the journal must start for it.
    fn held(&self, b: &u32) -> Option<(&Bucket, u64)> {
        Some((self.get(b)?, *self.since.get(*b as usize)?))
    }

    /// Holds `bucket` as `b`, first changed at `since`. `b` must be below the bucket count
    /// (every bucket index is: `BucketTree::bucket_of`).
    fn insert(&mut self, b: u32, bucket: Bucket, since: u64) {
        if let (Some(slot), Some(h)) = (
            self.buckets.get_mut(b as usize),
            self.since.get_mut(b as usize),
        ) {
            if slot.replace(bucket).is_none() {
                self.len += 1;
            }
            *h = since;
        }
    }

    /// The held bucket `b` and its height, no longer held.
    fn remove(&mut self, b: &u32) -> Option<(Bucket, u64)> {
        let bucket = self.buckets.get_mut(*b as usize)?.take()?;
        self.len -= 1;
        Some((bucket, self.since.get(*b as usize).copied().unwrap_or(0)))
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Buckets held back from the store (write-back), and the journal records covering them.
#[derive(Default)]
struct WriteBack {
    dirty: DirtySet,
    /// How many dirty buckets were first changed at each height: the lowest is where the
    /// journal must start.
    since: BTreeMap<u64, u32>,
    bytes: usize,
    /// Next bucket index the write-back sweep reaches (see [`ChainStore::plan_write_back`]).
    cursor: u64,
    /// Lowest height whose journal record is stored (every record from it to the head is).
    journal_from: u64,
    /// Chunk count of every stored journal record, by height (to delete them).
    journal_chunks: BTreeMap<u64, u32>,
}

/// Size of the pieces a block or a journal record is stored in.
///
/// sled 0.34.7 keeps up to 16 entries in a leaf and rewrites a leaf whole. A log message over
/// a quarter of its segment (128 KiB by default), be it one value or a rewritten leaf, goes to
/// a file of its own under `blobs/`, and sled never fsyncs those files: `flush` syncs only its
/// log (`write_blob` in `pagecache/blob_io.rs`; checked with strace). A block stored whole
/// (1.6 MB at 10,000 transfers) would not survive a power loss though `flush` returned, nor
/// would its neighbours in the leaf. In pieces of 4 KiB a leaf stays under 68 KiB and in the
/// log, which `flush` syncs (`sled_store_writes_no_unsynced_blob_files`). Buckets are not
/// split so; `SledKv::flush` syncs any blob a leaf of large ones becomes.
const VALUE_CHUNK: usize = 4096;
/// Committed blocks kept decoded (see `ChainStore::recent`): a few blocks' time of polling.
const RECENT_BLOCKS: usize = 4;
/// Most bytes of replaced buckets kept for the next block (see [`BucketPool`]): at 1M
/// entries a 10,000-transfer block replaces ~30 MB of buckets. Memory glibc would hold in its
/// free lists anyway, until the next block's buckets took it.
const POOL_BYTES: usize = 32 << 20;
/// Fewest touched buckets worth another thread in `prepare` (a bucket's merge and hash cost
/// about a µs at 1M entries).
const MIN_BUCKETS_PER_THREAD: usize = 512;

/// What one commit writes back: buckets written now, where the sweep goes on from, and the
/// new lowest journal height.
struct WriteBackPlan {
    written: Vec<u32>,
    cursor: u64,
    journal_from: u64,
}

/// New bucket contents and the new state root for one block's state changes, computed without
/// writing anything.
///
/// Proposers need the root to fill the header before consensus decides; validators need it to
/// check the header. It is tied to the state it was computed on: committing it on any other
/// state is refused.
#[derive(Clone, Debug)]
pub struct PreparedState {
    /// Sorted by bucket.
    buckets: Vec<(u32, Bucket)>,
    tree: TreeUpdate,
    /// The changes as a journal record.
    journal: Vec<u8>,
    /// The new `validators/active` value, when the changes write one.
    active_set: Option<Vec<u8>>,
}

impl PreparedState {
    /// The state root after these changes.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The state root these changes were computed on.
    pub fn parent_root(&self) -> Hash {
        self.tree.base_root()
    }

    /// How many buckets the changes rewrite.
    pub fn touched_buckets(&self) -> usize {
        self.buckets.len()
    }
}

/// Where a transaction was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}

pub struct ChainStore<K: KvStore> {
    kv: K,
    tree: BucketTree,
    head: Header,
    head_hash: Hash,
    /// The certificate the head was committed with (none at genesis): checked by whoever
    /// committed it, so the next block's `last_commit` need not be checked again if it is this.
    head_cert: Option<CommitCertificate>,
    /// The last [`RECENT_BLOCKS`] blocks committed (staged) here, newest last: clients and
    /// syncing peers ask for the newest blocks most, and reading one back from sled pulls its
    /// pages into sled's cache again (≈ 45 MiB at peak on a validator answering `getBlock` for
    /// every block of a saturated devnet, measured with heaptrack). Shared rather than copied
    /// out (a saturated block is megabytes), and kept with their certificates, which a
    /// `getBlock` answer carries too.
    recent: VecDeque<(Arc<Block>, CommitCertificate)>,
    genesis_hash: Hash,
    cache: Mutex<BucketCache>,
    /// The buckets the last block replaced, for `prepare` to reuse.
    pool: Mutex<BucketPool>,
    /// Threads `prepare` may use ([`parallel::threads`]; tests set others).
    prepare_threads: usize,
    write_back: WriteBack,
    write_back_bytes: usize,
    write_back_blocks: u64,
    poisoned: Option<String>,
    tx_index: TxIndex,
    /// Every validator set the chain has had, by the height after which it votes (0 =
    /// genesis). Certificates of old blocks and header sync need the set of their height.
    validator_sets: BTreeMap<u64, Arc<ValidatorSet>>,
}

impl<K: KvStore> ChainStore<K> {
    /// Opens `kv` for `genesis`'s chain with default tuning; see [`ChainStore::open_with`].
    pub fn open(kv: K, genesis: &Genesis) -> Result<Self, StoreError> {
        Self::open_with(kv, genesis, &StoreConfig::default())
    }

    /// Opens `kv` for `genesis`'s chain: an empty store is initialised with the genesis state
    /// and header (height 0); an existing one must belong to this genesis, hold its head block,
    /// and hold a state whose root (re-computed from every stored bucket) is the head's.
    pub fn open_with(kv: K, genesis: &Genesis, config: &StoreConfig) -> Result<Self, StoreError> {
        let tree = BucketTree::empty(genesis.params.state_buckets)?;
        let dirty = DirtySet::new(tree.num_buckets());
        let mut store = ChainStore {
            kv,
            tree,
            head: genesis.header(Hash::ZERO),
            head_hash: Hash::ZERO,
            head_cert: None,
            recent: VecDeque::with_capacity(RECENT_BLOCKS),
            genesis_hash: genesis.hash(),
            cache: Mutex::new(BucketCache::new(config.bucket_cache_bytes)),
            pool: Mutex::new(BucketPool::new(POOL_BYTES)),
            prepare_threads: parallel::threads(),
            write_back: WriteBack {
                dirty,
                ..WriteBack::default()
            },
            write_back_bytes: config.write_back_bytes,
            write_back_blocks: config.write_back_blocks,
            poisoned: None,
            tx_index: TxIndex::empty(),
            validator_sets: BTreeMap::new(),
        };
        match store.kv.get(key::GENESIS)? {
            None => store.init(genesis)?,
            Some(stored) => store.load(stored.as_ref(), config)?,
        }
        Ok(store)
    }

    fn init(&mut self, genesis: &Genesis) -> Result<(), StoreError> {
        if let Some(entry) = self.kv.range(b"", None).next() {
            let (k, _) = entry?;
            return Err(corrupt(
                key::GENESIS,
                format!(
                    "missing, yet the store holds data (e.g. {})",
                    key::display(&k)
                ),
            ));
        }
        let prepared = self.prepare(&genesis.initial_state()?)?;
        let header = genesis.header(prepared.root());
        let block = Block {
            header,
            txs: vec![],
            last_commit: None,
        };
        let (mut batch, plan, index) = self.block_batch(&block, None, &prepared)?;
        batch.put(key::GENESIS.to_vec(), self.genesis_hash.0.to_vec());
        self.tx_index.init_batch(&mut batch);
        self.write_and_install(batch, block.header, prepared, plan, index)?;
        self.flush()
    }

    fn load(&mut self, stored_genesis: &[u8], config: &StoreConfig) -> Result<(), StoreError> {
        let stored = Hash(
            stored_genesis
                .try_into()
                .map_err(|_| corrupt(key::GENESIS, "not 32 bytes"))?,
        );
        if stored != self.genesis_hash {
            return Err(StoreError::GenesisMismatch {
                stored,
                expected: self.genesis_hash,
            });
        }
        let head_bytes = self
            .kv
            .get(key::HEAD)?
            .ok_or_else(|| corrupt(key::HEAD, "missing"))?;
        let height = read_u64(key::HEAD, head_bytes.as_ref())?;
        let block = self
            .stored_block(height)?
            .ok_or(StoreError::HeadBlockMissing { height })?;
        if block.header.height != height {
            return Err(corrupt(
                &key::block_pieces(height),
                format!("holds a block of height {}", block.header.height),
            ));
        }

        let depth = self.tree.depth();
        let n = self.tree.num_buckets();
        let mut leaves = vec![Hash::ZERO; n as usize];
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for entry in self.kv.scan_prefix(key::BUCKET_PREFIX) {
            let (k, v) = entry?;
            let b = key::parse_bucket(&k)
                .filter(|b| u64::from(*b) < n)
                .ok_or_else(|| corrupt(&k, format!("not a bucket key of a {n}-bucket state")))?;
            let bucket = Bucket::decode(v.as_ref()).map_err(|e| corrupt(&k, e))?;
            if config.verify_values_on_open {
                bucket.verify(b, depth).map_err(|e| corrupt(&k, e))?;
            }
            leaves[b as usize] = bucket.hash();
            if cache.has_room(bucket.approx_bytes() + 64) {
                cache.insert(b, bucket);
            }
        }
        drop(cache);
        self.tree = BucketTree::from_leaves(&leaves)?;
        self.load_validator_sets(height)?;
        self.replay_journal(height)?;
        self.tx_index = TxIndex::load(&self.kv, height, |h| {
            self.stored_block(h)?
                .map(|b| b.txs)
                .ok_or_else(|| corrupt(&key::block_pieces(h), "missing, below the head"))
        })?;
        if self.tree.root() != block.header.state_root {
            return Err(StoreError::StateRootMismatch {
                height,
                header_root: block.header.state_root,
                computed: self.tree.root(),
            });
        }
        self.head_cert = self.certificate(height)?;
        self.head_hash = block.hash();
        self.head = block.header;
        Ok(())
    }

    pub fn head(&self) -> &Header {
        &self.head
    }

    pub fn head_hash(&self) -> Hash {
        self.head_hash
    }

    /// The certificate the head block was committed with, its signatures checked before (see
    /// [`ChainStore::commit_block`]); `None` at genesis.
    pub fn head_certificate(&self) -> Option<&CommitCertificate> {
        self.head_cert.as_ref()
    }

    pub fn height(&self) -> u64 {
        self.head.height
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    /// Root of the committed state (equal to the head header's `state_root`).
    pub fn state_root(&self) -> Hash {
        self.tree.root()
    }

    pub fn num_buckets(&self) -> u64 {
        self.tree.num_buckets()
    }

    pub fn kv(&self) -> &K {
        &self.kv
    }

    fn decode_at<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, StoreError> {
        match self.kv.get(k)? {
            None => Ok(None),
            Some(v) => codec::decode(v.as_ref(), codec::MAX_DECODE_BYTES)
                .map(Some)
                .map_err(|e| corrupt(k, e)),
        }
    }

    /// The block at `height`. Heights above the head are answered without a store read:
    /// clients poll for the next block many times a second, and each sled read of a missing
    /// key pulls the leaf of the newest blocks into sled's cache (a validator polled so in a
    /// saturated run held ≈ 30 MiB more than its peers).
    pub fn block(&self, height: u64) -> Result<Option<Arc<Block>>, StoreError> {
        if height > self.head.height {
            return Ok(None);
        }
        if let Some((b, _)) = self.recent_at(height) {
            return Ok(Some(b.clone()));
        }
        Ok(self.stored_block(height)?.map(Arc::new))
    }

    fn stored_block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let prefix = key::block_pieces(height);
        let mut bytes = Vec::new();
        let mut pieces = 0u32;
        for entry in self.kv.scan_prefix(&prefix) {
            let (k, v) = entry?;
            let chunk = k
                .get(prefix.len()..)
                .and_then(|c| <[u8; 4]>::try_from(c).ok());
            if chunk != Some(pieces.to_be_bytes()) {
                return Err(corrupt(&k, format!("not piece {pieces} of block {height}")));
            }
            bytes.extend_from_slice(v.as_ref());
            pieces += 1;
        }
        if pieces == 0 {
            return Ok(None);
        }
        codec::decode(&bytes, codec::MAX_DECODE_BYTES)
            .map(Some)
            .map_err(|e| corrupt(&prefix, e))
    }

    fn recent_at(&self, height: u64) -> Option<&(Arc<Block>, CommitCertificate)> {
        self.recent.iter().find(|(b, _)| b.header.height == height)
    }

    pub fn block_height_by_hash(&self, hash: &Hash) -> Result<Option<u64>, StoreError> {
        let k = key::block_hash(hash);
        match self.kv.get(&k)? {
            None => Ok(None),
            Some(v) => read_u64(&k, v.as_ref()).map(Some),
        }
    }

    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<Arc<Block>>, StoreError> {
        match self.block_height_by_hash(hash)? {
            None => Ok(None),
            Some(h) => self.block(h),
        }
    }

    /// The certificate that decided `height` (none for height 0, which genesis fixed).
    pub fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>, StoreError> {
        if let Some((_, cert)) = self.recent_at(height) {
            return Ok(Some(cert.clone()));
        }
        self.decode_at(&key::cert(height))
    }

    pub fn tx_location(&self, hash: &Hash) -> Result<Option<TxLocation>, StoreError> {
        self.tx_index.get(&self.kv, hash)
    }

    /// The validator set that votes on block `height` (whose hash is that header's
    /// `validators_hash`); `None` for height 0, which no one votes on.
    pub fn voting_set(&self, height: u64) -> Option<Arc<ValidatorSet>> {
        let (_, set) = self.validator_sets.range(..height).next_back()?;
        Some(set.clone())
    }

    /// The new set block `height` installed, if it changed the set (and genesis's, at 0).
    pub fn set_change_at(&self, height: u64) -> Option<Arc<ValidatorSet>> {
        self.validator_sets.get(&height).cloned()
    }

    /// The new validator set `prepared` installs, if it differs from the current one.
    fn set_change(&self, prepared: &PreparedState) -> Option<Vec<u8>> {
        let bytes = prepared.active_set.as_ref()?;
        let current = self.validator_sets.values().next_back();
        match current {
            Some(set) if codec::encode(set.as_ref()) == *bytes => None,
            _ => Some(bytes.clone()),
        }
    }

    fn load_validator_sets(&mut self, head: u64) -> Result<(), StoreError> {
        for entry in self.kv.scan_prefix(key::VALIDATORS_PREFIX) {
            let (k, v) = entry?;
            let h = key::parse_validators(&k)
                .filter(|h| *h <= head)
                .ok_or_else(|| {
                    corrupt(&k, format!("not a validator-set key at or below {head}"))
                })?;
            let set: ValidatorSet =
                codec::decode(v.as_ref(), v.as_ref().len()).map_err(|e| corrupt(&k, e))?;
            self.validator_sets.insert(h, Arc::new(set));
        }
        if !self.validator_sets.contains_key(&0) {
            return Err(corrupt(
                &key::validators(0),
                "missing: the store predates validator-set history; delete the data \
                 directory and sync again",
            ));
        }
        Ok(())
    }

    /// Replays the stored journal records (which must run without a gap up to the head) over
    /// the stored buckets; the buckets they change stay dirty, as before the restart.
    fn replay_journal(&mut self, head: u64) -> Result<(), StoreError> {
        // (height, its chunks concatenated, chunk count)
        let mut records: Vec<(u64, Vec<u8>, u32)> = Vec::new();
        for entry in self.kv.scan_prefix(key::JOURNAL_PREFIX) {
            let (k, v) = entry?;
            let (h, chunk) = key::parse_journal(&k)
                .filter(|(h, _)| *h <= head)
                .ok_or_else(|| corrupt(&k, format!("not a journal key at or below head {head}")))?;
            match records.last_mut() {
                Some((prev, bytes, chunks)) if *prev == h => {
                    if chunk != *chunks {
                        return Err(corrupt(&k, format!("chunk {chunks} is missing")));
                    }
                    bytes.extend_from_slice(v.as_ref());
                    *chunks += 1;
                }
                last => {
                    if let Some((prev, _, _)) = last {
                        if h != *prev + 1 {
                            return Err(corrupt(&k, format!("journal gap after height {prev}")));
                        }
                    }
                    if chunk != 0 {
                        return Err(corrupt(&k, "chunk 0 is missing"));
                    }
                    records.push((h, v.as_ref().to_vec(), 1));
                }
            }
        }
        if let Some(&(last, _, _)) = records.last() {
            if last != head {
                return Err(corrupt(
                    &key::journal(last, 0),
                    format!("journal ends at {last}, below head {head}"),
                ));
            }
        }
        self.write_back.journal_from = records.first().map_or(head + 1, |(h, _, _)| *h);
        for (h, bytes, chunks) in records {
            let changes = journal::decode(&bytes).map_err(|e| corrupt(&key::journal(h, 0), e))?;
            drop(bytes);
            let prepared = self.prepare(&changes)?;
            self.tree.apply(&prepared.tree);
            self.mark_dirty(h, prepared.buckets);
            self.write_back.journal_chunks.insert(h, chunks);
        }
        Ok(())
    }

    /// Records block `height`'s buckets as newer than their stored copies, for a commit and
    /// for a journal record replayed on open alike. Until written, they live in the write-back
    /// set only: the cache's stale copies are dropped. The versions they replace are recycled
    /// for the next block, and the pool keeps no more than that (one block's).
    fn mark_dirty(&mut self, height: u64, buckets: Vec<(u32, Bucket)>) {
        let wb = &mut self.write_back;
        let pool = self.pool.get_mut().unwrap_or_else(|e| e.into_inner());
        pool.clear();
        let cache = self.cache.get_mut().unwrap_or_else(|e| e.into_inner());
        for (b, _) in &buckets {
            if let Some(stale) = cache.remove(*b) {
                pool.recycle(stale);
            }
        }
        for (b, bucket) in buckets {
            let size = bucket.approx_bytes();
            match wb.dirty.get_mut(&b) {
                Some(held) => {
                    wb.bytes = wb.bytes - held.approx_bytes() + size;
                    pool.recycle(std::mem::replace(held, bucket));
                }
                None => {
                    wb.bytes += size;
                    *wb.since.entry(height).or_default() += 1;
                    wb.dirty.insert(b, bucket, height);
                }
            }
        }
    }

    /// How many buckets are held back from the store, and their bytes.
    pub fn write_back_pending(&self) -> (usize, usize) {
        (self.write_back.dirty.len(), self.write_back.bytes)
    }

    #[cfg(test)]
    pub(crate) fn set_prepare_threads(&mut self, threads: usize) {
        self.prepare_threads = threads;
    }

    /// The new versions of the buckets `groups` change (one group of changes per bucket, in
    /// bucket order), and their hashes; unchanged buckets are left out.
    #[allow(clippy::type_complexity)]
    fn merge_buckets(
        &self,
        groups: &[&[Change<'_>]],
        pool: &mut BucketPool,
    ) -> Result<(Vec<(u32, Bucket)>, Vec<(u32, Hash)>), StoreError> {
        let mut buckets = Vec::with_capacity(groups.len());
        let mut leaves = Vec::with_capacity(groups.len());
        let mut group_changes = Vec::new();
        for group in groups {
            let b = group[0].0;
            group_changes.clear();
            group_changes.extend(group.iter().map(|(_, kh, k, v)| (*kh, *k, *v)));
            let current = self.bucket(b)?;
            let Some(bucket) = current.with_changes(&group_changes, pool) else {
                continue;
            };
            drop(current);
            if bucket.size() > commitment::MAX_BUCKET_BYTES {
                return Err(StoreError::BucketTooLarge {
                    bucket: b,
                    bytes: bucket.size(),
                });
            }
            leaves.push((b, bucket.hash()));
            buckets.push((b, bucket));
        }
        Ok((buckets, leaves))
    }

    /// The committed bucket `b`, from memory or the store.
    fn bucket(&self, b: u32) -> Result<Bucket, StoreError> {
        if let Some(held) = self.write_back.dirty.get(&b) {
            return Ok(held.clone());
        }
        if let Some(hit) = self.lock_cache().get(b) {
            return Ok(hit);
        }
        let k = key::bucket(b);
        let bucket = match self.kv.get(&k)? {
            None => Bucket::default(),
            Some(v) => Bucket::decode(v.as_ref()).map_err(|e| corrupt(&k, e))?,
        };
        self.lock_cache().insert(b, bucket.clone());
        Ok(bucket)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, BucketCache> {
        // The cache holds only committed, immutable buckets; a panic elsewhere cannot leave it
        // inconsistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Proof of `key`'s committed value (or absence) against [`ChainStore::state_root`].
    pub fn prove(&self, key: &[u8]) -> Result<StateProof, StoreError> {
        let kh = Hash::of(key);
        let b = self.tree.bucket_of(&kh);
        let bucket = self.bucket(b)?;
        Ok(StateProof {
            key: key.to_vec(),
            value: bucket.get(&kh, key).map(<[u8]>::to_vec),
            bucket: b,
            pairs: bucket.pairs().collect(),
            siblings: self.tree.siblings(b),
        })
    }

    /// New bucket contents and state root for `changes` on top of the committed state.
    pub fn prepare(&self, changes: &StateChanges) -> Result<PreparedState, StoreError> {
        let depth = self.tree.depth();
        let mut items: Vec<Change<'_>> = changes
            .iter()
            .map(|(k, v)| {
                let kh = Hash::of(k);
                (commitment::bucket_of(&kh, depth), kh, k, v)
            })
            .collect();
        // By bucket, then as each bucket orders its entries.
        items.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| commitment::cmp_key_hash(&a.1 .0, &b.1 .0))
                .then_with(|| a.2.cmp(b.2))
        });
        let groups: Vec<&[Change<'_>]> = items.chunk_by(|a, b| a.0 == b.0).collect();
        // Each bucket's merge and hash depend on that bucket alone; each part takes its share
        // of the pool.
        let parts = parallel::parts(groups.len(), MIN_BUCKETS_PER_THREAD, self.prepare_threads);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let mut split: Vec<BucketPool> = (1..parts).map(|_| pool.split()).collect();
        let mut pools: Vec<&mut BucketPool> = std::iter::once(&mut *pool)
            .chain(split.iter_mut())
            .collect();
        let merged = parallel::map_parts(&groups, &mut pools, |part, pool| {
            self.merge_buckets(part, pool)
        });
        let (mut buckets, mut leaves) = (Vec::new(), Vec::new());
        for part in merged {
            let (b, l) = part?;
            buckets.extend(b);
            leaves.extend(l);
        }
        Ok(PreparedState {
            buckets,
            tree: self.tree.plan(&leaves),
            journal: journal::encode(changes),
            active_set: changes
                .get(state_keys::ACTIVE_SET)
                .flatten()
                .map(<[u8]>::to_vec),
        })
    }

    /// Commits `block`, decided by `cert`, with its state changes `prepared` on the current
    /// head. Everything goes in one atomic batch, flushed to disk before this returns, so once
    /// it returns a crash cannot lose the block, and a crash before leaves no part of it.
    ///
    /// The flush blocks: call this off any async runtime. The certificate's signatures are the
    /// caller's to check (that needs the validator set), and must have been: it becomes
    /// [`ChainStore::head_certificate`], which the next block's validation trusts. Here only
    /// its height and block hash are checked.
    pub fn commit_block(
        &mut self,
        block: impl Into<Arc<Block>>,
        cert: &CommitCertificate,
        prepared: PreparedState,
    ) -> Result<(), StoreError> {
        self.stage_block(block, cert, prepared)?;
        self.flush()
    }

    /// [`ChainStore::commit_block`] without the flush: the block's atomic batch is written and
    /// it becomes the head, but it is not durable until [`ChainStore::flush`] returns. A crash
    /// before that loses it, and every block staged after it, whole (a reopened store holds a
    /// prefix of whole blocks). So nothing may be told of it before the flush: a caller that
    /// commits a run this way (block sync, one flush per run rather than per block) holds the
    /// store exclusively until then.
    ///
    /// The block is kept among the recent ones (see `ChainStore::recent`): handed over, not
    /// copied (a saturated block is megabytes, thousands of allocations).
    pub fn stage_block(
        &mut self,
        block: impl Into<Arc<Block>>,
        cert: &CommitCertificate,
        prepared: PreparedState,
    ) -> Result<(), StoreError> {
        let block: Arc<Block> = block.into();
        if let Some(why) = &self.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        let h = &block.header;
        if h.chain_id != self.head.chain_id {
            return Err(StoreError::WrongChain {
                expected: self.head.chain_id.clone(),
                got: h.chain_id.clone(),
            });
        }
        if h.height != self.head.height + 1 {
            return Err(StoreError::WrongHeight {
                expected: self.head.height + 1,
                got: h.height,
            });
        }
        if h.parent_hash != self.head_hash {
            return Err(StoreError::WrongParent {
                expected: self.head_hash,
                got: h.parent_hash,
            });
        }
        if prepared.parent_root() != self.tree.root() {
            return Err(StoreError::StalePrepared {
                prepared_on: prepared.parent_root(),
                current: self.tree.root(),
            });
        }
        if h.state_root != prepared.root() {
            return Err(StoreError::BlockStateRoot {
                height: h.height,
                header: h.state_root,
                prepared: prepared.root(),
            });
        }
        let hash = block.hash();
        if cert.height != h.height || cert.block_hash != hash {
            return Err(StoreError::CertificateMismatch {
                height: h.height,
                hash,
                cert_height: cert.height,
                cert_hash: cert.block_hash,
            });
        }
        let (batch, plan, index) = self.block_batch(&block, Some(cert), &prepared)?;
        self.write_and_install(batch, block.header.clone(), prepared, plan, index)?;
        self.head_cert = Some(cert.clone());
        if self.recent.len() == RECENT_BLOCKS {
            self.recent.pop_front();
        }
        self.recent.push_back((block, cert.clone()));
        Ok(())
    }

    /// Makes every block staged so far durable.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(why) = &self.poisoned {
            return Err(StoreError::Poisoned(why.clone()));
        }
        self.kv.flush().map_err(|e| self.poison(e))
    }

    /// A failed write or flush may or may not have reached the disk: only a reopen (which
    /// re-checks the store) can tell which state is real, so the store refuses all further use.
    fn poison(&mut self, e: KvError) -> StoreError {
        self.poisoned = Some(e.to_string());
        e.into()
    }

    /// Which dirty buckets (with this block's) to write with block `height`.
    ///
    /// A cursor sweeps the bucket indexes, `num_buckets / write_back_blocks` of them a block
    /// and further while the held bytes exceed the budget, and every held bucket it passes is
    /// written. So a bucket waits at most `write_back_blocks` blocks, and the buckets written
    /// together are neighbours in the store's key order: sled rewrites a whole leaf of up to 16
    /// buckets for each one written, and at 1M entries, where the state no longer fits its
    /// cache, reads the leaf back from disk first. Writing the oldest buckets first instead
    /// wrote scattered ones, one leaf read and rewritten each.
    fn plan_write_back(&self, height: u64, prepared: &PreparedState) -> WriteBackPlan {
        let wb = &self.write_back;
        let new = |b: u32| {
            prepared
                .buckets
                .binary_search_by_key(&b, |(pb, _)| *pb)
                .ok()
                .map(|i| &prepared.buckets[i].1)
        };
        let mut bytes = wb.bytes;
        // This block's buckets that were not held yet: written now or first held at `height`.
        let mut fresh = 0;
        for (b, bucket) in &prepared.buckets {
            bytes += bucket.approx_bytes();
            match wb.dirty.get(b) {
                Some(held) => bytes -= held.approx_bytes(),
                None => fresh += 1,
            }
        }
        let n = self.tree.num_buckets();
        // No wait (0 blocks) is no budget: the sweep goes on until nothing is held.
        let (step, budget) = match self.write_back_blocks {
            0 => (0, 0),
            blocks => (n.div_ceil(blocks), self.write_back_bytes),
        };
        let start = wb.cursor % n;
        let mut written = Vec::new();
        // Heights of the held buckets written now, to find the lowest one still held.
        let mut written_since: BTreeMap<u64, u32> = BTreeMap::new();
        let mut fresh_written = 0;
        let mut swept = 0;
        while swept < n && (swept < step || bytes > budget) {
            let b = ((start + swept) % n) as u32;
            swept += 1;
            let held = wb.dirty.held(&b);
            let size = match (new(b), held) {
                (Some(bucket), _) => bucket.approx_bytes(),
                (None, Some((held, _))) => held.approx_bytes(),
                (None, None) => continue,
            };
            match held {
                Some((_, since)) => *written_since.entry(since).or_default() += 1,
                None => fresh_written += 1,
            }
            bytes -= size;
            written.push(b);
        }
        let oldest_held = wb
            .since
            .iter()
            .find(|(h, count)| written_since.get(h).copied().unwrap_or(0) < **count)
            .map(|(h, _)| *h);
        let journal_from = match oldest_held {
            Some(h) => h,
            None if fresh_written < fresh => height,
            None => height + 1,
        };
        WriteBackPlan {
            written,
            cursor: (start + swept) % n,
            journal_from,
        }
    }

    /// The one batch that commits a block: block, indexes, certificate, its state changes
    /// (journal record and/or buckets), buckets written back, head.
    fn block_batch(
        &self,
        block: &Block,
        cert: Option<&CommitCertificate>,
        prepared: &PreparedState,
    ) -> Result<(WriteBatch, WriteBackPlan, IndexUpdate), StoreError> {
        let height = block.header.height;
        let mut batch = WriteBatch::with_capacity(prepared.buckets.len() + block.txs.len() + 4);
        put_pieces(&mut batch, &block.encode(), |c| key::block(height, c));
        batch.put(
            key::block_hash(&block.hash()).to_vec(),
            height.to_be_bytes().to_vec(),
        );
        if let Some(cert) = cert {
            batch.put(key::cert(height).to_vec(), codec::encode(cert));
        }
        let index = self
            .tx_index
            .stage(&self.kv, height, &block.txs, &mut batch)?;
        if let Some(set) = self.set_change(prepared) {
            batch.put(key::validators(height).to_vec(), set);
        }
        let plan = self.plan_write_back(height, prepared);
        for &b in &plan.written {
            let bucket = match prepared.buckets.binary_search_by_key(&b, |(pb, _)| *pb) {
                Ok(i) => &prepared.buckets[i].1,
                Err(_) => match self.write_back.dirty.get(&b) {
                    Some(held) => held,
                    None => continue,
                },
            };
            if bucket.is_empty() {
                batch.delete(key::bucket(b).to_vec());
            } else {
                batch.put(key::bucket(b).to_vec(), bucket.encode());
            }
        }
        // Records below the new lowest height are no longer needed; this block's is, unless
        // every bucket it touched was written.
        let stored = &self.write_back.journal_chunks;
        for (&h, &chunks) in stored.range(..plan.journal_from.min(height)) {
            for c in 0..chunks {
                batch.delete(key::journal(h, c).to_vec());
            }
        }
        if plan.journal_from <= height {
            put_pieces(&mut batch, &prepared.journal, |c| key::journal(height, c));
        }
        batch.put(key::HEAD.to_vec(), height.to_be_bytes().to_vec());
        Ok((batch, plan, index))
    }

    fn write_and_install(
        &mut self,
        batch: WriteBatch,
        header: Header,
        prepared: PreparedState,
        plan: WriteBackPlan,
        index: IndexUpdate,
    ) -> Result<(), StoreError> {
        let new_set = match self.set_change(&prepared) {
            Some(bytes) => Some(
                codec::decode::<ValidatorSet>(&bytes, bytes.len())
                    .map_err(|e| corrupt(&key::validators(header.height), e))?,
            ),
            None => None,
        };
        self.kv.write(batch).map_err(|e| self.poison(e))?;
        self.tx_index.install(index);
        let header_journal_chunks = prepared.journal.len().div_ceil(VALUE_CHUNK) as u32;
        if let Some(set) = new_set {
            self.validator_sets.insert(header.height, Arc::new(set));
        }
        self.tree.apply(&prepared.tree);
        self.mark_dirty(header.height, prepared.buckets);
        // Buckets written now move from the write-back set to the cache.
        let wb = &mut self.write_back;
        let cache = self.cache.get_mut().unwrap_or_else(|e| e.into_inner());
        for b in plan.written {
            if let Some((bucket, since)) = wb.dirty.remove(&b) {
                if let Some(count) = wb.since.get_mut(&since) {
                    *count -= 1;
                    if *count == 0 {
                        wb.since.remove(&since);
                    }
                }
                wb.bytes -= bucket.approx_bytes();
                cache.insert(b, bucket);
            }
        }
        if plan.journal_from <= header.height {
            let chunks = header_journal_chunks;
            wb.journal_chunks.insert(header.height, chunks);
        }
        wb.journal_chunks = wb.journal_chunks.split_off(&plan.journal_from);
        wb.journal_from = plan.journal_from;
        wb.cursor = plan.cursor;
        self.head_hash = header.hash();
        self.head = header;
        Ok(())
    }
}

impl<K: KvStore> StateReader for ChainStore<K> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let kh = Hash::of(key);
        let bucket = self.bucket(self.tree.bucket_of(&kh))?;
        Ok(bucket.get(&kh, key).map(<[u8]>::to_vec))
    }
}

#[cfg(test)]
mod tests;
