//! The narrow key-value interface the chain store is written against (SPEC §4a), and its sled
//! implementation.
//!
//! Four operations are all the chain needs: point reads, ordered scans, one atomic batch per
//! block, and a durable flush. Keeping the interface this small is what lets a second engine
//! be added without touching the chain logic.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("{engine} {op} failed: {message}")]
    Engine {
        engine: &'static str,
        op: &'static str,
        message: String,
    },
}

/// Puts and deletes applied all together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        WriteBatch {
            ops: Vec::with_capacity(n),
        }
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push((key.into(), Some(value)));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in the order they were added; a later op on the same key wins.
    pub fn ops(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.ops
    }

    /// See [`WriteBatch::ops`].
    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }
}

/// Iterator over `(key, value)` entries in key order.
pub type KvIter<'a, V> = Box<dyn Iterator<Item = Result<(Vec<u8>, V), KvError>> + 'a>;

pub trait KvStore: Send + Sync {
    /// Value bytes as the engine hands them out (sled shares them without copying).
    type Value: AsRef<[u8]> + Send;

    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, KvError>;

    /// Entries with `from <= key`, and `key < to` when `to` is given, in key order.
    fn range<'a>(&'a self, from: &[u8], to: Option<&[u8]>) -> KvIter<'a, Self::Value>;

    /// Applies every operation of `batch` atomically, also across a crash: a reopened store
    /// holds all of them or none.
    fn write(&self, batch: WriteBatch) -> Result<(), KvError>;

    /// Blocks until every write so far is durable. Call it off any async runtime.
    fn flush(&self) -> Result<(), KvError>;

    /// Entries whose key starts with `prefix`, in key order.
    fn scan_prefix<'a>(&'a self, prefix: &[u8]) -> KvIter<'a, Self::Value> {
        let end = prefix_end(prefix);
        self.range(prefix, end.as_deref())
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn sled_err(op: &'static str) -> impl Fn(sled::Error) -> KvError {
    move |e| KvError::Engine {
        engine: "sled",
        op,
        message: e.to_string(),
    }
}

/// sled settings the node exposes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SledConfig {
    /// sled's page cache. sled's own default (1 GiB) would blow the 256 MiB memory target, and
    /// what sled holds is a multiple of this budget: a validator under saturating load (devnet
    /// bench, 4 validators, 200 ms blocks, 60 s) had 231 MiB of heap in use at the end of the
    /// run and 141 MiB idle after it at 64 MiB, 146 and 61 MiB at 16 MiB (mallinfo2). heaptrack:
    /// the difference is mostly values read back (tx-index chunks); recently written values
    /// (≈ 65 MiB) and sled's page table (≈ 26 MiB) stay either way. Throughput did not change
    /// measurably: state reads hit the store's bucket cache and write-back buffer first.
    pub cache_capacity_bytes: u64,
    /// Background fsync interval. Commits flush explicitly; this only bounds how much a crash
    /// can lose of writes that are not flushed on purpose.
    pub flush_every_ms: Option<u64>,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            cache_capacity_bytes: 16 << 20,
            flush_every_ms: Some(500),
        }
    }
}

/// The chain's data in one sled tree.
///
/// One tree, with key prefixes telling the record kinds apart, because a sled `Batch` is atomic
/// only within a single tree and a block must land in one batch.
#[derive(Clone)]
pub struct SledKv {
    db: sled::Db,
    tree: sled::Tree,
    blobs: Arc<BlobSync>,
}

/// sled 0.34.7 writes a log message over a quarter of its segment (128 KiB by default), be it
/// one value or a whole leaf of up to 16 rewritten, to a file of its own under `blobs/`, and
/// its `flush` syncs the log only, never those files (`write_blob` in `pagecache/blob_io.rs`;
/// strace shows no fsync on them). The chain store keeps its values small enough that sled
/// writes none (`VALUE_CHUNK`), but a state bucket grows with the state: on 65,536 buckets a
/// leaf of them passes 128 KiB at about 4M entries. So [`SledKv::flush`] first syncs every
/// blob file it has not synced yet, and the directory.
///
/// What this cannot close: sled's background flush may sync its log, pointing at a new blob,
/// before the blob is synced. A power loss right then loses no flushed write, but can leave a
/// log that sled cannot read back, and the store is refused on open.
struct BlobSync {
    dir: PathBuf,
    /// Blob files synced and still present at the last flush.
    synced: Mutex<BTreeSet<OsString>>,
}

impl BlobSync {
    fn sync(&self) -> std::io::Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = BTreeSet::new();
        let mut new = false;
        for entry in entries {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                // sled removes blobs it no longer needs; one gone since the listing needs no sync.
                match std::fs::File::open(self.dir.join(&name)) {
                    Ok(f) => f.sync_all()?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        *synced = present;
        Ok(())
    }
}

impl SledKv {
    /// Name of the tree holding chain data; other components may open their own trees in
    /// [`SledKv::db`].
    pub const TREE: &'static str = "chain";

    pub fn open(path: impl AsRef<Path>) -> Result<SledKv, KvError> {
        Self::open_with(path, &SledConfig::default())
    }

    pub fn open_with(path: impl AsRef<Path>, config: &SledConfig) -> Result<SledKv, KvError> {
        let path = path.as_ref();
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity_bytes)
            .flush_every_ms(config.flush_every_ms)
            .open()
            .map_err(sled_err("open"))?;
        let tree = db.open_tree(Self::TREE).map_err(sled_err("open_tree"))?;
        let blobs = Arc::new(BlobSync {
            // sled's own layout (`Config::blob_path`).
            dir: path.join("blobs"),
            synced: Mutex::default(),
        });
        Ok(SledKv { db, tree, blobs })
    }

    /// The whole database, for components that keep their own trees (and flush them).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

impl KvStore for SledKv {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, KvError> {
        self.tree.get(key).map_err(sled_err("get"))
    }

    fn range<'a>(&'a self, from: &[u8], to: Option<&[u8]>) -> KvIter<'a, sled::IVec> {
        let upper = match to {
            Some(t) => Bound::Excluded(sled::IVec::from(t)),
            None => Bound::Unbounded,
        };
        let iter = self
            .tree
            .range::<sled::IVec, _>((Bound::Included(sled::IVec::from(from)), upper));
        Box::new(iter.map(|r| r.map(|(k, v)| (k.to_vec(), v)).map_err(sled_err("range"))))
    }

    fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        let mut b = sled::Batch::default();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.tree.apply_batch(b).map_err(sled_err("apply_batch"))
    }

    fn flush(&self) -> Result<(), KvError> {
        // Blobs first: the log that `Db::flush` syncs may point at them.
        self.blobs.sync().map_err(|e| KvError::Engine {
            engine: "sled",
            op: "sync blobs",
            message: e.to_string(),
        })?;
        // `Db::flush` covers every tree: they share one log.
        self.db.flush().map(drop).map_err(sled_err("flush"))
    }
}

type MemMap = BTreeMap<Vec<u8>, Arc<[u8]>>;

/// An in-memory engine for tests and tools: everything is "durable" at once.
#[derive(Clone, Default)]
pub struct MemKv {
    map: Arc<Mutex<MemMap>>,
}

impl MemKv {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Arc<[u8]>>> {
        // Every mutation below is a single map operation, so a panicking holder cannot leave
        // the map half-updated.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Overwrites one raw entry, bypassing everything: lets tests corrupt the store.
    pub fn poke(&self, key: &[u8], value: Option<&[u8]>) {
        let mut map = self.lock();
        match value {
            Some(v) => map.insert(key.to_vec(), Arc::from(v)),
            None => map.remove(key),
        };
    }
}

impl KvStore for MemKv {
    type Value = Arc<[u8]>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, KvError> {
        Ok(self.lock().get(key).cloned())
    }

    fn range<'a>(&'a self, from: &[u8], to: Option<&[u8]>) -> KvIter<'a, Arc<[u8]>> {
        let upper = match to {
            Some(t) => Bound::Excluded(t.to_vec()),
            None => Bound::Unbounded,
        };
        let items: Vec<_> = self
            .lock()
            .range((Bound::Included(from.to_vec()), upper))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        Box::new(items.into_iter())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        let mut map = self.lock();
        for (k, v) in batch.ops {
            match v {
                Some(v) => map.insert(k, Arc::from(v)),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), KvError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(kv: &impl KvStore) {
        let mut b = WriteBatch::new();
        b.put(b"a/1".to_vec(), b"x".to_vec());
        b.put(b"a/2".to_vec(), b"y".to_vec());
        b.put(b"b/1".to_vec(), b"z".to_vec());
        b.put(b"a\xff".to_vec(), b"w".to_vec());
        kv.write(b).expect("write");
        kv.flush().expect("flush");
        assert_eq!(
            kv.get(b"a/2").expect("get").map(|v| v.as_ref().to_vec()),
            Some(b"y".to_vec())
        );
        let keys: Vec<Vec<u8>> = kv.scan_prefix(b"a/").map(|r| r.expect("scan").0).collect();
        assert_eq!(keys, vec![b"a/1".to_vec(), b"a/2".to_vec()]);
        let mut b = WriteBatch::new();
        b.delete(b"a/1".to_vec());
        kv.write(b).expect("write");
        assert!(kv.get(b"a/1").expect("get").is_none());
        let all: Vec<Vec<u8>> = kv.range(b"", None).map(|r| r.expect("scan").0).collect();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn engines_behave_alike() {
        exercise(&MemKv::new());
        let dir = tempfile::tempdir().expect("tempdir");
        exercise(&SledKv::open(dir.path()).expect("open"));
    }

    #[test]
    fn sled_flush_syncs_blob_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SledKv::open(dir.path()).expect("open");
        let mut b = WriteBatch::new();
        b.put(b"big".to_vec(), vec![7; 200 << 10]);
        kv.write(b).expect("write");
        kv.flush().expect("flush");
        let on_disk: BTreeSet<OsString> = std::fs::read_dir(dir.path().join("blobs"))
            .expect("blobs dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            !on_disk.is_empty(),
            "sled wrote no blob for a 200 KiB value"
        );
        let synced = kv.blobs.synced.lock().expect("lock").clone();
        assert_eq!(synced, on_disk);
    }

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
