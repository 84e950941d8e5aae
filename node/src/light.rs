//! `aitbc-node run --light` (SPEC §6): a peer that trusts nothing it cannot check from the
//! genesis file. It joins the mesh, follows committed headers with their certificates (the
//! `Headers` sync request from several peers in parallel, and the block topic for new heads),
//! verifies each against the validator set it tracks through every change, and answers balance
//! queries with state proofs checked against a verified `state_root`. It never executes a tx.
//!
//! A peer that serves a header, certificate or proof that does not verify is banned; the light
//! peer goes on with the others. What it verified is stored (one flushed write per run of
//! headers), so a restart resumes where it stopped. Two certified headers for one height are
//! kept as evidence, and from then on the peer stops: it follows no further header and answers
//! no balance, because more than a third of the validators signed two blocks.

use crate::config::NodeConfig;
use crate::light_api::LightApi;
use crate::metrics::{Direction, NodeMetrics};
use crate::run::{self, RpcServers};
use aitbc_chain::block::tx_root;
use aitbc_chain::codec;
use aitbc_chain::genesis::Genesis;
use aitbc_chain::light::store::{Conflict, HeaderStore};
use aitbc_chain::light::{CertifiedHeader, HeaderError, Trusted, Verifier};
use aitbc_chain::store::{SledKv, StoreError};
use aitbc_chain::{Account, Address, Hash};
use aitbc_p2p::{
    Acceptance, CertifiedBlock, Event, Handle, PeerId, Refusal, RequestError, SyncRequest,
    SyncResponse, Topic,
};
use aitbc_rpc::{AccountInfo, ApiError, HeaderInfo, NodeEvent, RpcMetrics};
use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

/// Where the header store lives inside `db_path` (beside a full node's `chain`, never in it).
const STORE_DIR: &str = "light";
const POLL: Duration = Duration::from_secs(2);
/// Headers asked of one peer at a time: the protocol's maximum, since headers are small and
/// one run is verified with one signature batch.
const CHUNK: u32 = aitbc_p2p::config::MAX_HEADERS_PER_REQUEST;
/// Peers asked in parallel while catching up.
const PARALLEL: usize = 4;
/// Peers tried for one balance before giving up.
const PROOF_TRIES: usize = 3;
const EVENT_BUFFER: usize = 1024;

/// The verifier and the store it feeds, moved forward together under one lock.
struct Tracker {
    verifier: Verifier,
    store: HeaderStore<SledKv>,
    /// The height of a kept conflict: nothing is trusted from there on.
    halted: Option<u64>,
}

/// Why a run of headers was not (wholly) applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The peer's data is wrong: ban it.
    #[error("{0}")]
    Invalid(#[from] HeaderError),
    /// Our disk failed; the peer is not to blame.
    #[error("store: {0}")]
    Local(#[from] StoreError),
    #[error(
        "conflicting certified headers at height {0}: this light peer trusts nothing from there on"
    )]
    Halted(u64),
}

pub struct Light {
    pub genesis: Genesis,
    pub genesis_hash: Hash,
    pub peer_id: String,
    pub net: Handle,
    pub metrics: NodeMetrics,
    pub registry: Registry,
    pub events: broadcast::Sender<NodeEvent>,
    pub best_peer_height: AtomicU64,
    pub syncing: AtomicBool,
    pub peers: AtomicU64,
    tracker: Mutex<Tracker>,
    /// Heads peers reported at the last poll; balance queries ask peers at or above ours.
    peer_heads: Mutex<BTreeMap<PeerId, u64>>,
    /// Peers that, asked for heights they claimed to have, served fewer. Their claims are still
    /// tried, but left out of `best_peer_height` (and so of `syncStatus`'s lag) until they serve
    /// a run up to what they claimed: a peer cannot make us look behind by saying so. (A run
    /// cut short by the response size limit counts as fewer too, until a later run reaches
    /// the claim; that only under-reports the lag for a while.)
    unbacked: Mutex<BTreeSet<PeerId>>,
    wake: mpsc::Sender<()>,
}

impl Light {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // Tracker updates are a verify then one store write; a panic in between leaves the
        // verifier ahead of the store at worst, which `apply` repairs.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn trusted(&self) -> Trusted {
        self.tracker().verifier.trusted().clone()
    }

    pub fn head_height(&self) -> u64 {
        self.tracker().verifier.trusted().height()
    }

    pub fn halted(&self) -> Option<u64> {
        self.tracker().halted
    }

    /// The verified header at `height` (`None` above the trusted head).
    pub fn header(&self, height: u64) -> Result<Option<CertifiedHeader>, StoreError> {
        self.tracker().store.header(height)
    }

    pub fn genesis_header(&self) -> aitbc_chain::Header {
        self.tracker().store.genesis_header().clone()
    }

    /// Verifies `headers` on top of the trusted head, stores the valid prefix in one flushed
    /// write and announces it; returns how many were applied, or why the rest was not.
    fn apply(&self, headers: &[CertifiedHeader]) -> Result<usize, ApplyError> {
        let mut t = self.tracker();
        if let Some(h) = t.halted {
            return Err(ApplyError::Halted(h));
        }
        // Another task may have trusted the start of this run since it was asked for.
        let known = t.store.known_prefix(headers)?;
        let headers = &headers[known..];
        let outcome = t.verifier.verify(headers);
        let accepted = &headers[..outcome.accepted];
        if !accepted.is_empty() {
            let trusted = t.verifier.trusted().clone();
            if let Err(e) = t.store.append(accepted, &trusted) {
                // Trust only what is stored: go back to the store's trust.
                let stored = t.store.trusted().clone();
                if let Ok(v) = Verifier::new(self.genesis.chain_id.clone(), stored) {
                    t.verifier = v;
                }
                return Err(e.into());
            }
            drop(t);
            let head = trusted.height();
            self.metrics.on_commit(head, 0, None, None);
            for ch in accepted {
                let _ = self.events.send(NodeEvent::NewBlock(HeaderInfo {
                    hash: ch.commit.block_hash,
                    header: ch.header.clone(),
                    tx_count: None,
                }));
            }
            tracing::debug!(
                component = "light",
                event = "verified",
                height = head,
                headers = accepted.len()
            );
        }
        match outcome.rejected {
            Some(e) => Err(e.into()),
            None => Ok(outcome.accepted),
        }
    }

    /// Keeps `other` as evidence if it is a certified header conflicting with the trusted head.
    fn check_conflict(&self, other: &CertifiedHeader) -> Result<bool, StoreError> {
        let mut t = self.tracker();
        if !t.verifier.is_conflict(other) {
            return Ok(false);
        }
        let height = other.header.height;
        let trusted = t.store.header(height)?.ok_or_else(|| StoreError::Corrupt {
            key: format!("light header {height}"),
            reason: "the trusted head is not stored".into(),
        })?;
        t.store.record_conflict(&Conflict {
            trusted,
            other: other.clone(),
        })?;
        t.halted = Some(height);
        tracing::error!(
            component = "light",
            event = "conflict",
            height,
            "two certified headers at one height: kept as evidence; this light peer stops trusting"
        );
        Ok(true)
    }

    /// A verified balance: the account's proof from a peer, checked against the `state_root`
    /// of a verified header. A peer whose proof does not verify is banned and another asked.
    pub async fn account(&self, address: Address) -> Result<AccountInfo, ApiError> {
        if let Some(h) = self.halted() {
            return Err(ApiError::unavailable(
                "conflicting_headers",
                format!("two certified headers at height {h}: this light peer trusts no state"),
            ));
        }
        let head = self.head_height();
        // Connected peers, highest reported head first: they most likely answer at or above
        // our head (reports are from the last poll, so a lower one may have caught up since).
        let connected = self
            .net
            .peers()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut candidates: Vec<(PeerId, u64)> = {
            let heads = self.peer_heads.lock().unwrap_or_else(|e| e.into_inner());
            connected
                .iter()
                .filter(|p| p.connected)
                .map(|p| (p.peer_id, heads.get(&p.peer_id).copied().unwrap_or(0)))
                .collect()
        };
        candidates.sort_by_key(|(_, h)| std::cmp::Reverse(*h));
        let mut last_problem = "no peer is connected".to_string();
        for (peer, _) in candidates.into_iter().take(PROOF_TRIES) {
            let request = SyncRequest::AccountProof {
                address,
                height: head,
            };
            let proof = match self.net.request(peer, request).await {
                Ok(SyncResponse::AccountProof(p)) => p,
                Ok(other) => {
                    last_problem = format!("peer {peer} answered {}", describe(&other));
                    continue;
                }
                // A proof of another account or of a height below ours (`SyncResponse::answers`
                // refused it) is a lie, not a failure.
                Err(RequestError::UnexpectedResponse) => {
                    let why = "answered with a proof it was not asked for";
                    last_problem = format!("peer {peer} {why}");
                    self.penalise(peer, "account_proof", why.into()).await;
                    continue;
                }
                Err(e) => {
                    last_problem = format!("peer {peer}: {e}");
                    continue;
                }
            };
            // The proof is at the peer's head: verify headers up to it first.
            if proof.height > self.head_height() {
                self.fetch_headers(peer, proof.height).await;
            }
            let root = match self.header(proof.height) {
                Ok(Some(ch)) => ch.header.state_root,
                Ok(None) if proof.height == 0 => self.genesis_header().state_root,
                Ok(None) => {
                    last_problem = format!(
                        "peer {peer} proved height {} but served no verifiable header up to it",
                        proof.height
                    );
                    continue;
                }
                Err(e) => return Err(ApiError::internal(e.to_string())),
            };
            let verified = proof
                .proof
                .verify(&root, self.genesis.params.state_buckets)
                .map_err(|e| e.to_string())
                .and_then(|value| match value {
                    None => Ok(Account::default()),
                    Some(bytes) => codec::decode::<Account>(bytes, bytes.len())
                        .map_err(|e| format!("the proven value is not an account: {e}")),
                });
            match verified {
                Ok(a) => {
                    return Ok(AccountInfo {
                        balance: a.balance,
                        nonce: a.nonce,
                        stake: a.stake,
                        height: proof.height,
                    })
                }
                Err(why) => {
                    last_problem = format!("peer {peer} served a bad proof: {why}");
                    self.penalise(peer, "account_proof", format!("bad account proof: {why}"))
                        .await;
                }
            }
        }
        Err(ApiError::unavailable("no_verified_proof", last_problem))
    }

    /// Records whether `peer` served the heights it claimed to have when asked.
    fn backed(&self, peer: PeerId, served: bool) {
        let mut unbacked = self.unbacked.lock().unwrap_or_else(|e| e.into_inner());
        if served {
            unbacked.remove(&peer);
        } else {
            unbacked.insert(peer);
        }
    }

    /// Recomputes `best_peer_height` from the heads of peers whose claims are not unbacked;
    /// returns it.
    fn update_best(&self) -> u64 {
        let unbacked = self.unbacked.lock().unwrap_or_else(|e| e.into_inner());
        let best = self
            .peer_heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(p, _)| !unbacked.contains(p))
            .map(|(_, h)| *h)
            .max()
            .unwrap_or(0);
        self.best_peer_height.store(best, Ordering::Relaxed);
        best
    }

    /// Bans `peer` for serving data that does not verify.
    async fn penalise(&self, peer: PeerId, reason: &'static str, why: String) {
        tracing::warn!(component = "light", event = "bad_peer", %peer, reason, "{why}");
        self.metrics.invalid(reason);
        self.peer_heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer);
        let _ = self.net.ban(peer, why).await;
    }

    /// Fetches and applies headers from `peer` until `target` (or until it fails).
    async fn fetch_headers(&self, peer: PeerId, target: u64) {
        while self.head_height() < target {
            let from = self.head_height() + 1;
            let count = u32::try_from(target - from + 1).unwrap_or(CHUNK).min(CHUNK);
            let answer = self
                .net
                .request(peer, SyncRequest::Headers { from, count })
                .await;
            match answer {
                Ok(SyncResponse::Headers(hs)) if !hs.is_empty() => {
                    if !self.apply_from(peer, hs).await {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Applies `headers` served by `peer` on a blocking thread (signature checks are CPU work)
    /// and bans the peer if they do not verify; true if all were applied.
    async fn apply_from(self: &Light, peer: PeerId, headers: Vec<CertifiedHeader>) -> bool {
        let verdict = tokio::task::block_in_place(|| self.apply(&headers));
        match verdict {
            Ok(_) => true,
            Err(ApplyError::Invalid(e)) => {
                self.penalise(peer, "sync_header", format!("served a bad header: {e}"))
                    .await;
                false
            }
            Err(e) => {
                tracing::warn!(component = "light", event = "apply_failed", "{e}");
                false
            }
        }
    }
}

fn describe(r: &SyncResponse) -> String {
    match r {
        SyncResponse::Refused(Refusal::Unavailable) => "unavailable".into(),
        SyncResponse::Refused(why) => format!("refused: {why}"),
        _ => "an unexpected response".into(),
    }
}

pub fn run(config: NodeConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aitbc-light")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(config))
}

async fn run_async(config: NodeConfig) -> Result<()> {
    let genesis = run::load_genesis(&config)?;
    std::fs::create_dir_all(&config.db_path)
        .with_context(|| format!("db_path {}", config.db_path.display()))?;
    let store_path = config.db_path.join(STORE_DIR);
    let kv = SledKv::open(&store_path)
        .with_context(|| format!("opening the header store at {}", store_path.display()))?;
    let store = HeaderStore::open(kv, &genesis).with_context(|| {
        format!(
            "the header store at {} cannot be trusted; stop, delete that directory and start \
             again to re-verify from genesis",
            store_path.display()
        )
    })?;
    let halted = store
        .conflicts()
        .context("reading kept conflicts")?
        .first()
        .map(|c| c.trusted.header.height);
    let verifier = Verifier::new(genesis.chain_id.clone(), store.trusted().clone())
        .context("the stored trusted validator set is unusable")?;
    tracing::info!(
        component = "light",
        event = "open",
        height = store.trusted().height()
    );

    // Wire limits follow the genesis parameters: a light peer does not execute the
    // `ParamUpdate`s that could change them.
    let params = genesis.params.clone();
    let (net, events, peer_id) = run::start_net(&config, &genesis, &params, true).await?;
    let mut registry = Registry::default();
    let metrics = NodeMetrics::register(&mut registry);
    let rpc_metrics = RpcMetrics::register(&mut registry);
    metrics.on_commit(store.trusted().height(), 0, None, None);
    let (wake_tx, wake_rx) = mpsc::channel(4);
    let light = Arc::new(Light {
        genesis_hash: genesis.hash(),
        genesis,
        peer_id,
        net: net.clone(),
        metrics,
        registry,
        events: broadcast::channel(EVENT_BUFFER).0,
        best_peer_height: AtomicU64::new(0),
        syncing: AtomicBool::new(false),
        peers: AtomicU64::new(0),
        tracker: Mutex::new(Tracker {
            verifier,
            store,
            halted,
        }),
        peer_heads: Mutex::new(BTreeMap::new()),
        unbacked: Mutex::new(BTreeSet::new()),
        wake: wake_tx,
    });

    tokio::spawn(forward_events(light.clone(), events));
    tokio::spawn(sync(light.clone(), wake_rx));
    let servers =
        RpcServers::start(&config, Arc::new(LightApi::new(light.clone())), rpc_metrics).await?;
    let signal = run::shutdown_signal().await;
    tracing::info!(component = "node", event = "shutdown", signal);
    servers.stop().await;
    net.shutdown().await;
    tracing::info!(
        component = "node",
        event = "stopped",
        height = light.head_height()
    );
    Ok(())
}

/// Judges block-topic gossip (a committed block's header and certificate), refuses sync
/// requests (a light peer has no blocks or state to serve) and counts peers.
async fn forward_events(light: Arc<Light>, mut events: mpsc::Receiver<Event>) {
    let limits = *light.net.limits();
    while let Some(event) = events.recv().await {
        match event {
            Event::Gossip {
                topic,
                data,
                id,
                source,
            } => {
                light
                    .metrics
                    .gossip(crate::core::gossip_topic(topic), Direction::In, data.len());
                let verdict = if topic == Topic::Block {
                    let light = light.clone();
                    tokio::task::spawn_blocking(move || judge_block(&light, &data, limits))
                        .await
                        .unwrap_or(Acceptance::Ignore)
                } else {
                    Acceptance::Ignore
                };
                let _ = light.net.report_validation(id, source, verdict).await;
            }
            Event::Request { id, .. } => {
                let _ = light
                    .net
                    .respond(id, SyncResponse::Refused(Refusal::Unavailable))
                    .await;
            }
            peer_event => {
                crate::net::track_peer(&light.peers, &light.metrics, &light.wake, &peer_event)
            }
        }
    }
}

/// A committed block from gossip: the next header is verified and trusted at once; one that
/// conflicts with the trusted head is kept as evidence; one further ahead wakes sync. Only a
/// block whose certificate or body does not check is rejected (its relayer penalised).
fn judge_block(light: &Light, data: &[u8], limits: aitbc_p2p::Limits) -> Acceptance {
    let Ok(cb) = codec::decode::<CertifiedBlock>(data, limits.gossip_payload) else {
        light.metrics.invalid("undecodable");
        return Acceptance::Reject;
    };
    if cb.block.header.tx_root != tx_root(&cb.block.txs) {
        light.metrics.invalid("block_tx_root");
        return Acceptance::Reject;
    }
    let header = &cb.block.header;
    let ch = CertifiedHeader {
        header: header.clone(),
        commit: cb.commit,
        // A block carries no validator set: a header that changes the set comes through sync.
        next_validators: None,
    };
    let head = light.head_height();
    if header.height == head + 1 && header.next_validators_hash == header.validators_hash {
        return match light.apply(std::slice::from_ref(&ch)) {
            Ok(_) => Acceptance::Accept,
            Err(ApplyError::Invalid(e)) => {
                tracing::debug!(component = "light", event = "bad_block_gossip", "{e}");
                light.metrics.invalid("block_certificate");
                Acceptance::Reject
            }
            Err(_) => Acceptance::Ignore,
        };
    }
    if header.height == head {
        if let Ok(true) = light.check_conflict(&ch) {
            return Acceptance::Accept;
        }
    }
    if header.height > head {
        let _ = light.wake.try_send(());
    }
    Acceptance::Ignore
}

/// Polls peers' heads and catches up with headers from several peers in parallel.
async fn sync(light: Arc<Light>, mut wake: mpsc::Receiver<()>) {
    loop {
        let claimed = poll_status(&light).await;
        if claimed > light.head_height() && light.halted().is_none() {
            light.syncing.store(true, Ordering::Relaxed);
            catch_up(&light, claimed).await;
            light.syncing.store(false, Ordering::Relaxed);
        }
        let best = light.update_best();
        light
            .metrics
            .set_sync(false, best.saturating_sub(light.head_height()));
        tokio::select! {
            w = wake.recv() => if w.is_none() { return },
            _ = tokio::time::sleep(POLL) => {}
        }
        while wake.try_recv().is_ok() {}
    }
}

/// Asks every connected peer for its head; returns the highest claimed.
async fn poll_status(light: &Light) -> u64 {
    let Ok(list) = light.net.peers().await else {
        return 0;
    };
    let mut asks = JoinSet::new();
    for p in list.into_iter().filter(|p| p.connected) {
        let net = light.net.clone();
        asks.spawn(async move { (p.peer_id, net.request(p.peer_id, SyncRequest::Status).await) });
    }
    let mut heads = BTreeMap::new();
    while let Some(Ok((peer, answer))) = asks.join_next().await {
        if let Ok(SyncResponse::Status(s)) = answer {
            heads.insert(peer, s.head_height);
        }
    }
    let claimed = heads.values().copied().max().unwrap_or(0);
    light
        .unbacked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| heads.contains_key(p));
    *light.peer_heads.lock().unwrap_or_else(|e| e.into_inner()) = heads;
    light.update_best();
    claimed
}

/// Fetches `CHUNK`-header runs from up to `PARALLEL` peers at once and applies them in order;
/// a peer whose run does not verify is banned, one that fails to answer is ranked down.
async fn catch_up(light: &Arc<Light>, target: u64) {
    let mut failures: BTreeMap<PeerId, u32> = BTreeMap::new();
    loop {
        let head = light.head_height();
        if head >= target || light.halted().is_some() {
            return;
        }
        light.metrics.set_sync(true, target - head);
        // Fewest failures first, then the highest head: a peer that claims to be ahead is
        // asked first, so one that lies about it is found out (and banned) early.
        let mut able: Vec<(PeerId, u64)> = light
            .peer_heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, h)| **h > head)
            .map(|(p, h)| (*p, *h))
            .collect();
        if able.is_empty() {
            return;
        }
        able.sort_by_key(|(p, h)| (failures.get(p).copied().unwrap_or(0), std::cmp::Reverse(*h)));
        // Consecutive runs, each from a peer that claims to have all of it.
        let mut fetches = JoinSet::new();
        let mut next = head + 1;
        for (peer, claimed) in able {
            if fetches.len() == PARALLEL || next > target {
                break;
            }
            if claimed < next {
                continue;
            }
            let from = next;
            let count = u32::try_from(claimed - from + 1)
                .unwrap_or(CHUNK)
                .min(CHUNK);
            // The last height asked for, which the peer claimed to have.
            let owed = from + u64::from(count) - 1;
            next = owed + 1;
            let net = light.net.clone();
            fetches.spawn(async move {
                let r = net
                    .request(peer, SyncRequest::Headers { from, count })
                    .await;
                (peer, owed, from, r)
            });
        }
        let mut answers = Vec::new();
        while let Some(Ok(a)) = fetches.join_next().await {
            answers.push(a);
        }
        answers.sort_by_key(|(_, _, from, _)| *from);
        for (peer, owed, from, answer) in answers {
            let headers = match answer {
                Ok(SyncResponse::Headers(hs)) if !hs.is_empty() => hs,
                _ => {
                    *failures.entry(peer).or_default() += 1;
                    light.backed(peer, false);
                    continue;
                }
            };
            // Runs apply in height order; one that no longer reaches the head (an earlier run
            // failed) is fetched again next round. One the head has moved into (gossip) applies
            // past what is already trusted.
            if from > light.head_height() + 1 {
                continue;
            }
            let last = from + headers.len() as u64 - 1;
            if light.apply_from(peer, headers).await {
                light.backed(peer, last >= owed);
            }
        }
        if light.head_height() == head {
            return;
        }
    }
}
