//! Executing and committing a block of already-verified transfers, one core (SPEC §9 target:
//! ≥ 100,000 transfers/s). Measures `execute_block` + `prepare` (new state root) +
//! `commit_block` (one atomic sled batch, flushed) for blocks of 10,000 transfers from 10,000
//! senders to fresh recipients, so each block touches ~20,000 state entries. Signing happens
//! outside the timed region; signatures count as verified at admission (`|_| true`).

use aitbc_chain::block::{
    evidence_hash, last_commit_hash, tx_root, Block, CommitCertificate, Header,
};
use aitbc_chain::execution::{execute_block, BlockEnv};
use aitbc_chain::genesis::Genesis;
use aitbc_chain::hash::Hash;
use aitbc_chain::params::AIT;
use aitbc_chain::store::kv::SledKv;
use aitbc_chain::store::ChainStore;
use aitbc_chain::{Address, HashedTx, SecretKey, Tx, TxKind};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::{Duration, Instant};

const SENDERS: usize = 10_000;
const CHAIN: &str = "ait-bench";

struct Bench {
    store: ChainStore<SledKv>,
    senders: Vec<SecretKey>,
    proposer: Address,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let validator = SecretKey::from_seed([1; 32]);
        let senders: Vec<SecretKey> = (0..SENDERS)
            .map(|i| SecretKey::from_seed(Hash::of(&(i as u64).to_le_bytes()).0))
            .collect();
        let accounts: Vec<(Address, u64)> = senders
            .iter()
            .map(|k| (Address::of(&k.public()), 1_000_000 * AIT))
            .collect();
        let mut genesis = Genesis::dev(CHAIN, &[&validator], &accounts);
        genesis.params.max_block_bytes = 8 << 20;
        let kv = SledKv::open(dir.path()).expect("open sled");
        let store = ChainStore::open(kv, &genesis).expect("open store");
        Bench {
            store,
            senders,
            proposer: Address::of(&validator.public()),
            _dir: dir,
        }
    }

    /// Block `height`: every sender sends one transfer to a recipient never seen before.
    fn txs(&self, height: u64) -> Vec<HashedTx> {
        self.senders
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let to = Address(
                    Hash::of(&[height.to_le_bytes(), (i as u64).to_le_bytes()].concat()).0[..20]
                        .try_into()
                        .expect("20 bytes"),
                );
                HashedTx::new(Tx::signed(
                    CHAIN,
                    TxKind::Transfer { to, amount: 1_000 },
                    k,
                    height,
                    10 * AIT,
                ))
            })
            .collect()
    }

    /// Wall time of each phase (execute, prepare, commit), then this thread's CPU time of each.
    fn execute_and_commit(&mut self, txs: Vec<HashedTx>) -> [Duration; 6] {
        let (c0, t0) = (thread_cpu(), Instant::now());
        let head = self.store.head().clone();
        let height = head.height + 1;
        let env = BlockEnv {
            chain_id: CHAIN.into(),
            height,
            proposer: self.proposer,
        };
        let outcome = execute_block(&self.store, env, &txs, |_| true).expect("valid block");
        let (c1, t1) = (thread_cpu(), Instant::now());
        let prepared = self.store.prepare(&outcome.changes).expect("prepare");
        let (c2, t2) = (thread_cpu(), Instant::now());
        let header = Header {
            chain_id: CHAIN.into(),
            height,
            view: 0,
            timestamp_ms: height,
            parent_hash: head.hash(),
            proposer: self.proposer,
            tx_root: tx_root(&txs),
            state_root: prepared.root(),
            validators_hash: head.next_validators_hash,
            next_validators_hash: outcome.next_validators.hash(),
            last_commit_hash: last_commit_hash(None),
            evidence_hash: evidence_hash(&txs),
        };
        let block = Block {
            header,
            txs,
            last_commit: None,
        };
        let cert = CommitCertificate {
            height,
            view: 0,
            block_hash: block.hash(),
            signatures: vec![],
        };
        self.store
            .commit_block(block, &cert, prepared)
            .expect("commit");
        let (c3, t3) = (thread_cpu(), Instant::now());
        [t1 - t0, t2 - t1, t3 - t2, c1 - c0, c2 - c1, c3 - c2]
    }
}

/// CPU time this thread has run (from `/proc/thread-self/schedstat`; zero where absent):
/// unlike wall time, it does not grow while other processes hold the cores. It leaves out the
/// threads `prepare` spreads its buckets over, so prepare's figure is this thread's share.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Microseconds per transfer.
fn per(d: Duration, blocks: u32) -> f64 {
    d.as_secs_f64() * 1e6 / (f64::from(blocks.max(1)) * SENDERS as f64)
}

fn report(parts: &[Duration; 6], blocks: u32) {
    let [e, p, c, ce, cp, cc] = parts.map(|d| per(d, blocks));
    eprintln!(
        "  per transfer over {blocks} blocks: execute {e:.2} µs, prepare {p:.2} µs, commit \
         {c:.2} µs; this thread's CPU {ce:.2} + {cp:.2} + {cc:.2} = {:.2} µs",
        ce + cp + cc
    );
}

/// `AITBC_BENCH_PROFILE_BLOCKS=n`: sign `n` blocks first, then only execute and commit them,
/// with no criterion around it, for profilers (signing would otherwise dominate a profile).
fn profile_run(b: &mut Bench, blocks: u64) {
    let first = b.store.height() + 1;
    let all: Vec<Vec<HashedTx>> = (first..first + blocks).map(|h| b.txs(h)).collect();
    let mut parts = [Duration::ZERO; 6];
    let mut all_parts = [Duration::ZERO; 6];
    for (i, txs) in all.into_iter().enumerate() {
        let p = b.execute_and_commit(txs);
        for (a, d) in parts.iter_mut().zip(p) {
            *a += d;
        }
        if (i + 1) % 10 == 0 {
            eprint!("blocks {:>3}..{:>3}:", i - 8, i + 1);
            report(&parts, 10);
            for (a, d) in all_parts.iter_mut().zip(parts) {
                *a += d;
            }
            parts = [Duration::ZERO; 6];
        }
    }
    for (a, d) in all_parts.iter_mut().zip(parts) {
        *a += d;
    }
    report(&all_parts, blocks as u32);
}

fn bench(c: &mut Criterion) {
    let mut b = Bench::new();
    if let Some(n) = std::env::var("AITBC_BENCH_PROFILE_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        profile_run(&mut b, n);
        return;
    }
    let mut parts = [Duration::ZERO; 6];
    let mut blocks = 0u32;
    let mut g = c.benchmark_group("execution");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(SENDERS as u64));
    g.bench_function("execute_and_commit_10k_transfers", |bencher| {
        bencher.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let txs = b.txs(b.store.height() + 1);
                let start = Instant::now();
                let p = b.execute_and_commit(txs);
                total += start.elapsed();
                for (a, d) in parts.iter_mut().zip(p) {
                    *a += d;
                }
                blocks += 1;
            }
            total
        })
    });
    g.finish();
    report(&parts, blocks);
}

criterion_group!(benches, bench);
criterion_main!(benches);
