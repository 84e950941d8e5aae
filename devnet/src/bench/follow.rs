//! The commit follower: reads every block committed during the run, in height order, and
//! recognises the bench's transactions in it. Only what it finds counts as committed.
//!
//! It polls `getBlock {height, txs: "hashes"}` for the next height (not found = not committed
//! yet; hashes only, a fraction of the full answer for the polled node to write and for the
//! follower to parse) rather than
//! subscribing over WebSocket: polling needs no WebSocket client, cannot silently lose events
//! when it falls behind (it just reads the next height), and the cost is bounded: one request
//! per [`POLL`] while waiting. A transaction's commit time is when the follower reads its block,
//! so latencies include up to one poll interval (half on average) of observation delay, and
//! the follower's own JSON parsing; that is the price of measuring what a client would see.
//!
//! A transaction is ours when its hash is one we signed. A transaction from a bench account
//! made by anyone else does not count, and does not move the account's committed nonce here
//! either: the senders' nonce window then follows our next tx that commits.

use super::rpc::Conn;
use super::send::Shared;
use aitbc_chain::block::Header;
use aitbc_chain::Hash;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wait before asking again for a height that is not committed yet.
pub const POLL: Duration = Duration::from_millis(20);
/// A block read takes a few ms; allow a busy node time.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One committed block as the bench saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSeen {
    pub height: u64,
    /// The proposer's timestamp in the header.
    pub timestamp_ms: u64,
    /// Consensus view the block was decided in (> 0 after a view change at that height).
    pub view: u64,
    pub txs: u32,
    /// How many of its txs were the bench's.
    pub ours: u32,
    /// When the follower read it, µs since the run's epoch.
    pub observed_us: u64,
    /// From the header's timestamp to the follower's read, by this machine's wall clock (the
    /// proposer ran on it too): how long deciding, committing and observing a block took.
    pub seen_after_ms: u64,
}

/// Everything the follower saw.
#[derive(Debug, Default)]
pub struct Followed {
    pub blocks: Vec<BlockSeen>,
    /// Submit → commit latency of each of our committed transactions, µs, with the block's
    /// observation time (to tell inside the window from the drain after it).
    pub latencies: Vec<(u64, u64)>,
    /// Failed reads other than "not committed yet": (count, last message).
    pub errors: u64,
    pub last_error: Option<String>,
}

/// `getBlock`'s answer with `txs: "hashes"` (other fields ignored).
#[derive(Deserialize)]
struct BlockAnswer {
    header: Header,
    tx_hashes: Vec<Hash>,
}

/// Follows from `start_height` on `urls[0]`, moving to the next URL when a node stops
/// answering, until the stop flag is set.
pub fn run(shared: &Shared, urls: &[String], start_height: u64) -> Followed {
    let mut out = Followed::default();
    let mut which = 0;
    let mut conn = Conn::new(&urls[0], TIMEOUT);
    let mut next = start_height;
    while !shared.stop_following.load(Ordering::Acquire) {
        let params = serde_json::json!({ "height": next, "txs": "hashes" });
        match conn.call::<BlockAnswer>("getBlock", params) {
            Ok(answer) => {
                let observed_us = shared.stamp();
                record(shared, &answer, observed_us, &mut out);
                next = next.saturating_add(1);
            }
            Err(r) if r.reason == "not_found" => std::thread::sleep(POLL),
            Err(r) => {
                out.errors += 1;
                out.last_error = Some(format!("{}: {r}", conn.url()));
                if r.is_transport() && urls.len() > 1 {
                    which = (which + 1) % urls.len();
                    conn = Conn::new(&urls[which], TIMEOUT);
                }
                std::thread::sleep(POLL * 5);
            }
        }
    }
    out
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Matches a committed block's transactions against the plan.
fn record(shared: &Shared, block: &BlockAnswer, observed_us: u64, out: &mut Followed) {
    let mut ours = 0u32;
    for hash in &block.tx_hashes {
        let Some(&(i, pos)) = shared.plan.by_hash.get(hash) else {
            continue;
        };
        let account = &shared.plan.accounts[i as usize];
        let pos = pos as usize;
        account
            .committed_nonce
            .fetch_max(account.nonce_at(pos), Ordering::AcqRel);
        let sent = account.sent_at_us[pos].load(Ordering::Acquire);
        if sent == 0 {
            // Never sent by this run (cannot happen for a tx only this run signed); not counted,
            // so that committed never exceeds submitted.
            continue;
        }
        ours += 1;
        out.latencies
            .push((observed_us, observed_us.saturating_sub(sent)));
    }
    shared
        .committed
        .fetch_add(u64::from(ours), Ordering::Relaxed);
    out.blocks.push(BlockSeen {
        height: block.header.height,
        timestamp_ms: block.header.timestamp_ms,
        view: block.header.view,
        txs: u32::try_from(block.tx_hashes.len()).unwrap_or(u32::MAX),
        ours,
        observed_us,
        seen_after_ms: unix_ms().saturating_sub(block.header.timestamp_ms),
    });
}
