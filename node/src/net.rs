//! The node's side of the network: every p2p event is decoded and judged here or handed to the
//! core, sync requests are answered from the store, and admitted txs leave in batches.
//!
//! Everything from a peer is untrusted: payloads are decoded with the wire limits, and a
//! payload that does not decode is rejected (the peer loses score) before anything else looks
//! at it.

use crate::core::{gossip_topic, CoreInput};
use crate::metrics::Direction;
use crate::metrics::NodeMetrics;
use crate::shared::Shared;
use aitbc_chain::codec;
use aitbc_chain::consensus::Message;
use aitbc_chain::tx::{HashedTx, Tx};
use aitbc_p2p::sync::Status;
use aitbc_p2p::{
    Acceptance, AccountProof, CertifiedBlock, CertifiedHeader, Event, Handle, Refusal, SyncRequest,
    SyncResponse, Topic,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Txs are gathered this long before they leave as one gossip message (SPEC §6: per-message
/// gossip overhead would otherwise dominate at the target rate).
///
/// The cost is per message and per peer (each node receives a message from about every mesh
/// peer), so what matters is the rate at which each node publishes. At 5 ms a 16-validator
/// devnet at 1,000 tx/s (62 tx/s per node) sent one tx per message and spent the machine's
/// two cores on it: kernel, malloc, libp2p and the runtime, not signatures. Devnet bench,
/// 200 ms blocks, 5 ms → 50 ms: 16 validators at 1,000 tx/s p50 1.9–2.4 s → 0.9–1.5 s;
/// 4 validators at 5,000 tx/s p50 247 → 237 ms at 17% less CPU, at 8,000 p50/p99 358/682 →
/// 330/594 ms, saturated 12.5k → 13.0–13.6k committed tx/s. The proposer takes txs once per
/// block anyway, so the wait did not show up in latency.
const TX_BATCH_WINDOW: Duration = Duration::from_millis(50);
/// A batch is sent early once it holds this many bytes.
const TX_BATCH_BYTES: usize = 128 * 1024;

/// Reads p2p events until the network stops.
pub async fn forward_events(
    shared: Arc<Shared>,
    net: Handle,
    mut events: mpsc::Receiver<Event>,
    core: SyncSender<CoreInput>,
    sync_wake: mpsc::Sender<()>,
) {
    let limits = *net.limits();
    while let Some(event) = events.recv().await {
        match event {
            Event::Gossip {
                topic,
                data,
                id,
                source,
            } => {
                shared
                    .metrics
                    .gossip(gossip_topic(topic), Direction::In, data.len());
                let input = match topic {
                    Topic::Tx => {
                        let (shared, net) = (shared.clone(), net.clone());
                        // Signature checks are CPU work: keep them off the runtime's threads.
                        tokio::task::spawn_blocking(move || {
                            let acceptance = admit_batch(&shared, &data);
                            let rt = tokio::runtime::Handle::current();
                            rt.spawn(async move {
                                let _ = net.report_validation(id, source, acceptance).await;
                            });
                        });
                        continue;
                    }
                    Topic::Consensus => match Message::decode(&data, limits.gossip_payload) {
                        Ok(msg) => CoreInput::Consensus { msg, id, source },
                        Err(e) => {
                            tracing::debug!(component = "p2p", event = "undecodable", %source, "consensus message: {e}");
                            shared.metrics.invalid("undecodable");
                            let _ = net.report_validation(id, source, Acceptance::Reject).await;
                            continue;
                        }
                    },
                    Topic::Block => {
                        match codec::decode::<CertifiedBlock>(&data, limits.gossip_payload) {
                            Ok(block) => CoreInput::Announced {
                                block: Box::new(block),
                                id,
                                source,
                            },
                            Err(e) => {
                                tracing::debug!(component = "p2p", event = "undecodable", %source, "block: {e}");
                                shared.metrics.invalid("undecodable");
                                let _ = net.report_validation(id, source, Acceptance::Reject).await;
                                continue;
                            }
                        }
                    }
                };
                if let Err(TrySendError::Full(input) | TrySendError::Disconnected(input)) =
                    core.try_send(input)
                {
                    // The core is behind: drop without penalty, gossip will not forward it.
                    let (id, source) = match input {
                        CoreInput::Consensus { id, source, .. }
                        | CoreInput::Announced { id, source, .. } => (id, source),
                        _ => continue,
                    };
                    let _ = net.report_validation(id, source, Acceptance::Ignore).await;
                }
            }
            Event::Request { peer, id, request } => {
                let (shared, net, limits) = (shared.clone(), net.clone(), limits);
                tokio::spawn(async move {
                    let answer =
                        tokio::task::spawn_blocking(move || serve(&shared, &request, &limits))
                            .await
                            .unwrap_or(SyncResponse::Refused(Refusal::Busy));
                    if let Err(e) = net.respond(id, answer).await {
                        tracing::debug!(component = "sync", event = "respond_failed", %peer, "{e}");
                    }
                });
            }
            peer_event => track_peer(&shared.peers, &shared.metrics, &sync_wake, &peer_event),
        }
    }
}

/// Peer bookkeeping of full and light nodes alike: the count and its metric, a log line, and
/// a sync wake-up when a peer arrives (it may be ahead).
pub(crate) fn track_peer(
    peers: &AtomicU64,
    metrics: &NodeMetrics,
    sync_wake: &mpsc::Sender<()>,
    event: &Event,
) {
    match event {
        Event::PeerConnected { peer } => {
            let n = peers.fetch_add(1, Ordering::Relaxed) + 1;
            metrics.set_peers(n as usize);
            tracing::info!(component = "p2p", event = "peer_connected", %peer, peers = n);
            let _ = sync_wake.try_send(());
        }
        Event::PeerDisconnected { peer } => {
            let n = peers.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
            metrics.set_peers(n as usize);
            tracing::info!(component = "p2p", event = "peer_disconnected", %peer, peers = n);
        }
        Event::PeerBanned { peer, reason } => {
            tracing::warn!(component = "p2p", event = "peer_banned", %peer, ?reason);
        }
        Event::Gossip { .. } | Event::Request { .. } => {}
    }
}

/// Admits a gossip batch of txs. A forged signature or a tx of another chain rejects the
/// whole batch (its relayer is penalised); stale or known txs are only dropped.
fn admit_batch(shared: &Shared, data: &[u8]) -> Acceptance {
    let params = shared.params();
    let max = usize::try_from(params.max_block_bytes).unwrap_or(usize::MAX);
    let txs: Vec<HashedTx> = match codec::decode(data, max) {
        Ok(txs) => txs,
        Err(_) => {
            shared.metrics.invalid("undecodable");
            return Acceptance::Reject;
        }
    };
    // Gossipsub forwards an accepted batch itself: no copies for our own gossip.
    let (results, _) = shared.admit_to_pool(txs, false);
    let mut any_admitted = false;
    for r in &results {
        match r {
            Ok(()) => any_admitted = true,
            Err(e) if e.is_invalid() => {
                shared.metrics.invalid(e.reason());
                return Acceptance::Reject;
            }
            Err(e) => shared.metrics.mempool_rejected(e.reason()),
        }
    }
    if any_admitted {
        Acceptance::Accept
    } else {
        Acceptance::Ignore
    }
}

/// Answers a sync request from the committed store.
pub fn serve(shared: &Shared, request: &SyncRequest, limits: &aitbc_p2p::Limits) -> SyncResponse {
    let store = shared.store();
    let head = store.height();
    let budget = limits.response.saturating_sub(64 * 1024);
    let result = (|| -> Result<SyncResponse, aitbc_chain::store::StoreError> {
        Ok(match *request {
            SyncRequest::Status => SyncResponse::Status(Status {
                genesis_hash: shared.genesis_hash,
                head_height: head,
                head_hash: store.head_hash(),
                lowest_height: 0,
            }),
            SyncRequest::Blocks { from, count } => {
                let mut out = Vec::new();
                let mut bytes = 0usize;
                for h in from.max(1)..=head.min(from.saturating_add(u64::from(count)) - 1) {
                    let (Some(block), Some(commit)) = (store.block(h)?, store.certificate(h)?)
                    else {
                        break;
                    };
                    let block = Arc::unwrap_or_clone(block);
                    let cb = CertifiedBlock { block, commit };
                    bytes += codec::encoded_len(&cb);
                    if bytes > budget && !out.is_empty() {
                        break;
                    }
                    out.push(cb);
                }
                SyncResponse::Blocks(out)
            }
            SyncRequest::Headers { from, count } => {
                let mut out = Vec::new();
                for h in from.max(1)..=head.min(from.saturating_add(u64::from(count)) - 1) {
                    let (Some(block), Some(commit)) = (store.block(h)?, store.certificate(h)?)
                    else {
                        break;
                    };
                    let next_validators = store.set_change_at(h).map(|s| (*s).clone());
                    out.push(CertifiedHeader {
                        header: block.header.clone(),
                        commit,
                        next_validators,
                    });
                }
                SyncResponse::Headers(out)
            }
            SyncRequest::AccountProof { address, height } => {
                // Only the head's state is kept (no history): the proof is at the head, which
                // must not be below what the asker already trusts.
                if height > head {
                    SyncResponse::Refused(Refusal::Unavailable)
                } else {
                    let key = aitbc_chain::state::keys::account(&address);
                    SyncResponse::AccountProof(AccountProof {
                        height: head,
                        proof: store.prove(&key)?,
                    })
                }
            }
        })
    })();
    result.unwrap_or_else(|e| {
        tracing::error!(component = "sync", event = "serve_failed", "{e}");
        SyncResponse::Refused(Refusal::Unavailable)
    })
}

/// Sends admitted txs in batches: whatever arrived within [`TX_BATCH_WINDOW`] of the first,
/// or [`TX_BATCH_BYTES`], whichever comes first.
pub async fn publish_tx_batches(shared: Arc<Shared>, net: Handle, mut txs: mpsc::Receiver<Tx>) {
    while let Some(first) = txs.recv().await {
        let mut batch = vec![first];
        let mut bytes = batch[0].encoded_len();
        let deadline = tokio::time::Instant::now() + TX_BATCH_WINDOW;
        while bytes < TX_BATCH_BYTES {
            match tokio::time::timeout_at(deadline, txs.recv()).await {
                Ok(Some(tx)) => {
                    bytes += tx.encoded_len();
                    batch.push(tx);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let data = codec::encode(&batch);
        shared
            .metrics
            .gossip(gossip_topic(Topic::Tx), Direction::Out, data.len());
        if let Err(e) = net.publish(Topic::Tx, data).await {
            tracing::debug!(
                component = "p2p",
                event = "tx_batch_unsent",
                txs = batch.len(),
                "{e}"
            );
        }
    }
}
