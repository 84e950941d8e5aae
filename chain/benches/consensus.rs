//! Consensus engine cost per height: n validators' engines exchange every message in memory
//! (no network, no store), each proposal carries an empty block, and every node decides and
//! commits before the next height. What remains is the engine itself: signing, verifying each
//! proposal and vote once per receiver, tallies, certificates. It bounds the empty blocks per
//! second a devnet can commit at `block_time_ms = 0` (SPEC §9 target: ≥ 100/s for 4 validators
//! on one machine, network and store included).

use aitbc_chain::block::{evidence_hash, last_commit_hash, tx_root, Block, Header};
use aitbc_chain::consensus::{Config, Engine, Input, Output};
use aitbc_chain::hash::Hash;
use aitbc_chain::validator_set::{Candidate, ValidatorSet};
use aitbc_chain::{Address, SecretKey};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::VecDeque;

const CHAIN: &str = "ait-bench";

fn empty_block(height: u64, view: u64, proposer: Address) -> Block {
    Block {
        header: Header {
            chain_id: CHAIN.into(),
            height,
            view,
            timestamp_ms: 0,
            parent_hash: Hash::ZERO,
            proposer,
            tx_root: tx_root(&[]),
            state_root: Hash::ZERO,
            validators_hash: Hash::ZERO,
            next_validators_hash: Hash::ZERO,
            last_commit_hash: last_commit_hash(None),
            evidence_hash: evidence_hash(&[]),
        },
        txs: Vec::new(),
        last_commit: None,
    }
}

struct Net {
    engines: Vec<Engine>,
    addrs: Vec<Address>,
    set: ValidatorSet,
    queue: VecDeque<(usize, Input)>,
    decided: Vec<u64>,
}

impl Net {
    fn new(n: usize) -> Net {
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
            .collect();
        let set = ValidatorSet::select(
            keys.iter()
                .map(|k| Candidate {
                    address: Address::of(&k.public()),
                    pubkey: k.public(),
                    stake: 10,
                })
                .collect(),
            1,
            100,
        );
        let cfg = Config {
            chain_id: CHAIN.into(),
            block_time_ms: 0,
            view_timeout_ms: 1000,
        };
        let mut net = Net {
            engines: Vec::new(),
            addrs: keys.iter().map(|k| Address::of(&k.public())).collect(),
            set: set.clone(),
            queue: VecDeque::new(),
            decided: vec![0; n],
        };
        for (i, k) in keys.into_iter().enumerate() {
            let mut out = Vec::new();
            net.engines.push(Engine::new(
                cfg.clone(),
                Some(k),
                1,
                set.clone(),
                vec![],
                &mut out,
            ));
            net.apply(i, out);
        }
        net
    }

    fn apply(&mut self, i: usize, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Broadcast(m) => {
                    for j in 0..self.engines.len() {
                        if j != i {
                            self.queue.push_back((j, Input::Message(m.clone())));
                        }
                    }
                }
                Output::BuildBlock { height, view } => self.queue.push_back((
                    i,
                    Input::BlockBuilt {
                        height,
                        view,
                        block: Box::new(empty_block(height, view, self.addrs[i])),
                    },
                )),
                Output::ValidateBlock(b) => self.queue.push_back((
                    i,
                    Input::BlockValidated {
                        height: b.header.height,
                        block_hash: b.hash(),
                        valid: true,
                    },
                )),
                Output::Decide { certificate, .. } => {
                    self.decided[i] = certificate.height;
                    self.queue.push_back((
                        i,
                        Input::Committed {
                            height: certificate.height,
                            next_set: self.set.clone(),
                        },
                    ));
                }
                Output::Persist(_)
                | Output::Schedule { .. }
                | Output::Evidence(..)
                | Output::SyncNeeded { .. } => {}
            }
        }
    }

    /// Runs until every node has decided `heights` more heights.
    fn run(&mut self, heights: u64) {
        let target = self.decided.iter().copied().max().unwrap_or(0) + heights;
        while self.decided.iter().any(|&d| d < target) {
            let Some((i, input)) = self.queue.pop_front() else {
                panic!("the network went quiet before height {target}");
            };
            let mut out = Vec::new();
            self.engines[i].handle(input, &mut out);
            self.apply(i, out);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("consensus");
    g.sample_size(10);
    for n in [4usize, 16] {
        g.throughput(Throughput::Elements(10));
        let mut net = Net::new(n);
        g.bench_function(
            format!("{n}_validators_10_heights_all_engines_one_core"),
            |b| b.iter(|| net.run(10)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
