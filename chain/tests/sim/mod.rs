//! Deterministic simulation of `n` PBFT [`Engine`]s over a simulated network.
//!
//! One seeded scheduler owns everything: an event queue ordered by (simulated ms, sequence
//! number), a SplitMix64 stream, and per node an engine, its store (committed blocks with
//! certificates) and its WAL (records, split into a durable prefix and an unsynced tail). No wall
//! clock, no hash-map iteration order: a seed is a run.
//!
//! Each node carries out its engine's outputs as the real node would: `Persist` appends to the
//! WAL, which becomes durable when the node next sends (it syncs before every broadcast);
//! `Broadcast` sends to every other node over links with random delay, loss, duplication and
//! partitions; `Schedule` becomes a timer event; `BuildBlock` / `ValidateBlock` are answered after
//! a few ms from the node's committed chain; `Decide` verifies the certificate, appends to the
//! store, empties the WAL and answers `Committed`; `SyncNeeded` copies verified blocks from a
//! reachable peer. Byzantine behaviours live in [`byzantine`].
//!
//! A crash drops the engine and keeps the store and the durable WAL; the unsynced tail survives
//! in part (a random prefix, all of it a third of the time), as after a kill -9 the OS may or may
//! not have written it. A mid-step crash lands after a random number of one step's outputs.
//!
//! Invariants, checked at the event that could break them (the run stops there):
//! - agreement: no two honest nodes commit different blocks at one height (decided or synced),
//!   and no two valid commit certificates for different blocks exist at one height, whoever
//!   holds them (Byzantine twins included);
//! - validity: every committed block was built by some node (an answer to `BuildBlock` or a
//!   Byzantine forgery), is not marked invalid, and extends the committing node's parent;
//! - no honest double-sign, over everything an honest validator ever broadcast (across its
//!   crash-restarts): no conflicting votes ([`Vote::conflicts_with`]), no two different
//!   ViewChanges for one (height, view), no two proposals for one (height, view);
//! - every `Evidence` is two valid conflicting votes, and never names an honest validator;
//! - no honest node rejects (`Verdict::Reject`) a message an honest node sent;
//! - liveness: from the start of the stable phase every honest node commits
//!   `liveness_heights` more heights than the highest honest height then, within
//!   [`liveness_bound_ms`].
//!
//! [`Vote::conflicts_with`]: aitbc_chain::vote::Vote::conflicts_with

// Support code for several tests: not every test uses every accessor, and the event-log kinds'
// payloads are read only through `Debug` in failure reports.
#![allow(dead_code)]

pub mod byzantine;
pub mod config;
pub mod network;
pub mod rng;

use aitbc_chain::address::Address;
use aitbc_chain::block::{last_commit_hash, Block, CommitCertificate, Header};
use aitbc_chain::consensus::proposer::ProposerSchedule;
use aitbc_chain::consensus::{
    Config, Engine, Input, Message, Output, Record, Timeout, TimeoutKind, Verdict, ViewChange,
    MAX_TIMEOUT_STEPS,
};
use aitbc_chain::crypto::{PublicKey, SecretKey};
use aitbc_chain::hash::Hash;
use aitbc_chain::validator_set::{Candidate, ValidatorSet};
use aitbc_chain::vote::{Phase, SignedVote};
use byzantine::{Equivocation, Side};
use config::{Fault, NetParams, Role, SimConfig};
use network::Network;
use rng::{mix, stream, SplitMix64};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::rc::Rc;

pub const CHAIN_ID: &str = "aitbc-sim";

/// The parent of height 1.
pub fn genesis_hash() -> Hash {
    Hash::of(b"aitbc-sim/genesis")
}

/// The state root an invalid-block proposer puts in its blocks; honest validation rejects it.
pub fn invalid_marker() -> Hash {
    Hash::of(b"invalid")
}

/// The command that reruns one seed alone.
pub fn rerun_command(seed: u64) -> String {
    format!(
        "AITBC_SIM_SEED={seed} AITBC_SIM_TRACE=1 cargo nextest run -p aitbc-chain --test simulation one_seed --no-capture"
    )
}

/// A message in flight: sent once, delivered to many.
struct Packet {
    msg: Message,
    hash: Hash,
    /// Sent unmodified by an honest node: no honest receiver may reject it.
    honest: bool,
}

enum Ev {
    Deliver {
        to: usize,
        from: usize,
        pkt: Rc<Packet>,
    },
    Timer {
        node: usize,
        inc: u64,
        timeout: Timeout,
    },
    Built {
        node: usize,
        inc: u64,
        height: u64,
        view: u64,
        block: Box<Block>,
    },
    Validated {
        node: usize,
        inc: u64,
        height: u64,
        hash: Hash,
        valid: bool,
    },
    SyncRequest {
        node: usize,
        inc: u64,
    },
    SyncPush {
        node: usize,
        from: usize,
        blocks: Rc<Vec<(Block, CommitCertificate)>>,
    },
    Fault(Fault),
    Start {
        node: usize,
    },
    Stabilize,
    Deadline,
}

/// One entry of the event log kept for failure reports.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Recv(MsgKind),
    Drop(MsgKind),
    Send(MsgKind),
    Timer(TimeoutKind),
    Built,
    Validated(bool),
    Decide,
    SyncCommit,
    SyncNeeded,
    SyncPush,
    Evidence,
    Crash,
    Restart,
    Start,
    Partition,
    Heal,
    Stabilize,
    Deadline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgKind {
    Proposal,
    Prepare,
    Commit,
    ViewChange,
}

fn msg_kind(m: &Message) -> (MsgKind, Hash) {
    match m {
        Message::Proposal(p) => (MsgKind::Proposal, p.signed.proposal.block_hash),
        Message::Vote(v) => (
            match v.vote.phase {
                Phase::Prepare => MsgKind::Prepare,
                Phase::Commit => MsgKind::Commit,
            },
            v.vote.block_hash,
        ),
        Message::ViewChange(vc) => (
            MsgKind::ViewChange,
            vc.signed
                .view_change
                .prepared
                .map_or(Hash::ZERO, |p| p.block_hash),
        ),
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub t: u64,
    pub node: usize,
    pub kind: Kind,
    pub height: u64,
    pub view: u64,
    pub hash: Hash,
    pub peer: Option<usize>,
}

impl fmt::Display for Rec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.node == usize::MAX {
            "network".to_string()
        } else {
            format!("node {:>2}", self.node)
        };
        write!(
            f,
            "t={:>7} {who:<7} {:<22} h={} v={}",
            self.t,
            format!("{:?}", self.kind),
            self.height,
            self.view
        )?;
        if self.hash != Hash::ZERO {
            write!(f, " {}", &self.hash.to_string()[..10])?;
        }
        if let Some(p) = self.peer {
            write!(f, " peer {p}")?;
        }
        Ok(())
    }
}

struct Node {
    val: usize,
    role: Role,
    engine: Option<Engine>,
    up: bool,
    started: bool,
    /// Bumped at every crash and restart: events of an earlier incarnation are dropped.
    inc: u64,
    store: Vec<(Block, CommitCertificate)>,
    wal_synced: Vec<Record>,
    wal_pending: Vec<Record>,
    /// A mid-step crash waiting for the node's next engine step.
    crash_armed: Option<u64>,
    sync_inflight: bool,
    last_push: Vec<Option<u64>>,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub deliveries: u64,
    pub broadcasts: u64,
    /// ViewChange messages signed by honest validators.
    pub view_changes: u64,
    pub decides: u64,
    /// Highest view any block was decided in.
    pub max_decided_view: u64,
    pub synced_blocks: u64,
    pub crashes: u64,
    pub restarts: u64,
}

struct Liveness {
    started_at: u64,
    base: u64,
    target: u64,
    deadline: u64,
    done_at: Option<u64>,
}

/// A failed invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    pub kind: &'static str,
    pub detail: String,
}

pub struct Sim {
    pub cfg: SimConfig,
    ecfg: Config,
    rng: SplitMix64,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    key_seeds: Vec<[u8; 32]>,
    pubkeys: Vec<PublicKey>,
    sets: Vec<ValidatorSet>,
    set_hashes: Vec<Hash>,
    net: Network,
    chaos: bool,
    trace: Sha256,
    ring: VecDeque<Rec>,
    verbose: bool,
    // Invariant state.
    /// Height → (hash, node) over every commit of an honest node (decided or synced).
    decided: BTreeMap<u64, (Hash, usize)>,
    /// Height → hash over every valid commit certificate any node (also Byzantine) accepted.
    certified: BTreeMap<u64, (Hash, usize)>,
    /// Every block some BuildBlock (or a Byzantine forgery) produced: hash → marked invalid.
    built: BTreeMap<Hash, bool>,
    sent_votes: BTreeMap<(usize, u64, u64, Phase), Hash>,
    sent_view_changes: BTreeMap<(usize, u64, u64), ViewChange>,
    sent_proposals: BTreeMap<(usize, u64, u64), Hash>,
    equivocations: BTreeMap<(usize, u64, u64), Equivocation>,
    /// (node that reported it, the two votes).
    pub evidence: Vec<(usize, SignedVote, SignedVote)>,
    violation: Option<Violation>,
    live: Option<Liveness>,
    pub stats: Stats,
}

const RING: usize = 400;

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let ecfg = Config {
            chain_id: CHAIN_ID.to_string(),
            block_time_ms: cfg.block_time_ms,
            view_timeout_ms: cfg.view_timeout_ms,
        };
        let key_seeds: Vec<[u8; 32]> = (0..cfg.n)
            .map(|i| {
                Hash::of_parts(&[
                    b"aitbc-sim/key",
                    &cfg.seed.to_le_bytes(),
                    &(i as u64).to_le_bytes(),
                ])
                .0
            })
            .collect();
        let pubkeys = key_seeds
            .iter()
            .map(|s| SecretKey::from_seed(*s).public())
            .collect();
        let node_roles = cfg.nodes();
        let count = node_roles.len();
        let nodes = node_roles
            .iter()
            .map(|&(val, role)| Node {
                val,
                role,
                engine: None,
                up: false,
                started: false,
                inc: 0,
                store: Vec::new(),
                wal_synced: Vec::new(),
                wal_pending: Vec::new(),
                crash_armed: None,
                sync_inflight: false,
                last_push: vec![None; count],
            })
            .collect();
        let verbose = std::env::var_os("AITBC_SIM_TRACE").is_some_and(|v| v != "0");
        let mut sim = Sim {
            rng: SplitMix64::new(stream(cfg.seed, 2)),
            ecfg,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            key_seeds,
            pubkeys,
            sets: Vec::new(),
            set_hashes: Vec::new(),
            net: Network::default(),
            chaos: true,
            trace: Sha256::new(),
            ring: VecDeque::with_capacity(RING),
            verbose,
            decided: BTreeMap::new(),
            certified: BTreeMap::new(),
            built: BTreeMap::new(),
            sent_votes: BTreeMap::new(),
            sent_view_changes: BTreeMap::new(),
            sent_proposals: BTreeMap::new(),
            equivocations: BTreeMap::new(),
            evidence: Vec::new(),
            violation: None,
            live: None,
            stats: Stats::default(),
            cfg,
        };
        for node in 0..count {
            let late = sim.cfg.late_start.iter().find(|(n, _)| *n == node);
            let at = late.map_or(0, |(_, t)| *t);
            sim.push(at, Ev::Start { node });
        }
        for (t, f) in sim.cfg.faults.clone() {
            sim.push(t, Ev::Fault(f));
        }
        if let Some(t) = sim.cfg.stable_at_ms {
            sim.push(t, Ev::Stabilize);
        }
        sim
    }

    // ---- accessors for tests ----

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn role(&self, node: usize) -> Role {
        self.nodes[node].role
    }

    pub fn honest_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].role.is_honest())
            .collect()
    }

    /// Committed height of a node's store.
    pub fn height(&self, node: usize) -> u64 {
        self.nodes[node].store.len() as u64
    }

    pub fn is_up(&self, node: usize) -> bool {
        self.nodes[node].up
    }

    pub fn engine_view(&self, node: usize) -> Option<u64> {
        self.nodes[node].engine.as_ref().map(Engine::view)
    }

    /// The node's WAL: (durable records, unsynced tail).
    pub fn wal(&self, node: usize) -> (&[Record], &[Record]) {
        let n = &self.nodes[node];
        (&n.wal_synced, &n.wal_pending)
    }

    pub fn engine(&self, node: usize) -> Option<&Engine> {
        self.nodes[node].engine.as_ref()
    }

    /// The validator that proposes (`height`, `view`).
    pub fn proposer_of(&mut self, height: u64, view: u64) -> usize {
        let set = self.set_for(height).clone();
        let idx = ProposerSchedule::new(&set)
            .proposer(height, view)
            .expect("non-empty set");
        let pk = set.validators()[idx].pubkey;
        self.pubkeys
            .iter()
            .position(|k| *k == pk)
            .expect("known key")
    }

    pub fn store(&self, node: usize) -> &[(Block, CommitCertificate)] {
        &self.nodes[node].store
    }

    pub fn pubkey(&self, val: usize) -> PublicKey {
        self.pubkeys[val]
    }

    /// The validator set of `height`'s epoch.
    pub fn set_for(&mut self, height: u64) -> &ValidatorSet {
        let e = self.epoch(height);
        &self.sets[e]
    }

    pub fn min_honest_height(&self) -> u64 {
        self.honest_nodes()
            .iter()
            .map(|&i| self.height(i))
            .min()
            .unwrap_or(0)
    }

    pub fn max_honest_height(&self) -> u64 {
        self.honest_nodes()
            .iter()
            .map(|&i| self.height(i))
            .max()
            .unwrap_or(0)
    }

    pub fn trace_hash(&self) -> Hash {
        Hash(self.trace.clone().finalize().into())
    }

    /// Schedule a fault (scenario tests) at absolute time `at`.
    pub fn inject(&mut self, at: u64, fault: Fault) {
        self.push(at.max(self.now), Ev::Fault(fault));
    }

    pub fn recent(&self) -> impl Iterator<Item = &Rec> {
        self.ring.iter()
    }

    // ---- the scheduler ----

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn after(&mut self, delay: u64, ev: Ev) {
        self.push(self.now + delay, ev);
    }

    /// Processes one event; `Ok(false)` when the queue is empty.
    pub fn step(&mut self) -> Result<bool, Violation> {
        let Some(((t, _), ev)) = self.queue.pop_first() else {
            return Ok(false);
        };
        self.now = t;
        self.stats.events += 1;
        if self.stats.events > self.cfg.max_events {
            return Err(Violation {
                kind: "runaway",
                detail: format!("more than {} events", self.cfg.max_events),
            });
        }
        self.process(ev);
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        self.check_liveness()
    }

    /// Steps until `done` holds (checked after every event) or simulated time passes `until`.
    /// `Ok(true)` iff `done` held.
    pub fn run_until(
        &mut self,
        until: u64,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, Violation> {
        loop {
            if done(self) {
                return Ok(true);
            }
            match self.queue.first_key_value() {
                Some((&(t, _), _)) if t <= until => {}
                _ => {
                    self.now = self.now.max(until);
                    return Ok(done(self));
                }
            }
            self.step()?;
        }
    }

    /// True once the stable phase's liveness target is met.
    pub fn liveness_done(&self) -> Option<u64> {
        self.live
            .as_ref()
            .and_then(|l| l.done_at.map(|d| d - l.started_at))
    }

    fn log(
        &mut self,
        node: usize,
        kind: Kind,
        height: u64,
        view: u64,
        hash: Hash,
        peer: Option<usize>,
    ) {
        let rec = Rec {
            t: self.now,
            node,
            kind,
            height,
            view,
            hash,
            peer,
        };
        if self.verbose {
            eprintln!("{rec}");
        }
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(rec);
    }

    /// Folds one processed event into the trace hash.
    fn trace_event(&mut self, node: usize, tag: u8, a: u64, b: u64, digest: &Hash) {
        let mut buf = [0u8; 8 + 8 + 1 + 8 + 8 + 32];
        buf[..8].copy_from_slice(&self.now.to_le_bytes());
        buf[8..16].copy_from_slice(&(node as u64).to_le_bytes());
        buf[16] = tag;
        buf[17..25].copy_from_slice(&a.to_le_bytes());
        buf[25..33].copy_from_slice(&b.to_le_bytes());
        buf[33..].copy_from_slice(&digest.0);
        self.trace.update(buf);
    }

    fn violate(&mut self, kind: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { kind, detail });
        }
    }

    fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, pkt } => {
                self.trace_event(to, 1, from as u64, 0, &pkt.hash);
                self.stats.deliveries += 1;
                let (mk, hash) = msg_kind(&pkt.msg);
                let (h, v) = (pkt.msg.height(), pkt.msg.view());
                if !self.nodes[to].up || !self.net.link_up(from, to) {
                    self.log(to, Kind::Drop(mk), h, v, hash, Some(from));
                    return;
                }
                self.log(to, Kind::Recv(mk), h, v, hash, Some(from));
                let before = self.nodes[to].engine.as_ref().map(Engine::height);
                match self.feed(to, Input::Message(pkt.msg.clone())) {
                    Some(Verdict::Reject(r)) if pkt.honest => self.violate(
                        "honest message rejected",
                        format!(
                            "node {to} rejected {mk:?} h={h} v={v} from honest node {from}: {r}"
                        ),
                    ),
                    Some(Verdict::Ignore)
                        if self.cfg.push_sync && before.is_some_and(|b| h < b) =>
                    {
                        self.push_blocks(to, from, h);
                    }
                    _ => {}
                }
            }
            Ev::Timer { node, inc, timeout } => {
                let kind = timeout.kind as u64;
                self.trace_event(
                    node,
                    2,
                    timeout.height,
                    timeout.view * 2 + kind,
                    &Hash::ZERO,
                );
                if self.live_inc(node, inc) {
                    self.log(
                        node,
                        Kind::Timer(timeout.kind),
                        timeout.height,
                        timeout.view,
                        Hash::ZERO,
                        None,
                    );
                    self.feed(node, Input::Timeout(timeout));
                }
            }
            Ev::Built {
                node,
                inc,
                height,
                view,
                block,
            } => {
                let hash = block.hash();
                self.trace_event(node, 3, height, view, &hash);
                if self.live_inc(node, inc) {
                    self.log(node, Kind::Built, height, view, hash, None);
                    self.feed(
                        node,
                        Input::BlockBuilt {
                            height,
                            view,
                            block,
                        },
                    );
                }
            }
            Ev::Validated {
                node,
                inc,
                height,
                hash,
                valid,
            } => {
                self.trace_event(node, 4, height, u64::from(valid), &hash);
                if self.live_inc(node, inc) {
                    self.log(node, Kind::Validated(valid), height, 0, hash, None);
                    self.feed(
                        node,
                        Input::BlockValidated {
                            height,
                            block_hash: hash,
                            valid,
                        },
                    );
                }
            }
            Ev::SyncRequest { node, inc } => {
                self.trace_event(node, 5, 0, 0, &Hash::ZERO);
                if self.live_inc(node, inc) {
                    self.nodes[node].sync_inflight = false;
                    self.sync(node);
                }
            }
            Ev::SyncPush { node, from, blocks } => {
                let top = blocks.last().map_or(0, |b| b.0.header.height);
                self.trace_event(node, 6, from as u64, top, &Hash::ZERO);
                if self.nodes[node].up && self.net.link_up(from, node) {
                    self.log(node, Kind::SyncPush, top, 0, Hash::ZERO, Some(from));
                    self.apply_sync(node, from, &blocks);
                }
            }
            Ev::Fault(f) => self.fault(f),
            Ev::Start { node } => {
                self.trace_event(node, 8, 0, 0, &Hash::ZERO);
                if !self.nodes[node].started {
                    self.log(node, Kind::Start, 0, 0, Hash::ZERO, None);
                    self.restart(node);
                }
            }
            Ev::Stabilize => {
                self.trace_event(usize::MAX, 9, 0, 0, &Hash::ZERO);
                self.stabilize();
            }
            Ev::Deadline => {
                self.trace_event(usize::MAX, 10, 0, 0, &Hash::ZERO);
                self.log(usize::MAX, Kind::Deadline, 0, 0, Hash::ZERO, None);
            }
        }
    }

    fn live_inc(&self, node: usize, inc: u64) -> bool {
        let n = &self.nodes[node];
        n.up && n.inc == inc
    }

    // ---- faults and phases ----

    fn fault(&mut self, f: Fault) {
        match f {
            Fault::Crash { node, mid_step } => {
                self.trace_event(node, 7, 0, u64::from(mid_step), &Hash::ZERO);
                if !self.nodes[node].up {
                    return;
                }
                if mid_step && self.nodes[node].engine.is_some() {
                    let r = self.rng.next_u64();
                    self.nodes[node].crash_armed = Some(r);
                } else {
                    self.crash(node);
                }
            }
            Fault::Restart { node } => {
                self.trace_event(node, 7, 1, 0, &Hash::ZERO);
                if self.nodes[node].crash_armed.is_some() {
                    // The mid-step crash found no step to land in: it happens now.
                    self.crash(node);
                }
                if !self.nodes[node].up && self.nodes[node].started {
                    self.log(
                        node,
                        Kind::Restart,
                        self.height(node) + 1,
                        0,
                        Hash::ZERO,
                        None,
                    );
                    self.stats.restarts += 1;
                    self.restart(node);
                }
            }
            Fault::Partition(groups) => {
                let g = groups.iter().fold(0u64, |a, &x| a << 1 | u64::from(x));
                self.trace_event(usize::MAX, 7, 2, g, &Hash::ZERO);
                self.log(usize::MAX, Kind::Partition, g, 0, Hash::ZERO, None);
                self.net.partition(groups);
            }
            Fault::Heal => {
                self.trace_event(usize::MAX, 7, 3, 0, &Hash::ZERO);
                self.log(usize::MAX, Kind::Heal, 0, 0, Hash::ZERO, None);
                self.net.heal();
            }
        }
    }

    /// Kills a node: its engine and everything not yet durable are gone, except that the OS may
    /// have written some or all of the unsynced WAL tail anyway.
    fn crash(&mut self, node: usize) {
        let keep_all = self.rng.chance(333);
        let pending = self.nodes[node].wal_pending.len() as u64;
        let keep = if keep_all {
            pending
        } else {
            self.rng.below(pending + 1)
        };
        let h = self.height(node) + 1;
        let view = self.engine_view(node).unwrap_or(0);
        self.log(node, Kind::Crash, h, view, Hash::ZERO, None);
        self.stats.crashes += 1;
        let n = &mut self.nodes[node];
        n.engine = None;
        n.up = false;
        n.inc += 1;
        n.crash_armed = None;
        n.sync_inflight = false;
        n.wal_pending.truncate(keep as usize);
        let mut tail = std::mem::take(&mut n.wal_pending);
        n.wal_synced.append(&mut tail);
    }

    /// Starts (or restarts) a node from its store and durable WAL.
    fn restart(&mut self, node: usize) {
        let height = self.height(node) + 1;
        let set = self.set_for(height).clone();
        let n = &mut self.nodes[node];
        n.up = true;
        n.started = true;
        n.inc += 1;
        if n.role == Role::Silent {
            return;
        }
        let key = SecretKey::from_seed(self.key_seeds[n.val]);
        let wal = n.wal_synced.clone();
        let mut out = Vec::new();
        let engine = Engine::new(self.ecfg.clone(), Some(key), height, set, wal, &mut out);
        self.nodes[node].engine = Some(engine);
        self.outputs(node, out);
    }

    fn stabilize(&mut self) {
        self.log(usize::MAX, Kind::Stabilize, 0, 0, Hash::ZERO, None);
        self.chaos = false;
        self.net.heal();
        for node in 0..self.nodes.len() {
            self.nodes[node].crash_armed = None;
        }
        for node in 0..self.nodes.len() {
            if !self.nodes[node].up {
                if self.nodes[node].started {
                    self.stats.restarts += 1;
                }
                self.restart(node);
            }
        }
        let base = self.max_honest_height();
        let bound = liveness_bound_ms(&self.cfg);
        let deadline = self.now + bound;
        self.live = Some(Liveness {
            started_at: self.now,
            base,
            target: base + self.cfg.liveness_heights,
            deadline,
            done_at: None,
        });
        self.push(deadline + 1, Ev::Deadline);
    }

    fn check_liveness(&mut self) -> Result<bool, Violation> {
        let Some(l) = &self.live else {
            return Ok(true);
        };
        if l.done_at.is_some() {
            return Ok(true);
        }
        let (target, deadline, base, started) = (l.target, l.deadline, l.base, l.started_at);
        let honest = self.honest_nodes();
        if honest.iter().all(|&i| self.height(i) >= target) {
            if let Some(l) = &mut self.live {
                l.done_at = Some(self.now);
            }
            return Ok(true);
        }
        if self.now > deadline {
            let heights: Vec<String> = honest
                .iter()
                .map(|&i| {
                    format!(
                        "node {i}: height {} view {:?}",
                        self.height(i),
                        self.engine_view(i)
                    )
                })
                .collect();
            return Err(Violation {
                kind: "liveness",
                detail: format!(
                    "stable since t={started} ms with honest max height {base}; by t={} ms (bound {} ms) not every honest node reached height {target}: {}",
                    self.now,
                    deadline - started,
                    heights.join(", ")
                ),
            });
        }
        Ok(true)
    }

    // ---- validator sets ----

    fn epoch(&mut self, height: u64) -> usize {
        let e = (height.max(1) - 1) / self.cfg.rotation;
        let e = e as usize;
        while self.sets.len() <= e {
            let epoch = self.sets.len() as u64;
            let cands = (0..self.cfg.n)
                .map(|i| {
                    let stake = if self.cfg.equal_powers || !self.cfg.roles[i].is_honest() {
                        10
                    } else {
                        10 + mix(stream(self.cfg.seed, 3) ^ mix(epoch << 8 | i as u64)) % 11
                    };
                    Candidate {
                        address: Address::of(&self.pubkeys[i]),
                        pubkey: self.pubkeys[i],
                        stake,
                    }
                })
                .collect();
            let set = ValidatorSet::select(cands, 1, self.cfg.n as u64);
            self.set_hashes.push(set.hash());
            self.sets.push(set);
        }
        e
    }

    fn set_hash(&mut self, height: u64) -> Hash {
        let e = self.epoch(height);
        self.set_hashes[e]
    }

    // ---- a node carrying out its engine's outputs ----

    /// Feeds one input to a node's engine and carries out the outputs.
    fn feed(&mut self, node: usize, input: Input) -> Option<Verdict> {
        let mut engine = self.nodes[node].engine.take()?;
        let mut out = Vec::new();
        let verdict = engine.handle(input, &mut out);
        self.nodes[node].engine = Some(engine);
        self.outputs(node, out);
        Some(verdict)
    }

    fn outputs(&mut self, node: usize, out: Vec<Output>) {
        let len = out.len() as u64;
        let cut = self.nodes[node].crash_armed.take().map(|r| r % (len + 1));
        let mut committed = None;
        for (i, o) in out.into_iter().enumerate() {
            if cut == Some(i as u64) {
                self.crash(node);
                return;
            }
            match o {
                Output::Persist(r) => self.nodes[node].wal_pending.push(r),
                Output::Broadcast(m) => self.broadcast(node, m),
                Output::Schedule { timeout, after_ms } => {
                    let inc = self.nodes[node].inc;
                    self.after(after_ms, Ev::Timer { node, inc, timeout });
                }
                Output::BuildBlock { height, view } => {
                    let block = Box::new(self.build(node, height, view));
                    let inc = self.nodes[node].inc;
                    let d = self.rng.range(1, 10);
                    self.after(
                        d,
                        Ev::Built {
                            node,
                            inc,
                            height,
                            view,
                            block,
                        },
                    );
                }
                Output::ValidateBlock(block) => {
                    let valid = self.validate(node, &block);
                    let inc = self.nodes[node].inc;
                    let d = self.rng.range(1, 10);
                    self.after(
                        d,
                        Ev::Validated {
                            node,
                            inc,
                            height: block.header.height,
                            hash: block.hash(),
                            valid,
                        },
                    );
                }
                Output::Decide { block, certificate } => {
                    if let Some(h) = self.decide(node, block, certificate) {
                        committed = Some(h);
                    }
                }
                Output::Evidence(a, b) => self.evidence(node, a, b),
                Output::SyncNeeded { height } => {
                    self.log(node, Kind::SyncNeeded, height, 0, Hash::ZERO, None);
                    if !self.nodes[node].sync_inflight {
                        self.nodes[node].sync_inflight = true;
                        let inc = self.nodes[node].inc;
                        let d = self.rng.range(10, 60);
                        self.after(d, Ev::SyncRequest { node, inc });
                    }
                }
            }
        }
        if cut == Some(len) {
            self.crash(node);
            return;
        }
        if let Some(height) = committed {
            let next_set = self.set_for(height + 1).clone();
            self.feed(node, Input::Committed { height, next_set });
        }
    }

    /// The node syncs its WAL, then the message leaves (transformed if the node is Byzantine).
    fn broadcast(&mut self, node: usize, m: Message) {
        let n = &mut self.nodes[node];
        let mut pending = std::mem::take(&mut n.wal_pending);
        n.wal_synced.append(&mut pending);
        let role = n.role;
        let (mk, hash) = msg_kind(&m);
        self.log(node, Kind::Send(mk), m.height(), m.view(), hash, None);
        self.stats.broadcasts += 1;
        if role.is_honest() {
            self.check_honest_sent(node, &m);
        }
        match (role, &m) {
            (Role::Equivocator, Message::Proposal(p)) => {
                let key = SecretKey::from_seed(self.key_seeds[self.nodes[node].val]);
                let (h, v) = (m.height(), m.view());
                let set = self.set_for(h).clone();
                let stripped = p
                    .new_view
                    .as_ref()
                    .and_then(|nv| byzantine::strip_new_view(CHAIN_ID, &key, nv, &set));
                // A second block for the slot: a fresh one under a stripped justification if
                // that is still a quorum, else a variant of the engine's block (which honest
                // validators reject when the justification forces a re-proposal).
                let (alt_block, new_view) = match stripped {
                    Some(nv) => {
                        let fresh = self.build(node, h, v);
                        (byzantine::alternative_block(&fresh), Some(nv))
                    }
                    None => (byzantine::alternative_block(&p.block), p.new_view.clone()),
                };
                let alt_hash = alt_block.hash();
                self.built.insert(alt_hash, false);
                let alt = byzantine::forge_proposal(CHAIN_ID, &key, p, alt_block, new_view);
                let sides = byzantine::split(&mut self.rng, self.nodes.len());
                self.equivocations.insert(
                    (node, h, v),
                    Equivocation {
                        orig: p.signed.proposal.block_hash,
                        alt: alt_hash,
                        sides: sides.clone(),
                    },
                );
                self.send_split(node, m, Message::Proposal(Box::new(alt)), &sides);
            }
            (Role::Equivocator | Role::DoubleVoter, Message::ViewChange(vc))
                if vc.signed.view_change.prepared.is_some() =>
            {
                // Tell part of the network it prepared nothing.
                let key = SecretKey::from_seed(self.key_seeds[self.nodes[node].val]);
                let hidden = byzantine::hide_prepared(CHAIN_ID, &key, vc);
                let sides = byzantine::split(&mut self.rng, self.nodes.len());
                self.send_split(node, m, Message::ViewChange(Box::new(hidden)), &sides);
            }
            (Role::Equivocator, Message::Vote(sv)) => {
                let k = (node, sv.vote.height, sv.vote.view);
                match self.equivocations.get(&k) {
                    Some(e) if e.orig == sv.vote.block_hash => {
                        let (alt, sides) = (e.alt, e.sides.clone());
                        let key = SecretKey::from_seed(self.key_seeds[self.nodes[node].val]);
                        let forged = byzantine::forge_vote(CHAIN_ID, &key, sv, alt);
                        self.send_split(node, m, Message::Vote(forged), &sides);
                    }
                    _ => self.send_all(node, m, false),
                }
            }
            (Role::DoubleVoter, Message::Vote(sv)) => {
                let key = SecretKey::from_seed(self.key_seeds[self.nodes[node].val]);
                let alt = byzantine::double_vote_hash(&sv.vote.block_hash);
                let forged = byzantine::forge_vote(CHAIN_ID, &key, sv, alt);
                let sides = byzantine::split(&mut self.rng, self.nodes.len());
                self.send_split(node, m, Message::Vote(forged), &sides);
            }
            _ => self.send_all(node, m, role.is_honest()),
        }
    }

    fn packet(msg: Message, honest: bool) -> Rc<Packet> {
        Rc::new(Packet {
            hash: Hash::of_encoded(&msg),
            msg,
            honest,
        })
    }

    fn send_all(&mut self, from: usize, msg: Message, honest: bool) {
        let pkt = Self::packet(msg, honest);
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, &pkt);
            }
        }
    }

    fn send_split(&mut self, from: usize, a: Message, b: Message, sides: &[Side]) {
        let (a, b) = (Self::packet(a, false), Self::packet(b, false));
        for (to, side) in sides.iter().enumerate() {
            if to == from {
                continue;
            }
            match side {
                Side::A => self.send(from, to, &a),
                Side::B => self.send(from, to, &b),
                Side::Both => {
                    self.send(from, to, &a);
                    self.send(from, to, &b);
                }
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, pkt: &Rc<Packet>) {
        if !self.net.link_up(from, to) {
            return;
        }
        let params: NetParams = if self.chaos {
            self.cfg.chaos.clone()
        } else {
            NetParams::stable()
        };
        for d in self.net.delays(&mut self.rng, &params) {
            self.after(
                d,
                Ev::Deliver {
                    to,
                    from,
                    pkt: Rc::clone(pkt),
                },
            );
        }
    }

    /// Builds a real block on the node's committed chain; distinct per node and view.
    fn build(&mut self, node: usize, height: u64, view: u64) -> Block {
        let val = self.nodes[node].val;
        let invalid = self.nodes[node].role == Role::InvalidProposer;
        let (parent_hash, last_commit) = match height.checked_sub(2) {
            None => (genesis_hash(), None),
            Some(i) => match self.nodes[node].store.get(i as usize) {
                Some((b, c)) => (b.hash(), Some(c.clone())),
                None => (Hash::ZERO, None),
            },
        };
        let state_root = if invalid {
            invalid_marker()
        } else {
            Hash::of_parts(&[
                b"aitbc-sim/state",
                &(node as u64).to_le_bytes(),
                &height.to_le_bytes(),
                &view.to_le_bytes(),
            ])
        };
        let header = Header {
            chain_id: CHAIN_ID.to_string(),
            height,
            view,
            timestamp_ms: self.now,
            parent_hash,
            proposer: Address::of(&self.pubkeys[val]),
            tx_root: Hash::ZERO,
            state_root,
            validators_hash: self.set_hash(height),
            next_validators_hash: self.set_hash(height + 1),
            last_commit_hash: last_commit_hash(last_commit.as_ref()),
            evidence_hash: Hash::ZERO,
        };
        let block = Block {
            header,
            txs: Vec::new(),
            last_commit,
        };
        self.log(node, Kind::Built, height, view, block.hash(), None);
        self.built.insert(block.hash(), invalid);
        block
    }

    fn parent_of(&self, node: usize, height: u64) -> Option<Hash> {
        match height.checked_sub(2) {
            None => Some(genesis_hash()),
            Some(i) => self.nodes[node]
                .store
                .get(i as usize)
                .map(|(b, _)| b.hash()),
        }
    }

    /// The node's verdict: the next height, on its committed parent, with the right sets and
    /// parent certificate reference, and not marked invalid. (The parent certificate's
    /// signatures are not re-verified: the store only holds verified ones.)
    fn validate(&mut self, node: usize, block: &Block) -> bool {
        let h = block.header.height;
        let hd = &block.header;
        if h != self.height(node) + 1 || hd.chain_id != CHAIN_ID {
            return false;
        }
        if Some(hd.parent_hash) != self.parent_of(node, h) || hd.state_root == invalid_marker() {
            return false;
        }
        if hd.validators_hash != self.set_hash(h) || hd.next_validators_hash != self.set_hash(h + 1)
        {
            return false;
        }
        if !block.txs.is_empty() || hd.tx_root != Hash::ZERO {
            return false;
        }
        match (&block.last_commit, h) {
            (None, 1) => hd.last_commit_hash == Hash::ZERO,
            (Some(c), h) if h > 1 => {
                c.height == h - 1
                    && c.block_hash == hd.parent_hash
                    && hd.last_commit_hash == c.hash()
            }
            _ => false,
        }
    }

    /// A decision: verify the certificate against the height's set, then commit.
    fn decide(&mut self, node: usize, block: Block, cert: CommitCertificate) -> Option<u64> {
        let h = block.header.height;
        let hash = block.hash();
        self.log(node, Kind::Decide, h, cert.view, hash, None);
        if h != self.height(node) + 1 {
            self.violate(
                "decide out of order",
                format!(
                    "node {node} decided height {h} with its store at {}",
                    self.height(node)
                ),
            );
            return None;
        }
        let set = self.set_for(h).clone();
        if let Err(e) = cert.verify(CHAIN_ID, h, &hash, &set) {
            self.violate(
                "bad certificate",
                format!(
                    "node {node} decided {hash} at height {h} with an invalid certificate: {e}"
                ),
            );
            return None;
        }
        self.stats.decides += 1;
        self.stats.max_decided_view = self.stats.max_decided_view.max(cert.view);
        self.commit(node, block, cert, "decided");
        Some(h)
    }

    /// Appends a verified block to the node's store (atomically with emptying its WAL) and
    /// checks agreement and validity.
    fn commit(&mut self, node: usize, block: Block, cert: CommitCertificate, how: &str) {
        let h = block.header.height;
        let hash = block.hash();
        let honest = self.nodes[node].role.is_honest();
        // Validity: a valid certificate means an honest validator validated the block.
        match self.built.get(&hash) {
            None => self.violate(
                "validity",
                format!("node {node} {how} block {hash} at height {h}, which no node built"),
            ),
            Some(true) => self.violate(
                "validity",
                format!("node {node} {how} invalid-marked block {hash} at height {h}"),
            ),
            Some(false) => {}
        }
        if Some(block.header.parent_hash) != self.parent_of(node, h) {
            self.violate(
                "validity",
                format!(
                    "node {node} {how} block {hash} at height {h} that does not link to its parent"
                ),
            );
        }
        if let Some(&(prev, by)) = self.certified.get(&h) {
            if prev != hash {
                self.violate(
                    "agreement (certificates)",
                    format!("height {h}: node {node} {how} {hash} but node {by} committed {prev}; both with valid certificates"),
                );
            }
        } else {
            self.certified.insert(h, (hash, node));
        }
        if honest {
            match self.decided.get(&h) {
                Some(&(prev, by)) if prev != hash => self.violate(
                    "agreement",
                    format!("height {h}: honest node {node} {how} {hash} but honest node {by} committed {prev}"),
                ),
                Some(_) => {}
                None => {
                    self.decided.insert(h, (hash, node));
                }
            }
        }
        let n = &mut self.nodes[node];
        n.store.push((block, cert));
        n.wal_synced.clear();
        n.wal_pending.clear();
    }

    fn evidence(&mut self, node: usize, a: SignedVote, b: SignedVote) {
        self.log(
            node,
            Kind::Evidence,
            a.vote.height,
            a.vote.view,
            a.vote.block_hash,
            None,
        );
        if !a.vote.conflicts_with(&b.vote)
            || a.verify(CHAIN_ID).is_err()
            || b.verify(CHAIN_ID).is_err()
        {
            self.violate(
                "bogus evidence",
                format!("node {node} reported evidence that is not two valid conflicting votes: {a:?} / {b:?}"),
            );
        }
        if let Some(val) = self.pubkeys.iter().position(|k| *k == a.vote.validator) {
            if self.cfg.roles[val].is_honest() {
                self.violate(
                    "evidence against honest",
                    format!("node {node} holds conflicting votes of honest validator {val}: {a:?} / {b:?}"),
                );
            }
        }
        self.evidence.push((node, a, b));
    }

    /// No honest validator ever signs two conflicting messages (also across crash-restarts).
    fn check_honest_sent(&mut self, node: usize, m: &Message) {
        let val = self.nodes[node].val;
        let (h, v) = (m.height(), m.view());
        let conflict = match m {
            Message::Vote(sv) => record_once(
                &mut self.sent_votes,
                (val, h, v, sv.vote.phase),
                &sv.vote.block_hash,
            )
            .map(|prev| {
                format!(
                    "{:?} for {prev} and for {}",
                    sv.vote.phase, sv.vote.block_hash
                )
            }),
            Message::ViewChange(vc) => {
                let new = &vc.signed.view_change;
                record_once(&mut self.sent_view_changes, (val, h, v), new)
                    .map(|prev| format!("two view changes: {prev:?} / {new:?}"))
            }
            Message::Proposal(p) => {
                let hash = p.signed.proposal.block_hash;
                record_once(&mut self.sent_proposals, (val, h, v), &hash)
                    .map(|prev| format!("proposals of {prev} and {hash}"))
            }
        };
        if let Some(what) = conflict {
            let detail =
                format!("honest validator {val} (node {node}) signed at h={h} v={v} {what}");
            self.violate("honest double-sign", detail);
        }
        if let Message::ViewChange(_) = m {
            self.stats.view_changes += 1;
        }
    }

    // ---- block sync ----

    /// Copies the committed blocks above the node's height from the reachable peer with the
    /// highest store.
    fn sync(&mut self, node: usize) {
        let own = self.height(node);
        let mut best: Vec<usize> = Vec::new();
        let mut best_h = own;
        for j in 0..self.nodes.len() {
            if j == node || !self.nodes[j].up || !self.net.link_up(node, j) {
                continue;
            }
            let h = self.height(j);
            if h > best_h {
                best_h = h;
                best.clear();
            }
            if h == best_h && h > own {
                best.push(j);
            }
        }
        if best.is_empty() {
            return;
        }
        let from = best[self.rng.index(best.len())];
        let blocks: Vec<(Block, CommitCertificate)> =
            self.nodes[from].store[own as usize..].to_vec();
        self.apply_sync(node, from, &blocks);
    }

    /// A peer that sent a message for a height this node already committed is behind: push it
    /// the blocks from that height on (at most once a second per peer).
    fn push_blocks(&mut self, node: usize, to: usize, from_height: u64) {
        if let Some(last) = self.nodes[node].last_push[to] {
            if self.now < last + 1000 {
                return;
            }
        }
        self.nodes[node].last_push[to] = Some(self.now);
        let start = from_height.max(1) as usize - 1;
        let blocks: Vec<(Block, CommitCertificate)> = self.nodes[node].store[start..].to_vec();
        if blocks.is_empty() || !self.net.link_up(node, to) {
            return;
        }
        let d = self.rng.range(5, 50);
        self.after(
            d,
            Ev::SyncPush {
                node: to,
                from: node,
                blocks: Rc::new(blocks),
            },
        );
    }

    /// Commits synced blocks that extend the store, verifying each certificate against its
    /// height's set, then tells the engine.
    fn apply_sync(&mut self, node: usize, from: usize, blocks: &[(Block, CommitCertificate)]) {
        let mut last = None;
        for (block, cert) in blocks {
            let h = block.header.height;
            let own = self.height(node);
            if h <= own {
                continue;
            }
            if h != own + 1 {
                break;
            }
            let hash = block.hash();
            let set = self.set_for(h).clone();
            if let Err(e) = cert.verify(CHAIN_ID, h, &hash, &set) {
                self.violate(
                    "bad certificate in sync",
                    format!("node {node} got block {hash} at height {h} from node {from} with an invalid certificate: {e}"),
                );
                return;
            }
            if Some(block.header.parent_hash) != self.parent_of(node, h) {
                self.violate(
                    "sync fork",
                    format!("node {node} got block {hash} at height {h} from node {from} that does not extend its chain"),
                );
                return;
            }
            self.log(node, Kind::SyncCommit, h, cert.view, hash, Some(from));
            self.stats.synced_blocks += 1;
            self.commit(node, block.clone(), cert.clone(), "synced");
            last = Some(h);
        }
        if let Some(height) = last {
            let next_set = self.set_for(height + 1).clone();
            self.feed(node, Input::Committed { height, next_set });
        }
    }
}

/// How long after the stable phase starts every honest node must have committed
/// `liveness_heights` more heights.
///
/// When the stable phase starts an honest node may sit in a view whose timer runs up to
/// `Tmax = view_timeout(MAX_TIMEOUT_STEPS)`; messages of the chaos phase still in flight land
/// within `long_max_ms`. After one more timeout every honest node has sent a ViewChange the
/// others receive, so views align (the > 1/3 join rule) within about two `Tmax`. From then on a
/// view fails only if its proposer is Byzantine (at most f in a row: the round-robin spreads the
/// Byzantine validators, each holding the minimum power) and each height needs `block_time`
/// plus a few message delays. So `(f + 3) · Tmax` covers alignment plus f faulty proposers plus
/// the successful view, for the first new height; the second new height starts at view 0 with
/// timeouts growing from `view_timeout_ms`, so `(f + 1)` views of at most
/// `view_timeout(f)` each; add two block times and 5 s for sync round trips and in-flight
/// chaos messages.
pub fn liveness_bound_ms(cfg: &SimConfig) -> u64 {
    let f = cfg.f() as u64;
    let c = Config {
        chain_id: String::new(),
        block_time_ms: cfg.block_time_ms,
        view_timeout_ms: cfg.view_timeout_ms,
    };
    let tmax = c.view_timeout(MAX_TIMEOUT_STEPS);
    (f + 3) * tmax
        + (f + 1) * c.view_timeout(f) * (cfg.liveness_heights.saturating_sub(1))
        + cfg.liveness_heights * cfg.block_time_ms
        + 5_000
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct SimResult {
    pub seed: u64,
    pub n: usize,
    pub roles: Vec<Role>,
    pub trace_hash: Hash,
    /// Committed height of every honest node at the end.
    pub heights: Vec<u64>,
    pub view_changes: u64,
    pub max_decided_view: u64,
    pub evidence: usize,
    pub sim_time_ms: u64,
    /// Time from the start of the stable phase until the liveness target was met.
    pub liveness_ms: Option<u64>,
    pub stats: Stats,
}

/// A run that broke an invariant.
#[derive(Debug)]
pub struct SimFailure {
    pub seed: u64,
    pub n: usize,
    pub roles: Vec<Role>,
    pub violation: Violation,
    pub at_ms: u64,
    pub config: String,
    pub recent: Vec<String>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} FAILED (n = {}, roles = {:?}) at t = {} ms: {}: {}",
            self.seed, self.n, self.roles, self.at_ms, self.violation.kind, self.violation.detail
        )?;
        writeln!(f, "  config: {}", self.config)?;
        writeln!(f, "  rerun:  {}", rerun_command(self.seed))?;
        writeln!(f, "  last events:")?;
        for r in &self.recent {
            writeln!(f, "    {r}")?;
        }
        Ok(())
    }
}

fn config_summary(cfg: &SimConfig) -> String {
    format!(
        "block_time {} ms, view_timeout {} ms, stable at {:?} ms, chaos {:?}, push_sync {}, late {:?}, {} faults: {:?}",
        cfg.block_time_ms,
        cfg.view_timeout_ms,
        cfg.stable_at_ms,
        cfg.chaos,
        cfg.push_sync,
        cfg.late_start,
        cfg.faults.len(),
        cfg.faults
    )
}

impl Sim {
    pub fn failure(&self, violation: Violation, tail: usize) -> SimFailure {
        let skip = self.ring.len().saturating_sub(tail);
        SimFailure {
            seed: self.cfg.seed,
            n: self.cfg.n,
            roles: self.cfg.roles.clone(),
            violation,
            at_ms: self.now,
            config: config_summary(&self.cfg),
            recent: self.ring.iter().skip(skip).map(Rec::to_string).collect(),
        }
    }

    pub fn result(&self) -> SimResult {
        SimResult {
            seed: self.cfg.seed,
            n: self.cfg.n,
            roles: self.cfg.roles.clone(),
            trace_hash: self.trace_hash(),
            heights: self
                .honest_nodes()
                .iter()
                .map(|&i| self.height(i))
                .collect(),
            view_changes: self.stats.view_changes,
            max_decided_view: self.stats.max_decided_view,
            evidence: self.evidence.len(),
            sim_time_ms: self.now,
            liveness_ms: self.liveness_done(),
            stats: self.stats.clone(),
        }
    }
}

/// Runs a config with a stable phase until the liveness target is met (or an invariant fails).
pub fn run_config(cfg: SimConfig) -> Result<SimResult, Box<SimFailure>> {
    assert!(
        cfg.stable_at_ms.is_some(),
        "run_config needs a stable phase"
    );
    let mut sim = Sim::new(cfg);
    loop {
        if sim.liveness_done().is_some() {
            return Ok(sim.result());
        }
        match sim.step() {
            Ok(true) => {}
            Ok(false) => {
                let v = Violation {
                    kind: "liveness",
                    detail: "the event queue ran dry before the liveness target".to_string(),
                };
                return Err(Box::new(sim.failure(v, 60)));
            }
            Err(v) => return Err(Box::new(sim.failure(v, 60))),
        }
    }
}

/// One random run: everything derived from `seed`.
pub fn run(seed: u64) -> Result<SimResult, Box<SimFailure>> {
    run_config(SimConfig::random(seed))
}

/// Records the first thing signed in one slot; returns the earlier value if `v` differs from it.
fn record_once<K: Ord, V: Clone + PartialEq>(map: &mut BTreeMap<K, V>, k: K, v: &V) -> Option<V> {
    match map.get(&k) {
        Some(prev) if prev != v => Some(prev.clone()),
        Some(_) => None,
        None => {
            map.insert(k, v.clone());
            None
        }
    }
}
