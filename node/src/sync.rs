//! Block sync: find the best head among peers and fetch what is missing, from several peers in
//! parallel, handing the blocks to the core in order. The core verifies each block's
//! certificate against the validator set it derived and re-executes the block before it
//! stores it, so a peer can waste our time but never make us store a wrong block; a peer that
//! serves a bad block is banned.
//!
//! Sync runs when woken (a peer connected, the engine saw validators ahead, a block was
//! announced above our head) and every [`POLL`] regardless, so a node that missed every
//! announcement still catches up.

use crate::core::CoreInput;
use crate::shared::Shared;
use aitbc_chain::{execution, HashedTx};
use aitbc_p2p::{CertifiedBlock, Handle, PeerId, SyncRequest, SyncResponse};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

const POLL: Duration = Duration::from_secs(2);
/// Blocks asked for in one request: the most a peer serves (a run of full blocks comes back
/// short, cut at the response's byte budget, and the rest is asked for again).
const CHUNK: u32 = aitbc_p2p::config::MAX_BLOCKS_PER_REQUEST;
/// Requests in flight at once.
const PARALLEL: usize = 4;

/// Peers' reported heads, and how well each served (failures lower its rank).
#[derive(Default)]
struct Peers {
    heads: BTreeMap<PeerId, u64>,
    failures: BTreeMap<PeerId, u32>,
}

impl Peers {
    /// The peer to ask for the run starting at `from`: one that has it, not `busy` if any
    /// other can, fewest failures first.
    fn pick(&self, from: u64, busy: &[PeerId]) -> Option<PeerId> {
        self.heads
            .iter()
            .filter(|(_, h)| **h >= from)
            .map(|(p, _)| *p)
            .min_by_key(|p| (busy.contains(p), self.failures.get(p).copied().unwrap_or(0)))
    }
}

pub async fn run(
    shared: Arc<Shared>,
    net: Handle,
    core: SyncSender<CoreInput>,
    mut wake: mpsc::Receiver<()>,
) {
    let mut peers = Peers::default();
    // Our head when a poll last found us exactly one block behind.
    let mut one_behind_at: Option<u64> = None;
    loop {
        tokio::select! {
            w = wake.recv() => if w.is_none() { return },
            _ = tokio::time::sleep(POLL) => {}
        }
        // Several wake-ups queued while we worked are one request for sync.
        while wake.try_recv().is_ok() {}
        poll_status(&net, &mut peers).await;
        let best = peers.heads.values().copied().max().unwrap_or(0);
        shared.best_peer_height.store(best, Ordering::Relaxed);
        let head = shared.head_height();
        let lag = best.saturating_sub(head);
        // One block behind is the normal state between a peer's commit and ours: consensus
        // or the block announcement closes it. If it has not closed by the next poll (the
        // announcement was lost), fetch it: a validator stuck one behind may be the vote the
        // others wait for.
        let stuck = lag == 1 && one_behind_at == Some(head);
        one_behind_at = (lag == 1).then_some(head);
        if lag > 1 || stuck {
            catch_up(&shared, &net, &core, &mut peers, best).await;
        }
        let lag = shared
            .best_peer()
            .unwrap_or(0)
            .saturating_sub(shared.head_height());
        shared.metrics.set_sync(false, lag);
    }
}

async fn poll_status(net: &Handle, peers: &mut Peers) {
    let Ok(list) = net.peers().await else {
        return;
    };
    let connected: Vec<PeerId> = list
        .into_iter()
        .filter(|p| p.connected)
        .map(|p| p.peer_id)
        .collect();
    peers.heads.retain(|p, _| connected.contains(p));
    let mut asks = JoinSet::new();
    for &p in &connected {
        let net = net.clone();
        asks.spawn(async move { (p, net.request(p, SyncRequest::Status).await) });
    }
    while let Some(Ok((peer, answer))) = asks.join_next().await {
        if let Ok(SyncResponse::Status(s)) = answer {
            peers.heads.insert(peer, s.head_height);
        }
    }
}

/// Fetches heights up to `target` and applies them in order, with up to `PARALLEL` requests in
/// flight, each to a different peer where it can: fetching runs while the core applies what
/// came before, so neither waits for the other (a peer's requests per second are limited, so
/// one peer alone could not keep up).
async fn catch_up(
    shared: &Arc<Shared>,
    net: &Handle,
    core: &SyncSender<CoreInput>,
    peers: &mut Peers,
    target: u64,
) {
    shared.syncing.store(true, Ordering::Relaxed);
    tracing::info!(
        component = "sync",
        event = "start",
        head = shared.head_height(),
        target
    );
    // Runs still to ask for (first height -> count): what failed or came back short, and the
    // frontier `next` beyond them.
    let mut missing: BTreeMap<u64, u32> = BTreeMap::new();
    let mut next = shared.head_height() + 1;
    // Answers waiting for the runs below them, by first height.
    let mut ready: BTreeMap<u64, (PeerId, Vec<CertifiedBlock>, bool)> = BTreeMap::new();
    let mut fetches = JoinSet::new();
    let mut busy: Vec<PeerId> = Vec::new();
    // Failed answers since the head last moved: enough of them ends this round (the next poll
    // or wake-up starts another), so peers that cannot serve are not asked forever.
    let mut fruitless = 0usize;
    loop {
        let head = shared.head_height();
        if head >= target || fruitless > 2 * PARALLEL {
            break;
        }
        shared.metrics.set_sync(true, target - head);
        // Top up the requests in flight: failed runs first, then the frontier.
        while fetches.len() < PARALLEL {
            let (from, count) = match missing.pop_first() {
                // Already committed meanwhile (by consensus, or a longer run).
                Some((from, count)) if from + u64::from(count) <= head + 1 => continue,
                Some(run) => run,
                None if next <= target => {
                    let count = u32::try_from(target - next + 1).unwrap_or(CHUNK).min(CHUNK);
                    next += u64::from(count);
                    (next - u64::from(count), count)
                }
                None => break,
            };
            let Some(peer) = peers.pick(from, &busy) else {
                missing.insert(from, count);
                break;
            };
            busy.push(peer);
            let net = net.clone();
            fetches.spawn(async move {
                let r = net.request(peer, SyncRequest::Blocks { from, count }).await;
                let r = match r {
                    Ok(SyncResponse::Blocks(b)) => Some(verify_txs(b).await),
                    _ => None,
                };
                (peer, from, count, r)
            });
        }
        let Some(Ok((peer, from, count, answer))) = fetches.join_next().await else {
            break;
        };
        busy.retain(|p| *p != peer);
        match answer {
            Some((b, verified)) if !b.is_empty() && b.len() <= count as usize => {
                // A short answer (the response's byte budget) leaves the rest to ask again.
                let got = b.len() as u32;
                if got < count {
                    missing.insert(from + u64::from(got), count - got);
                }
                ready.insert(from, (peer, b, verified));
            }
            _ => {
                *peers.failures.entry(peer).or_default() += 1;
                fruitless += 1;
                missing.insert(from, count);
            }
        }
        // Apply every run that follows the head; the others wait for the runs below them.
        loop {
            let head = shared.head_height();
            // Runs wholly at or below the head (sync raced a commit by consensus) are done.
            while let Some(entry) = ready.first_entry() {
                let (from, (_, blocks, _)) = (*entry.key(), entry.get());
                if from + blocks.len() as u64 - 1 > head {
                    break;
                }
                entry.remove();
            }
            let Some(entry) = ready.first_entry() else {
                break;
            };
            if *entry.key() > head + 1 {
                break;
            }
            let (from, (peer, blocks, verified)) = entry.remove_entry();
            let len = blocks.len() as u64;
            match apply(core, blocks, verified).await {
                Some(Ok(_)) => {}
                Some(Err(why)) => {
                    tracing::warn!(component = "sync", event = "bad_block", %peer, "{why}");
                    shared.metrics.invalid("sync_block");
                    let _ = net.ban(peer, format!("served a bad block: {why}")).await;
                    peers.heads.remove(&peer);
                    fruitless += 1;
                }
                None => return,
            }
            let head_now = shared.head_height();
            if head_now > head {
                fruitless = 0;
            }
            // What the run held above the new head is asked for again.
            let end = from + len;
            if head_now + 1 < end {
                let rest = u32::try_from(end - head_now - 1).unwrap_or(CHUNK);
                missing.insert(head_now + 1, rest);
            }
        }
    }
    shared.syncing.store(false, Ordering::Relaxed);
    tracing::info!(
        component = "sync",
        event = "done",
        head = shared.head_height()
    );
}

/// Checks every tx signature of a fetched run in one batch on a blocking thread, so it runs
/// beside the core applying the run before; true if all verify. (A bad one is left for the
/// core to find: it names the tx and the peer is banned for it.)
async fn verify_txs(blocks: Vec<CertifiedBlock>) -> (Vec<CertifiedBlock>, bool) {
    if blocks.iter().all(|b| b.block.txs.is_empty()) {
        return (blocks, true);
    }
    let checked = tokio::task::spawn_blocking(move || {
        let txs: Vec<&HashedTx> = blocks.iter().flat_map(|b| &b.block.txs).collect();
        let ok = execution::verify_txs(&txs).is_ok();
        (blocks, ok)
    })
    .await;
    checked.unwrap_or_else(|_| (Vec::new(), false))
}

/// Hands blocks to the core and waits for its verdict; `None` once the core has stopped.
async fn apply(
    core: &SyncSender<CoreInput>,
    blocks: Vec<CertifiedBlock>,
    txs_verified: bool,
) -> Option<Result<usize, String>> {
    let (reply, rx) = oneshot::channel();
    let core = core.clone();
    // The core's channel is a blocking one; a full channel must not stall the runtime.
    let sent = tokio::task::spawn_blocking(move || {
        core.send(CoreInput::Synced {
            blocks,
            txs_verified,
            reply,
        })
        .is_ok()
    })
    .await
    .ok()?;
    if !sent {
        return None;
    }
    rx.await.ok()
}
