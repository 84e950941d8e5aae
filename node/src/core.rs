//! The core thread: the one owner of the consensus engine, its write-ahead log and the store's
//! write side.
//!
//! Why a plain thread and not a tokio task: everything here is either CPU (block execution,
//! signature checks) or a blocking disk write that must finish before the next step (WAL
//! fsync before a vote leaves, store flush before a block is announced). On a thread those
//! block nothing else, and the order of effects is exactly the order of the engine's outputs.
//! Network sends go out through the runtime handle without waiting.
//!
//! The engine's rules for IO, as this loop keeps them:
//! - `Persist` records are appended to the WAL; the WAL is synced before the next `Broadcast`
//!   (so a vote is durable before it can be seen), and reset only after the height's block is
//!   durably committed.
//! - `Decide` commits the block and its state in one flushed write, then announces it, then
//!   tells the engine `Committed`.
//! - Every gossip message gets the engine's verdict as its gossip validation result, so peers
//!   that send invalid consensus messages lose score and are banned.

use crate::metrics::{Direction, GossipTopic};
use crate::shared::{load_params, Shared, Store};
use aitbc_chain::block::{Block, CommitCertificate};
use aitbc_chain::consensus::wal::Wal;
use aitbc_chain::consensus::{
    Config as EngineConfig, Engine, Input, Message, Output, Record, Timeout, Verdict,
};
use aitbc_chain::crypto::Signature;
use aitbc_chain::execution::offence_hash;
use aitbc_chain::tx::TxKind;
use aitbc_chain::validation::{build_proposal, validate_block, InvalidBlock, Validated};
use aitbc_chain::validator_set::ValidatorSet;
use aitbc_chain::vote::SignedVote;
use aitbc_chain::{Address, Hash, SecretKey};
use aitbc_p2p::{Acceptance, CertifiedBlock, Handle, MessageId, PeerId, Topic};
use aitbc_rpc::{ConsensusEvent, HeaderInfo, NodeEvent};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the rest of the node hands the core.
pub enum CoreInput {
    /// A decoded consensus message from gossip; its verdict goes back to the network.
    Consensus {
        msg: Message,
        id: MessageId,
        source: PeerId,
    },
    /// A committed block announced on the block topic.
    Announced {
        block: Box<CertifiedBlock>,
        id: MessageId,
        source: PeerId,
    },
    /// Blocks fetched by sync, in height order. The reply says how many were applied and, if
    /// one was bad, why (the sync task penalises the peer). `txs_verified`: the sync task
    /// already checked every tx signature in them (off this thread); if it is false, or it
    /// found a bad one, they are checked here, which names the bad tx.
    Synced {
        blocks: Vec<CertifiedBlock>,
        txs_verified: bool,
        reply: tokio::sync::oneshot::Sender<Result<usize, String>>,
    },
    Shutdown,
}

/// Longest sync holds the store before it flushes and lets go (see [`Core::apply_synced`]):
/// RPC reads and sync answers wait for it.
const SYNC_HOLD: Duration = Duration::from_millis(50);

/// Encodes exactly as [`CertifiedBlock`] (same fields, same order) without copying the block
/// to announce it.
#[derive(serde::Serialize)]
struct CertifiedBlockRef<'a> {
    block: &'a Block,
    commit: &'a CommitCertificate,
}

/// Whether a committed block is announced on the block topic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Announce {
    Yes,
    No,
}

/// Why the core stopped other than by a shutdown request: the node must exit.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("consensus WAL: {0}")]
    Wal(#[from] aitbc_chain::consensus::wal::WalError),
    #[error("store: {0}")]
    Store(#[from] aitbc_chain::store::StoreError),
    #[error("{0}")]
    Other(String),
}

pub struct Core {
    shared: Arc<Shared>,
    net: Handle,
    rt: tokio::runtime::Handle,
    engine: Engine,
    key: Option<SecretKey>,
    wal: Wal,
    /// Records appended since the last sync.
    wal_dirty: bool,
    timers: BTreeMap<(Instant, u64), Timeout>,
    timer_seq: u64,
    /// Blocks of the current height this node built or validated, with their execution.
    validated: HashMap<Hash, Validated>,
    /// When the current height's block was first seen (built or received), for finality.
    seen_at: HashMap<Hash, Instant>,
    last_commit_at: Option<Instant>,
    /// Wakes the sync task when the engine finds the node behind.
    sync_wake: tokio::sync::mpsc::Sender<()>,
    /// The (height, view) last reported, to count rounds and view changes.
    round: (u64, u64),
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Core {
    /// Builds the engine at the height after the store's head and replays the WAL records of
    /// that height into it (the outputs of that restore are run by [`Core::run`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        net: Handle,
        rt: tokio::runtime::Handle,
        key: Option<SecretKey>,
        wal: Wal,
        wal_records: Vec<Record>,
        block_time_ms: Option<u64>,
        sync_wake: tokio::sync::mpsc::Sender<()>,
    ) -> Result<(Core, Vec<Output>), CoreError> {
        let (height, set) = {
            let store = shared.store();
            let height = store.height() + 1;
            let set = store
                .voting_set(height)
                .ok_or_else(|| CoreError::Other(format!("no validator set for {height}")))?;
            (height, (*set).clone())
        };
        let params = shared.params();
        let cfg = EngineConfig {
            chain_id: shared.genesis.chain_id.clone(),
            block_time_ms: block_time_ms.unwrap_or(params.block_time_ms),
            view_timeout_ms: params.view_timeout_ms,
        };
        let engine_key = key.as_ref().map(|k| SecretKey::from_seed(k.seed()));
        let mut out = Vec::new();
        let engine = Engine::new(cfg, engine_key, height, set, wal_records, &mut out);
        let core = Core {
            shared,
            net,
            rt,
            engine,
            key,
            wal,
            wal_dirty: false,
            timers: BTreeMap::new(),
            timer_seq: 0,
            validated: HashMap::new(),
            seen_at: HashMap::new(),
            last_commit_at: None,
            sync_wake,
            round: (0, 0),
        };
        Ok((core, out))
    }

    /// Runs until `Shutdown` (Ok) or a failure that leaves the node unable to go on safely.
    pub fn run(mut self, first: Vec<Output>, inputs: Receiver<CoreInput>) -> Result<(), CoreError> {
        let mut pending = VecDeque::new();
        self.process(first, &mut pending)?;
        self.drain(&mut pending)?;
        loop {
            let input = if !pending.is_empty() {
                // Work is queued: look at the inputs without waiting.
                inputs.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                match self.timers.first_key_value() {
                    None => inputs.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    Some((&(at, _), _)) => {
                        let wait = at.saturating_duration_since(Instant::now());
                        inputs.recv_timeout(wait)
                    }
                }
            };
            match input {
                Ok(CoreInput::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => self.on_input(input, &mut pending)?,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.fire_timers(&mut pending)?;
            self.drain(&mut pending)?;
        }
        self.wal.sync()?;
        aitbc_chain::store::KvStore::flush(self.shared.store().kv())
            .map_err(aitbc_chain::store::StoreError::from)?;
        Ok(())
    }

    fn fire_timers(&mut self, pending: &mut VecDeque<Input>) -> Result<(), CoreError> {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            pending.push_back(Input::Timeout(entry.remove()));
        }
        Ok(())
    }

    /// Feeds queued inputs (answers to the engine's own requests) until none is left or a
    /// height is committed. Stopping at each commit lets the loop read its inputs between
    /// heights: a lone validator at `block_time_ms = 0` would otherwise build, decide and
    /// commit forever inside this loop and never see a shutdown or a peer's message.
    fn drain(&mut self, pending: &mut VecDeque<Input>) -> Result<(), CoreError> {
        while let Some(input) = pending.pop_front() {
            let committed = matches!(input, Input::Committed { .. });
            self.step(input, pending)?;
            if committed {
                break;
            }
        }
        self.publish_state();
        Ok(())
    }

    fn step(&mut self, input: Input, pending: &mut VecDeque<Input>) -> Result<Verdict, CoreError> {
        let mut out = Vec::new();
        let verdict = self.engine.handle(input, &mut out);
        self.process(out, pending)?;
        Ok(verdict)
    }

    fn on_input(
        &mut self,
        input: CoreInput,
        pending: &mut VecDeque<Input>,
    ) -> Result<(), CoreError> {
        match input {
            CoreInput::Consensus { msg, id, source } => {
                let verdict = self.step(Input::Message(msg), pending)?;
                let acceptance = match verdict {
                    Verdict::Accept => Acceptance::Accept,
                    Verdict::Ignore => Acceptance::Ignore,
                    Verdict::Reject(why) => {
                        tracing::debug!(component = "consensus", event = "reject", %source, ?why);
                        self.shared.metrics.invalid("consensus_message");
                        Acceptance::Reject
                    }
                };
                self.report(id, source, acceptance);
            }
            CoreInput::Announced { block, id, source } => {
                let head = self.shared.head_height();
                let h = block.block.header.height;
                let acceptance = if h <= head {
                    // One we hold, with a valid certificate, is relayed on (followers further
                    // away still need it); receivers would penalise us for a bad certificate.
                    let store = self.shared.store();
                    let hash = block.block.hash();
                    let known = matches!(store.block_height_by_hash(&hash), Ok(Some(k)) if k == h);
                    let certified = store.voting_set(h).is_some_and(|set| {
                        block
                            .commit
                            .verify(&store.head().chain_id, h, &hash, &set)
                            .is_ok()
                    });
                    if known && certified {
                        Acceptance::Accept
                    } else {
                        Acceptance::Ignore
                    }
                } else if h > head + 1 {
                    // Ahead of us: sync fetches what is missing (and this block with it).
                    let _ = self.sync_wake.try_send(());
                    Acceptance::Ignore
                } else {
                    let CertifiedBlock { block, commit } = *block;
                    match self.apply_certified(block, &commit, pending)? {
                        Ok(()) => Acceptance::Accept,
                        Err(why) => {
                            tracing::info!(component = "sync", event = "bad_block", %source, height = h, "{why}");
                            self.shared.metrics.invalid("announced_block");
                            Acceptance::Reject
                        }
                    }
                };
                self.report(id, source, acceptance);
            }
            CoreInput::Synced {
                blocks,
                txs_verified,
                reply,
            } => {
                let result = self.apply_synced(blocks, txs_verified, pending)?;
                let _ = reply.send(result);
            }
            CoreInput::Shutdown => {}
        }
        Ok(())
    }

    fn report(&self, id: MessageId, source: PeerId, acceptance: Acceptance) {
        let net = self.net.clone();
        self.rt.spawn(async move {
            let _ = net.report_validation(id, source, acceptance).await;
        });
    }

    fn process(
        &mut self,
        out: Vec<Output>,
        pending: &mut VecDeque<Input>,
    ) -> Result<(), CoreError> {
        for o in out {
            match o {
                Output::Persist(record) => {
                    self.wal.append(&record)?;
                    self.wal_dirty = true;
                }
                Output::Broadcast(msg) => {
                    if self.wal_dirty {
                        self.wal.sync()?;
                        self.wal_dirty = false;
                    }
                    if let Message::Vote(v) = &msg {
                        if v.vote.phase == aitbc_chain::vote::Phase::Commit {
                            self.shared.metrics.validator_signed(v.vote.height);
                        }
                    }
                    self.publish(Topic::Consensus, msg.encode());
                }
                Output::Schedule { timeout, after_ms } => {
                    let at = Instant::now() + Duration::from_millis(after_ms);
                    self.timer_seq += 1;
                    self.timers.insert((at, self.timer_seq), timeout);
                }
                Output::BuildBlock { height, view } => {
                    if let Some(block) = self.build(height, view)? {
                        pending.push_back(Input::BlockBuilt {
                            height,
                            view,
                            block: Box::new(block),
                        });
                    }
                }
                Output::ValidateBlock(block) => {
                    let height = block.header.height;
                    let block_hash = block.hash();
                    self.seen_at.entry(block_hash).or_insert_with(Instant::now);
                    let valid = self.validate(&block);
                    pending.push_back(Input::BlockValidated {
                        height,
                        block_hash,
                        valid,
                    });
                }
                Output::Decide { block, certificate } => {
                    let height = block.header.height;
                    let hash = block.hash();
                    if height <= self.shared.head_height() {
                        // Sync stored this height first; the engine hears `Committed` next.
                        // A different block there would mean two certified blocks at one
                        // height: stop rather than go on from a fork.
                        let stored = self.shared.store().block_height_by_hash(&hash)?;
                        if stored != Some(height) {
                            return Err(CoreError::Other(format!(
                                "decided block {hash} at height {height} differs from the \
                                 stored one"
                            )));
                        }
                        continue;
                    }
                    let v = match self.validated.remove(&hash) {
                        Some(v) => v,
                        None => self
                            .validate_on_head(&self.shared.store(), &block)
                            .map_err(|e| {
                                // A quorum decided a block this node finds invalid: its
                                // state differs from theirs. Committing would fork it.
                                CoreError::Other(format!(
                                    "decided block {hash} at height {height} does not \
                                         validate here: {e}; the store may be corrupt, resync it"
                                ))
                            })?,
                    };
                    // Its proposer announces it: every validator's copy would be a duplicate
                    // (often byte-identical), and a follower that misses the announcement
                    // (the proposer crashed) gets it by sync.
                    let announce = if self.is_me(&block.header.proposer) {
                        Announce::Yes
                    } else {
                        Announce::No
                    };
                    self.commit(block, &certificate, v, announce, pending)?;
                }
                Output::Evidence(a, b) => self.submit_evidence(a, b),
                Output::SyncNeeded { height } => {
                    tracing::info!(
                        component = "consensus",
                        event = "behind",
                        height,
                        "validators are ahead; syncing"
                    );
                    let _ = self.sync_wake.try_send(());
                }
            }
        }
        Ok(())
    }

    fn is_me(&self, address: &Address) -> bool {
        self.shared.validator.as_ref() == Some(address)
    }

    fn publish(&self, topic: Topic, data: Vec<u8>) {
        self.shared
            .metrics
            .gossip(gossip_topic(topic), Direction::Out, data.len());
        let net = self.net.clone();
        self.rt.spawn(async move {
            if let Err(e) = net.publish(topic, data).await {
                tracing::debug!(component = "p2p", event = "publish_failed", ?topic, "{e}");
            }
        });
    }

    fn build(&mut self, height: u64, view: u64) -> Result<Option<Block>, CoreError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let proposer = Address::of(&key.public());
        let store = self.shared.store();
        if store.height() + 1 != height {
            return Ok(None);
        }
        let params = self.shared.params();
        let candidates = self.shared.mempool().select(
            &*store,
            usize::try_from(params.max_block_txs).unwrap_or(usize::MAX),
            usize::try_from(params.max_block_bytes).unwrap_or(usize::MAX),
        );
        let last_commit = match store.height() {
            0 => None,
            h => store.certificate(h)?,
        };
        match build_proposal(&store, proposer, view, now_ms(), last_commit, candidates) {
            Ok(p) => {
                if !p.rejected.is_empty() {
                    // Txs that no longer apply (their receipt was claimed meanwhile, funds
                    // ran short) would otherwise sit in the pool holding up their senders.
                    let dropped: Vec<Hash> = p.rejected.iter().map(|(h, _)| *h).collect();
                    tracing::debug!(
                        component = "mempool",
                        event = "dropped",
                        txs = dropped.len()
                    );
                    if let Err(e) = self.shared.mempool().remove_committed(&dropped, &*store) {
                        tracing::warn!(component = "mempool", event = "prune_failed", "{e}");
                    }
                }
                drop(store);
                tracing::debug!(
                    component = "consensus",
                    event = "built",
                    height,
                    view,
                    txs = p.block.txs.len()
                );
                self.seen_at.insert(p.validated.hash, Instant::now());
                self.validated.insert(p.validated.hash, p.validated);
                Ok(Some(p.block))
            }
            Err(e) => {
                tracing::error!(
                    component = "consensus",
                    event = "build_failed",
                    height,
                    view,
                    "{e}"
                );
                Ok(None)
            }
        }
    }

    /// Validates `block` on the head of `store`, skipping the signature checks of txs this
    /// node's mempool already verified. The pool is locked only to pick those out, not while
    /// the block executes, so RPC and gossip admission go on meanwhile.
    fn validate_on_head(&self, store: &Store, block: &Block) -> Result<Validated, InvalidBlock> {
        // (hash, signature) names the whole tx: the hash covers every other field.
        let verified: HashSet<(Hash, Signature)> = {
            let mempool = self.shared.mempool();
            block
                .txs
                .iter()
                .filter(|t| mempool.is_verified(t))
                .map(|t| (t.hash, t.tx.sig))
                .collect()
        };
        validate_block(store, block, |t| verified.contains(&(t.hash, t.tx.sig)))
    }

    fn validate(&mut self, block: &Block) -> bool {
        let hash = block.hash();
        if self.validated.contains_key(&hash) {
            return true;
        }
        let result = self.validate_on_head(&self.shared.store(), block);
        match result {
            Ok(v) => {
                self.validated.insert(hash, v);
                true
            }
            Err(e) => {
                let level_local = !e.is_invalid();
                if level_local {
                    tracing::error!(
                        component = "consensus",
                        event = "validate_failed",
                        height = block.header.height,
                        "{e}"
                    );
                } else {
                    tracing::info!(
                        component = "consensus",
                        event = "invalid_block",
                        height = block.header.height,
                        "{e}"
                    );
                    self.shared.metrics.invalid("invalid_block");
                }
                false
            }
        }
    }

    /// Checks and commits a block announced with its certificate.
    /// The outer error is this node's failure; the inner one is the block's.
    fn apply_certified(
        &mut self,
        block: Block,
        cert: &CommitCertificate,
        pending: &mut VecDeque<Input>,
    ) -> Result<Result<(), String>, CoreError> {
        let validated = match self.check_certified(&self.shared.store(), &block, cert, false)? {
            Ok(v) => v,
            Err(why) => return Ok(Err(why)),
        };
        // It came from the network: gossip relays it; a second copy under our name would only
        // be a duplicate.
        self.commit(block, cert, validated, Announce::No, pending)?;
        Ok(Ok(()))
    }

    /// Checks `block` on `store`'s head: `cert` must commit it, and it must be valid.
    /// `txs_verified`: its tx signatures were checked already.
    fn check_certified(
        &self,
        store: &Store,
        block: &Block,
        cert: &CommitCertificate,
        txs_verified: bool,
    ) -> Result<Result<Validated, String>, CoreError> {
        let h = block.header.height;
        let Some(set) = store.voting_set(h) else {
            return Ok(Err(format!("no validator set for height {h}")));
        };
        if let Err(e) = cert.verify(&store.head().chain_id, h, &block.hash(), &set) {
            return Ok(Err(format!("certificate: {e}")));
        }
        let validated = if txs_verified {
            validate_block(store, block, |_| true)
        } else {
            self.validate_on_head(store, block)
        };
        match validated {
            Ok(v) => Ok(Ok(v)),
            Err(e) if e.is_invalid() => Ok(Err(e.to_string())),
            Err(e) => Err(CoreError::Other(e.to_string())),
        }
    }

    /// Checks and commits a run of synced blocks (in height order), many blocks per flush:
    /// each block is its own atomic batch, written with the store held exclusively, and the
    /// store is let go only once a flush made them durable, so no client or peer sees a head
    /// that a crash could take back. The store is let go (after a flush) at least every
    /// [`SYNC_HOLD`], so RPC reads and sync answers do not wait long. Returns how many were
    /// applied, or why a block was bad (the blocks before it are applied).
    fn apply_synced(
        &mut self,
        blocks: Vec<CertifiedBlock>,
        txs_verified: bool,
        pending: &mut VecDeque<Input>,
    ) -> Result<Result<usize, String>, CoreError> {
        // Shared with the store's recent blocks rather than copied into them: a block's
        // certificate is borrowed from the next block, so the run is read in place.
        let blocks: Vec<(Arc<Block>, CommitCertificate)> = blocks
            .into_iter()
            .map(|cb| (Arc::new(cb.block), cb.commit))
            .collect();
        let shared = self.shared.clone();
        let mut applied = 0;
        let mut next = 0;
        while next < blocks.len() {
            let held = Instant::now();
            let mut writing = Duration::ZERO;
            let mut staged = Vec::new();
            let mut bad = None;
            let mut store = shared.store_mut();
            while next < blocks.len() && held.elapsed() < SYNC_HOLD {
                let (i, (block, commit)) = (next, &blocks[next]);
                next += 1;
                let h = block.header.height;
                if h <= store.height() {
                    continue;
                }
                // The next block's `last_commit` certifies this one as well, and that block's
                // validation would check it: committing with it (the chain's own record of
                // this height) checks one certificate per block instead of two.
                let cert = blocks
                    .get(i + 1)
                    .and_then(|(next, _)| next.last_commit.as_ref())
                    .unwrap_or(commit);
                match self.check_certified(&store, block, cert, txs_verified)? {
                    Ok(Validated {
                        outcome, prepared, ..
                    }) => {
                        let started = Instant::now();
                        store.stage_block(block.clone(), cert, prepared)?;
                        writing += started.elapsed();
                        staged.push((block, cert, outcome.next_validators));
                    }
                    Err(why) => {
                        bad = Some(format!("block {h}: {why}"));
                        next = blocks.len();
                    }
                }
            }
            if !staged.is_empty() {
                let started = Instant::now();
                store.flush()?;
                writing += started.elapsed();
            }
            drop(store);
            let per_block = writing / staged.len().max(1) as u32;
            applied += staged.len();
            self.shared.metrics.sync_blocks(staged.len() as u64);
            for (block, cert, next_set) in staged {
                self.shared.metrics.store_commit(per_block);
                self.after_commit(block, cert, next_set, Announce::No, pending)?;
                // Let the engine catch up between blocks so its state stays small.
                self.drain(pending)?;
            }
            if let Some(why) = bad {
                return Ok(Err(why));
            }
        }
        Ok(Ok(applied))
    }

    /// Commits `block` (one flushed write), then tells everyone (see [`Core::after_commit`]).
    fn commit(
        &mut self,
        block: Block,
        cert: &CommitCertificate,
        validated: Validated,
        announce: Announce,
        pending: &mut VecDeque<Input>,
    ) -> Result<(), CoreError> {
        let started = Instant::now();
        let Validated {
            outcome, prepared, ..
        } = validated;
        let block = Arc::new(block);
        self.shared
            .store_mut()
            .commit_block(block.clone(), cert, prepared)?;
        self.shared.metrics.store_commit(started.elapsed());
        self.after_commit(&block, cert, outcome.next_validators, announce, pending)
    }

    /// What follows a durable commit of `block`: the WAL, mempool, waiting clients,
    /// subscribers, peers (block topic), and finally the engine.
    fn after_commit(
        &mut self,
        block: &Block,
        cert: &CommitCertificate,
        next_set: ValidatorSet,
        announce: Announce,
        pending: &mut VecDeque<Input>,
    ) -> Result<(), CoreError> {
        let height = block.header.height;
        let now = Instant::now();
        // The height is durable: its consensus messages are no longer needed to stay safe.
        self.wal.reset()?;
        self.wal_dirty = false;

        let hashes: Vec<Hash> = block.txs.iter().map(|t| t.hash).collect();
        {
            let store = self.shared.store();
            let mut mempool = self.shared.mempool();
            if let Err(e) = mempool.remove_committed(&hashes, &*store) {
                tracing::warn!(component = "mempool", event = "prune_failed", "{e}");
            }
            self.shared
                .metrics
                .set_mempool(mempool.len(), mempool.bytes() as u64);
            if block
                .txs
                .iter()
                .any(|t| matches!(t.tx.kind, TxKind::ParamUpdate { .. }))
            {
                match load_params(&store) {
                    Ok(p) => self.shared.set_params(p),
                    Err(e) => tracing::error!(component = "chain", event = "params", "{e}"),
                }
            }
        }
        self.record_liveness(height, cert);
        {
            let mut waiters = self.shared.waiters();
            if !waiters.is_empty() {
                for h in &hashes {
                    for w in waiters.remove(h).unwrap_or_default() {
                        let _ = w.send(height);
                    }
                }
            }
        }
        let hash = block.hash();
        let interval = self.last_commit_at.map(|t| now - t);
        let finality = self.seen_at.get(&hash).map(|t| now - *t);
        self.last_commit_at = Some(now);
        self.shared
            .metrics
            .on_commit(height, block.txs.len() as u64, interval, finality);
        tracing::info!(
            component = "consensus",
            event = "commit",
            height,
            view = cert.view,
            txs = block.txs.len(),
            latency_ms = finality.map_or(0, |d| d.as_millis() as u64),
            hash = %hash,
        );
        self.shared
            .emit(NodeEvent::Consensus(ConsensusEvent::Decided {
                height,
                view: cert.view,
                hash,
            }));
        self.shared.emit(NodeEvent::NewBlock(HeaderInfo {
            hash,
            header: block.header.clone(),
            tx_count: Some(block.txs.len() as u32),
        }));
        if announce == Announce::Yes {
            let announced = CertifiedBlockRef {
                block,
                commit: cert,
            };
            self.publish(Topic::Block, aitbc_chain::codec::encode(&announced));
        }
        self.validated.clear();
        self.seen_at.clear();
        pending.push_back(Input::Committed { height, next_set });
        Ok(())
    }

    fn record_liveness(&self, height: u64, cert: &CommitCertificate) {
        let Some(set) = self.shared.store().voting_set(height) else {
            return;
        };
        let mut live = self.shared.liveness();
        for v in set.validators() {
            let entry = live.entry(v.pubkey).or_default();
            if cert.signatures.iter().any(|s| s.validator == v.pubkey) {
                entry.last_signed = Some(height);
            } else {
                entry.missed += 1;
                if self.key.as_ref().is_some_and(|k| k.public() == v.pubkey) {
                    self.shared.metrics.validator_missed();
                }
            }
        }
    }

    /// Turns two conflicting votes into an `Evidence` tx signed (and paid for) by this
    /// validator, through the mempool like any tx.
    fn submit_evidence(&self, a: SignedVote, b: SignedVote) {
        let Some(key) = &self.key else {
            return;
        };
        let offender = a.vote.validator;
        let offence = offence_hash(&a);
        let kind = TxKind::Evidence {
            vote_a: Box::new(a),
            vote_b: Box::new(b),
        };
        let result = match self.shared.sign_own(key, kind) {
            Ok(tx) => self.shared.admit(tx).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                tracing::warn!(component = "consensus", event = "evidence", %offender, %offence, "double vote: evidence submitted")
            }
            Err(e) => {
                tracing::info!(component = "consensus", event = "evidence", %offender, "not submitted: {e}")
            }
        }
    }

    /// Publishes what the RPC reports about consensus progress.
    fn publish_state(&mut self) {
        let e = &self.engine;
        let view = e.view();
        let round = (e.height(), view);
        if round != self.round {
            if round.0 == self.round.0 {
                self.shared.metrics.view_change();
                self.shared
                    .emit(NodeEvent::Consensus(ConsensusEvent::ViewChange {
                        height: round.0,
                        view,
                    }));
            }
            self.shared.metrics.round();
            self.round = round;
        }
        let phase = if e.is_decided() {
            "decided"
        } else if e.prepared().is_some_and(|p| p.view == view) {
            "commit"
        } else if self.validated.is_empty() {
            "propose"
        } else {
            "prepare"
        };
        let proposer = e.proposer(e.height(), view).map(Address::of);
        let mut c = self.shared.consensus();
        c.height = e.height();
        c.view = view;
        c.phase = phase.to_string();
        c.votes_seen = e.votes_seen() as u64;
        c.proposer = proposer;
    }
}

/// The metrics' name for a p2p topic.
pub fn gossip_topic(topic: Topic) -> GossipTopic {
    match topic {
        Topic::Tx => GossipTopic::Tx,
        Topic::Consensus => GossipTopic::Consensus,
        Topic::Block => GossipTopic::Block,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitbc_chain::genesis::Genesis;

    #[test]
    fn a_borrowed_announcement_encodes_as_a_certified_block() {
        let key = SecretKey::from_seed([1; 32]);
        let g = Genesis::dev("ait-core", &[&key], &[]);
        let block = Block {
            header: g.header(Hash::of(b"root")),
            txs: vec![],
            last_commit: None,
        };
        let commit = CommitCertificate {
            height: 0,
            view: 0,
            block_hash: block.hash(),
            signatures: vec![],
        };
        let bytes = aitbc_chain::codec::encode(&CertifiedBlockRef {
            block: &block,
            commit: &commit,
        });
        let owned = CertifiedBlock { block, commit };
        assert_eq!(bytes, aitbc_chain::codec::encode(&owned));
        let decoded: CertifiedBlock =
            aitbc_chain::codec::decode(&bytes, bytes.len()).expect("decodes");
        assert_eq!(decoded, owned);
    }
}
