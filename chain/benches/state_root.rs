//! State-root update cost against state size (SPEC §3: ≤ 5 µs per touched entry, amortized
//! over a block of 10,000 updates at 1M entries, store write and flush included).
//!
//! One sled store grows through 10k, 100k and 1M account entries; at each size a block of
//! 10,000 updates to random existing accounts is prepared and committed. Criterion reports time
//! per updated entry (throughput in elements), so a flat figure across sizes shows the cost
//! follows the block, not the state.

use aitbc_chain::account::Account;
use aitbc_chain::address::Address;
use aitbc_chain::block::{Block, CommitCertificate, Header};
use aitbc_chain::codec;
use aitbc_chain::crypto::SecretKey;
use aitbc_chain::genesis::Genesis;
use aitbc_chain::hash::Hash;
use aitbc_chain::state::{keys, StateChanges, StateReader};
use aitbc_chain::store::kv::{KvError, KvIter, KvStore, WriteBatch};
use aitbc_chain::store::{ChainStore, PreparedState, SledConfig, SledKv, StoreConfig};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BLOCK: usize = 10_000;
const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];
/// Entries per setup commit while growing the state: large commits rewrite each bucket once
/// per commit, so a few big ones build 1M entries far faster than many small ones.
const SETUP_COMMIT: u64 = 350_000;

fn account_key(i: u64) -> Vec<u8> {
    let h = Hash::of(&i.to_le_bytes());
    let mut a = [0u8; 20];
    a.copy_from_slice(&h.0[..20]);
    keys::account(&Address(a))
}

fn account_value(balance: u64) -> Vec<u8> {
    codec::encode(&Account {
        balance,
        nonce: balance % 97,
        stake: 0,
    })
}

/// sled with time spent in batch writes and flushes counted, to split the commit figure.
struct TimedKv {
    inner: SledKv,
    write_ns: AtomicU64,
    flush_ns: AtomicU64,
    written_bytes: AtomicU64,
}

impl TimedKv {
    /// (write, flush, bytes) since the last call.
    fn take(&self) -> (Duration, Duration, u64) {
        (
            Duration::from_nanos(self.write_ns.swap(0, Ordering::Relaxed)),
            Duration::from_nanos(self.flush_ns.swap(0, Ordering::Relaxed)),
            self.written_bytes.swap(0, Ordering::Relaxed),
        )
    }
}

impl KvStore for TimedKv {
    type Value = <SledKv as KvStore>::Value;
    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, KvError> {
        self.inner.get(key)
    }
    fn range<'a>(&'a self, from: &[u8], to: Option<&[u8]>) -> KvIter<'a, Self::Value> {
        self.inner.range(from, to)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        let bytes: usize = batch
            .ops()
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let t = Instant::now();
        let r = self.inner.write(batch);
        self.write_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.written_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        r
    }
    fn flush(&self) -> Result<(), KvError> {
        let t = Instant::now();
        let r = self.inner.flush();
        self.flush_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
}

/// splitmix64: deterministic, dependency-free choice of the accounts each block touches.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn commit(store: &mut ChainStore<TimedKv>, prepared: PreparedState) {
    let head = store.head().clone();
    let header = Header {
        height: head.height + 1,
        parent_hash: store.head_hash(),
        state_root: prepared.root(),
        ..head
    };
    let block = Block {
        header,
        txs: vec![],
        last_commit: None,
    };
    let cert = CommitCertificate {
        height: block.header.height,
        view: 0,
        block_hash: block.hash(),
        signatures: vec![],
    };
    store.commit_block(block, &cert, prepared).expect("commit");
}

/// Microseconds per updated entry.
fn per(d: Duration, blocks: u32) -> f64 {
    d.as_secs_f64() * 1e6 / (f64::from(blocks.max(1)) * BLOCK as f64)
}

fn grow(store: &mut ChainStore<TimedKv>, from: u64, to: u64) {
    let mut next = from;
    while next < to {
        let end = (next + SETUP_COMMIT).min(to);
        let changes: StateChanges = (next..end)
            .map(|i| (account_key(i), Some(account_value(i))))
            .collect();
        let prepared = store.prepare(&changes).expect("prepare");
        commit(store, prepared);
        next = end;
    }
}

fn block_changes(rng: &mut Rng, size: u64, round: u64) -> StateChanges {
    let mut changes = BTreeMap::new();
    while changes.len() < BLOCK {
        let i = rng.next() % size;
        changes.insert(account_key(i), Some(account_value(i + round * 1_000_003)));
    }
    changes.into()
}

/// CPU time this thread has run (from `/proc/thread-self/schedstat`; zero where absent):
/// unlike wall time, it does not grow while other processes hold the cores.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// A numeric knob from the environment, for exploring settings without editing the bench.
fn knob(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn state_root(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let validator = SecretKey::from_seed([1; 32]);
    let genesis = Genesis::dev("bench", &[&validator], &[]);
    let mut sled_config = SledConfig::default();
    if let Some(mb) = knob("AITBC_BENCH_SLED_CACHE_MB") {
        sled_config.cache_capacity_bytes = mb << 20;
    }
    let mut store_config = StoreConfig::default();
    if let Some(mb) = knob("AITBC_BENCH_BUCKET_CACHE_MB") {
        store_config.bucket_cache_bytes = (mb as usize) << 20;
    }
    if let Some(mb) = knob("AITBC_BENCH_WRITE_BACK_MB") {
        store_config.write_back_bytes = (mb as usize) << 20;
    }
    if let Some(blocks) = knob("AITBC_BENCH_WRITE_BACK_BLOCKS") {
        store_config.write_back_blocks = blocks;
    }
    let max_size = knob("AITBC_BENCH_MAX_ENTRIES").unwrap_or(u64::MAX);
    let min_size = knob("AITBC_BENCH_MIN_ENTRIES").unwrap_or(0);
    eprintln!("sled cache {sled_config:?}, store {store_config:?}");
    let kv = TimedKv {
        inner: SledKv::open_with(dir.path(), &sled_config).expect("sled"),
        write_ns: AtomicU64::new(0),
        flush_ns: AtomicU64::new(0),
        written_bytes: AtomicU64::new(0),
    };
    let mut store = ChainStore::open_with(kv, &genesis, &store_config).expect("open");
    let mut rng = Rng(42);
    let mut round = 0u64;
    let mut size = 0u64;

    let mut group = c.benchmark_group("state_root_update");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(BLOCK as u64));
    for target in SIZES.into_iter().filter(|s| *s <= max_size) {
        let t = Instant::now();
        grow(&mut store, size, target);
        store.kv().take();
        size = target;
        eprintln!("state grown to {size} entries in {:.1?}", t.elapsed());
        if size < min_size {
            continue;
        }
        // `AITBC_BENCH_PROFILE_BLOCKS=n`: a fixed number of blocks without criterion, with
        // this thread's CPU time beside wall time (stable on a busy machine), for profilers.
        if let Some(n) = knob("AITBC_BENCH_PROFILE_BLOCKS") {
            // Unmeasured blocks first (`AITBC_BENCH_PROFILE_WARMUP`), to reach the steady
            // state the growing commits disturb.
            for _ in 0..knob("AITBC_BENCH_PROFILE_WARMUP").unwrap_or(0) {
                round += 1;
                let changes = block_changes(&mut rng, size, round);
                let prepared = store.prepare(&changes).expect("prepare");
                commit(&mut store, prepared);
            }
            store.kv().take();
            let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..n {
                round += 1;
                let changes = block_changes(&mut rng, size, round);
                let (t, c) = (Instant::now(), thread_cpu());
                let prepared = store.prepare(&changes).expect("prepare");
                commit(&mut store, prepared);
                wall += t.elapsed();
                cpu += thread_cpu() - c;
            }
            let (w, f, bytes) = store.kv().take();
            eprintln!(
                "  {size}: prepare+commit {:.2} µs/entry wall, {:.2} µs/entry thread CPU \
                 (sled batch {:.2}, flush {:.2}; {:.1} MB/block) over {n} blocks",
                per(wall, n as u32),
                per(cpu, n as u32),
                per(w, n as u32),
                per(f, n as u32),
                bytes as f64 / 1e6 / n as f64,
            );
            continue;
        }

        let mut parts = [Duration::ZERO; 3];
        let mut blocks = 0u32;
        group.bench_function(BenchmarkId::new("prepare+commit", size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let changes = block_changes(&mut rng, size, round);
                    let t0 = Instant::now();
                    let prepared = store.prepare(&changes).expect("prepare");
                    let t1 = Instant::now();
                    commit(&mut store, prepared);
                    let t2 = Instant::now();
                    parts[0] += t1 - t0;
                    parts[1] += t2 - t1;
                    blocks += 1;
                    total += t2 - t0;
                }
                total
            })
        });
        let (w, f, bytes) = store.kv().take();
        eprintln!(
            "  {size}: prepare {:.2} µs/entry, commit {:.2} µs/entry (sled batch {:.2}, flush {:.2}; \
             {:.1} MB/block) over {blocks} blocks",
            per(parts[0], blocks),
            per(parts[1], blocks),
            per(w, blocks),
            per(f, blocks),
            bytes as f64 / 1e6 / f64::from(blocks.max(1)),
        );

        // As a node does it: execution first reads every entry it will write, then the block
        // is prepared and committed.
        blocks = 0;
        parts = [Duration::ZERO; 3];
        store.kv().take();
        group.bench_function(BenchmarkId::new("read+prepare+commit", size), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let changes = block_changes(&mut rng, size, round);
                    let t0 = Instant::now();
                    for (k, _) in &changes {
                        std::hint::black_box(store.get(k).expect("read"));
                    }
                    let t1 = Instant::now();
                    let prepared = store.prepare(&changes).expect("prepare");
                    let t2 = Instant::now();
                    commit(&mut store, prepared);
                    let t3 = Instant::now();
                    parts[0] += t1 - t0;
                    parts[1] += t2 - t1;
                    parts[2] += t3 - t2;
                    blocks += 1;
                    total += t3 - t0;
                }
                total
            })
        });
        eprintln!(
            "  {size}: read {:.2} µs/entry, prepare {:.2} µs/entry, commit {:.2} µs/entry over {blocks} blocks",
            per(parts[0], blocks),
            per(parts[1], blocks),
            per(parts[2], blocks)
        );
    }
    group.finish();

    // Start-up cost at the final size: open re-reads and re-hashes the whole state.
    let root = store.state_root();
    drop(store);
    let t = Instant::now();
    let kv = SledKv::open_with(dir.path(), &sled_config).expect("sled");
    let reopened = ChainStore::open_with(kv, &genesis, &store_config).expect("reopen");
    assert_eq!(reopened.state_root(), root);
    eprintln!(
        "reopen with {size} entries (every bucket re-hashed, keys and values checked): {:.1?}",
        t.elapsed()
    );
}

criterion_group!(benches, state_root);
criterion_main!(benches);
