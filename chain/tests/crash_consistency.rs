//! "A store reopened after a write is interrupted at any point holds either the whole block or
//! none of it" (SPEC §4a, §10), tested with real process kills.
//!
//! The test re-runs its own binary as a child that commits blocks to a sled store in a loop,
//! in short runs staged block by block and flushed once, printing each height once the flush
//! that made it durable has returned. The parent SIGKILLs it at varied
//! moments, reopens the store, and checks: the store opens (its invariants hold), no height the
//! child reported is lost, and the state is exactly the deterministic generator's state at the
//! head (every change of the head block, none of the next one's).

use aitbc_chain::address::Address;
use aitbc_chain::block::{tx_root, Block, CommitCertificate, Header};
use aitbc_chain::crypto::SecretKey;
use aitbc_chain::genesis::Genesis;
use aitbc_chain::state::{commitment, MemState, StateChanges, StateReader};
use aitbc_chain::store::{ChainStore, SledKv};
use aitbc_chain::tx::{HashedTx, Tx, TxKind};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child: the store directory to commit into.
const CHILD_ENV: &str = "AITBC_CRASH_CHILD_DIR";
/// This test's name, for re-running exactly it in the child.
const TEST_NAME: &str = "killed_store_holds_whole_blocks_or_none";
const KEYSPACE: u64 = 20_000;
const CHANGES_PER_BLOCK: u64 = 2_500;
const TXS_PER_BLOCK: u64 = 16;
/// Most blocks the child commits with one flush.
const MAX_RUN: u64 = 3;

fn genesis() -> Genesis {
    Genesis::dev("crash-test", &[&SecretKey::from_seed([1; 32])], &[])
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key(i: u64) -> Vec<u8> {
    format!("crash/{i:05}").into_bytes()
}

/// Block `height`'s state changes: writes of fresh values to pseudo-random keys, one in ten a
/// delete, so that consecutive blocks overwrite and remove each other's entries.
fn block_changes(height: u64) -> StateChanges {
    (0..CHANGES_PER_BLOCK)
        .map(|t| {
            let r = mix(height << 20 | t);
            let i = r % KEYSPACE;
            let value = (!r.is_multiple_of(10))
                .then(|| format!("h{height}-t{t}-k{i}-{r:016x}").into_bytes());
            (key(i), value)
        })
        .collect()
}

fn block_txs(height: u64) -> Vec<HashedTx> {
    let sender = SecretKey::from_seed([7; 32]);
    (0..TXS_PER_BLOCK)
        .map(|j| {
            let nonce = (height - 1) * TXS_PER_BLOCK + j + 1;
            HashedTx::new(Tx::signed(
                "crash-test",
                TxKind::Transfer {
                    to: Address([3; 20]),
                    amount: nonce,
                },
                &sender,
                nonce,
                10_000,
            ))
        })
        .collect()
}

fn open(dir: &Path) -> ChainStore<SledKv> {
    let kv = SledKv::open(dir).unwrap_or_else(|e| panic!("sled open: {e}"));
    ChainStore::open(kv, &genesis()).unwrap_or_else(|e| panic!("store refused to open: {e}"))
}

/// The child: commit generator blocks on top of whatever the store holds, forever, in runs of
/// 1 to [`MAX_RUN`] blocks each staged as its own batch and flushed once (as block sync does),
/// so kills also land between a run's batches and before its flush.
fn run_child(dir: &Path) {
    let mut store = open(dir);
    println!("READY {}", store.height());
    loop {
        let first = store.height() + 1;
        let run = 1 + first % MAX_RUN;
        for height in first..first + run {
            stage_next(&mut store, height);
        }
        store.flush().expect("flush");
        for height in first..first + run {
            println!("COMMITTED {height}");
        }
    }
}

fn stage_next(store: &mut ChainStore<SledKv>, height: u64) {
    let prepared = store.prepare(&block_changes(height)).expect("prepare");
    let txs = block_txs(height);
    let head = store.head().clone();
    let header = Header {
        height,
        timestamp_ms: head.timestamp_ms + 1,
        parent_hash: store.head_hash(),
        tx_root: tx_root(&txs),
        state_root: prepared.root(),
        ..head
    };
    let block = Block {
        header,
        txs,
        last_commit: store.certificate(height - 1).expect("read cert"),
    };
    let cert = CommitCertificate {
        height,
        view: 0,
        block_hash: block.hash(),
        signatures: vec![],
    };
    // Lets the parent aim its kill at the write itself.
    println!("COMMITTING {height}");
    store.stage_block(block, &cert, prepared).expect("stage");
}

struct Killed {
    last_reported: Option<u64>,
    stderr: String,
}

/// When to kill the child.
#[derive(Clone, Copy, Debug)]
enum When {
    /// Right after the spawn: may land while it opens or initialises the store.
    AtOnce,
    /// This many milliseconds after it reports ready: anywhere in its loop.
    AfterReady(u64),
    /// This many microseconds after it announces the `n`-th commit of its run: inside
    /// `commit_block`'s batch write or flush most of the time.
    InCommit { n: usize, micros: u64 },
}

/// Runs a child on `dir` and SIGKILLs it as `when` says.
fn run_and_kill(dir: &Path, when: When) -> Killed {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    // Waits for the `n`-th line containing `marker` (libtest prints "test <name> ... " without
    // a newline first, so markers are matched anywhere in a line).
    let mut lines = Vec::new();
    let mut wait_for = |marker: &str, n: usize, child: &mut std::process::Child| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = 0;
        loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => {
                    let hit = line.contains(marker);
                    lines.push(line);
                    if hit {
                        seen += 1;
                        if seen == n {
                            return;
                        }
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("child exited early: {status}");
                    }
                    assert!(Instant::now() < deadline, "child never printed {marker}");
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("child closed stdout before {marker}")
                }
            }
        }
    };
    match when {
        When::AtOnce => {}
        When::AfterReady(ms) => {
            wait_for("READY ", 1, &mut child);
            std::thread::sleep(Duration::from_millis(ms));
        }
        When::InCommit { n, micros } => {
            wait_for("READY ", 1, &mut child);
            wait_for("COMMITTING ", n, &mut child);
            std::thread::sleep(Duration::from_micros(micros));
        }
    }
    if let Ok(Some(status)) = child.try_wait() {
        let err = err_reader.join().unwrap_or_default();
        panic!("child exited by itself ({status}); stderr:\n{err}");
    }
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    reader.join().expect("stdout reader");
    lines.extend(rx.try_iter());
    let last_reported = lines
        .iter()
        .filter_map(|l| l.split_once("COMMITTED ").map(|(_, h)| h))
        .filter_map(|h| h.trim().parse::<u64>().ok())
        .max();
    Killed {
        last_reported,
        stderr: err_reader.join().unwrap_or_default(),
    }
}

#[test]
fn killed_store_holds_whole_blocks_or_none() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let g = genesis();
    let mut expected = MemState::default();
    expected.apply(&g.initial_state().expect("genesis state"));
    let mut expected_height = 0u64;
    let mut prev_head = 0u64;

    let plan = [
        When::AfterReady(300),
        When::InCommit { n: 2, micros: 0 },
        When::AfterReady(35),
        When::InCommit {
            n: 3,
            micros: 1_500,
        },
        When::AfterReady(700),
        When::InCommit {
            n: 1,
            micros: 4_000,
        },
        When::AtOnce,
        When::InCommit {
            n: 2,
            micros: 8_000,
        },
        When::AfterReady(120),
        When::InCommit { n: 4, micros: 500 },
        When::AfterReady(10),
        When::InCommit {
            n: 1,
            micros: 12_000,
        },
        When::InCommit {
            n: 2,
            micros: 2_500,
        },
        When::InCommit {
            n: 3,
            micros: 6_000,
        },
    ];
    let started = Instant::now();
    for (round, when) in plan.into_iter().enumerate() {
        let killed = run_and_kill(dir.path(), when);
        let store = open(dir.path());
        let head = store.height();
        assert!(
            head >= prev_head,
            "round {round}: head went back from {prev_head} to {head}"
        );
        if let Some(reported) = killed.last_reported {
            assert!(
                head >= reported,
                "round {round}: child reported height {reported} committed, store holds {head}; \
                 child stderr:\n{}",
                killed.stderr
            );
        }
        // At most the run in flight when the kill landed is there unreported.
        let known = killed.last_reported.unwrap_or(prev_head).max(prev_head);
        assert!(
            head <= known + MAX_RUN,
            "round {round}: store holds {head}, child reported only {known}"
        );
        while expected_height < head {
            expected_height += 1;
            expected.apply(&block_changes(expected_height));
        }

        // The state is exactly the generator's at `head`: all of its changes, none of the next.
        for i in 0..KEYSPACE {
            let k = key(i);
            assert_eq!(
                store.get(&k).expect("read"),
                expected.0.get(&k).cloned(),
                "round {round}: key {i} at head {head}"
            );
        }
        let root = commitment::state_root(
            expected.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            store.num_buckets(),
        )
        .expect("valid bucket count");
        assert_eq!(store.state_root(), root, "round {round}");
        assert_eq!(store.head().state_root, root, "round {round}");

        // The block and its indexes are all there; nothing of the next block is.
        if head > 0 {
            let block = store.block(head).expect("read").expect("head block");
            assert_eq!(block.txs, block_txs(head), "round {round}");
            assert_eq!(
                store.certificate(head).expect("read").map(|c| c.block_hash),
                Some(block.hash())
            );
            for (index, tx) in block.txs.iter().enumerate() {
                let loc = store
                    .tx_location(&tx.hash)
                    .expect("read")
                    .expect("indexed tx");
                assert_eq!((loc.height, loc.index), (head, index as u32));
            }
        }
        assert!(store.block(head + 1).expect("read").is_none());
        assert!(store.certificate(head + 1).expect("read").is_none());
        for tx in block_txs(head + 1) {
            assert!(
                store.tx_location(&tx.hash).expect("read").is_none(),
                "round {round}"
            );
        }
        assert_eq!(
            store
                .block_height_by_hash(&store.head_hash())
                .expect("read"),
            Some(head)
        );
        eprintln!(
            "round {round}: killed {when:?}, child reported {:?}, store head {head}",
            killed.last_reported
        );
        prev_head = head;
    }
    assert!(prev_head > 0, "the child never committed a block");
    eprintln!("{} kills in {:.1?}", plan.len(), started.elapsed());
}
