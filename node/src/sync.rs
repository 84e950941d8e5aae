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
use aitbc_p2p::{CertifiedBlock, Handle, PeerId, SyncRequest, SyncResponse};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

const POLL: Duration = Duration::from_secs(2);
/// Blocks asked of one peer at a time.
const CHUNK: u32 = 32;
/// Peers asked in parallel.
const PARALLEL: usize = 4;

/// Peers' reported heads, and how well each served (failures lower its rank).
#[derive(Default)]
struct Peers {
    heads: BTreeMap<PeerId, u64>,
    failures: BTreeMap<PeerId, u32>,
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

/// Fetches heights up to `target`, `PARALLEL` chunks at a time from different peers, and
/// applies them in order.
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
    loop {
        let head = shared.head_height();
        if head >= target {
            break;
        }
        shared.metrics.set_sync(true, target - head);
        // Rank peers that can serve the next height: fewest failures first.
        let mut able: Vec<PeerId> = peers
            .heads
            .iter()
            .filter(|(_, h)| **h > head)
            .map(|(p, _)| *p)
            .collect();
        if able.is_empty() {
            break;
        }
        able.sort_by_key(|p| peers.failures.get(p).copied().unwrap_or(0));
        let jobs: Vec<(PeerId, u64, u32)> = able
            .iter()
            .take(PARALLEL)
            .enumerate()
            .map(|(i, p)| (*p, head + 1 + i as u64 * u64::from(CHUNK), CHUNK))
            .filter(|(_, from, _)| *from <= target)
            .collect();
        let mut fetches = JoinSet::new();
        for (peer, from, count) in jobs {
            let net = net.clone();
            fetches.spawn(async move {
                let r = net.request(peer, SyncRequest::Blocks { from, count }).await;
                (peer, from, r)
            });
        }
        let mut answers = Vec::new();
        while let Some(Ok(a)) = fetches.join_next().await {
            answers.push(a);
        }
        answers.sort_by_key(|(_, from, _)| *from);
        let mut progress = false;
        for (peer, from, answer) in answers {
            let blocks = match answer {
                Ok(SyncResponse::Blocks(b)) if !b.is_empty() => b,
                Ok(_) | Err(_) => {
                    *peers.failures.entry(peer).or_default() += 1;
                    continue;
                }
            };
            // Chunks are applied in height order; a chunk that no longer follows the head (an
            // earlier one failed) is dropped and fetched again next round.
            if from > shared.head_height() + 1 {
                continue;
            }
            match apply(core, blocks).await {
                Some(Ok(n)) => progress |= n > 0,
                Some(Err(why)) => {
                    tracing::warn!(component = "sync", event = "bad_block", %peer, "{why}");
                    shared.metrics.invalid("sync_block");
                    let _ = net.ban(peer, format!("served a bad block: {why}")).await;
                    peers.heads.remove(&peer);
                }
                None => return,
            }
        }
        if !progress {
            break;
        }
    }
    shared.syncing.store(false, Ordering::Relaxed);
    tracing::info!(
        component = "sync",
        event = "done",
        head = shared.head_height()
    );
}

/// Hands blocks to the core and waits for its verdict; `None` once the core has stopped.
async fn apply(
    core: &SyncSender<CoreInput>,
    blocks: Vec<CertifiedBlock>,
) -> Option<Result<usize, String>> {
    let (reply, rx) = oneshot::channel();
    let core = core.clone();
    // The core's channel is a blocking one; a full channel must not stall the runtime.
    let sent =
        tokio::task::spawn_blocking(move || core.send(CoreInput::Synced { blocks, reply }).is_ok())
            .await
            .ok()?;
    if !sent {
        return None;
    }
    rx.await.ok()
}
