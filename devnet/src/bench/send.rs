//! The senders: one thread per HTTP connection, each owning a disjoint set of accounts and
//! talking to one validator, sending pre-signed transfers in JSON-RPC batches on schedule.
//!
//! Owning accounts per thread keeps each sender's nonces in order on one connection to one
//! node, so the node never sees nonce n+1 of an account before nonce n from the bench. A batch
//! holds at most one transaction per account: when a node refuses nonce n for a passing reason
//! (`mempool_full`, the rate limit, a dropped connection), no later nonce of that account is in
//! flight, and nonce n is simply resent later. Nothing is signed here.
//!
//! Answers are awaited with `wait: "mempool"`, so every refusal is seen and counted by reason;
//! `wait: "none"` would hide them.

use super::pace::Pacer;
use super::plan::Plan;
use super::rpc::{Conn, Refusal};
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time for one batch round trip. Admission of 100 txs takes milliseconds; a node that takes
/// this long is wedged, and its transactions are resent.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before an account resends a transaction refused for a passing reason.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Sleep while every account of a sender is held back by the nonce window or a backoff.
const BLOCKED_SLEEP: Duration = Duration::from_millis(2);
/// Longest sleep between looks at the stop flag.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// A refusal reason with how often it came and one message as an example.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub count: u64,
    pub example: String,
}

/// What the senders, the follower and the main loop share.
pub struct Shared {
    pub plan: Plan,
    /// Start of the measured window; submit and commit times are µs since it.
    pub epoch: Instant,
    /// Set at the end of the window (or on Ctrl-C): senders stop.
    pub stop_sending: AtomicBool,
    /// Set after the drain: the follower stops.
    pub stop_following: AtomicBool,
    /// Distinct transactions sent at least once.
    pub submitted: AtomicU64,
    /// Distinct transactions a node admitted (or already had).
    pub accepted: AtomicU64,
    /// Distinct transactions found in committed blocks (the follower counts).
    pub committed: AtomicU64,
    /// Accounts that stopped sending after a refusal that a resend cannot cure.
    pub retired: AtomicU64,
    pub rejections: Mutex<BTreeMap<String, Rejection>>,
}

impl Shared {
    pub fn new(plan: Plan, epoch: Instant) -> Shared {
        Shared {
            plan,
            epoch,
            stop_sending: AtomicBool::new(false),
            stop_following: AtomicBool::new(false),
            submitted: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            rejections: Mutex::new(BTreeMap::new()),
        }
    }

    /// µs since the epoch, plus one so that 0 can mean "never".
    pub fn stamp(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn reject(&self, refusal: &Refusal, times: u64) {
        // A poisoned lock only means another sender panicked mid-insert; the counts stay usable.
        let mut map = self.rejections.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(refusal.reason.clone()).or_default();
        entry.count += times;
        if entry.example.is_empty() {
            entry.example = refusal.message.clone();
        }
    }
}

/// What to do with an account after a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The node already holds it (an earlier attempt got through): go on to the next nonce.
    AlreadyTaken,
    /// The nonce is already used on chain (by this tx, admitted by an attempt whose answer was
    /// lost, or by another): go on to the next nonce.
    Skip,
    /// A passing condition: resend the same transaction after a backoff.
    Retry,
    /// Resending cannot help (bad signature, fee, funds, …): the account stops sending.
    Retire,
}

/// How a refusal reason is handled (see [`Verdict`]).
pub fn verdict(reason: &str) -> Verdict {
    match reason {
        "duplicate" => Verdict::AlreadyTaken,
        "stale_nonce" => Verdict::Skip,
        "mempool_full"
        | "rate_limited"
        | "nonce_gap_too_large"
        | "state_unavailable"
        | "transport"
        | "bad_answer"
        | "no_answer"
        | "internal_error"
        | "unavailable"
        | "shutting_down" => Verdict::Retry,
        _ => Verdict::Retire,
    }
}

/// One sender's share of the load.
pub struct SenderPlan {
    pub url: String,
    /// Indices into the plan's accounts.
    pub accounts: Vec<usize>,
    /// This sender's share of the target rate (0 = unpaced).
    pub rate: f64,
    pub batch: usize,
    pub window: Duration,
    /// Least time between two of this sender's requests (see [`min_interval`]).
    pub min_interval: Duration,
}

/// How a sender ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderEnd {
    /// Every account had sent all its pre-signed transactions (or retired) this far into the
    /// window.
    pub ran_dry_at: Option<Duration>,
    /// Sends that were due on the schedule but never made (held back by the nonce window or
    /// refusals): the target rate was not offered in full.
    pub behind: u64,
}

struct AccountState {
    /// Index into the plan's accounts.
    account: usize,
    /// Position of the next tx to send.
    next: usize,
    /// Positions below this have been sent at least once.
    high: usize,
    retry_at: Option<Instant>,
    retired: bool,
}

/// Runs one sender until the window ends, the stop flag is set, or it runs dry.
pub fn run(shared: &Shared, plan: SenderPlan) -> SenderEnd {
    let mut conn = Conn::new(&plan.url, REQUEST_TIMEOUT);
    let pacer = Pacer::new(plan.rate);
    let mut states: Vec<AccountState> = plan
        .accounts
        .iter()
        .map(|&account| AccountState {
            account,
            next: 0,
            high: 0,
            retry_at: None,
            retired: false,
        })
        .collect();
    let mut cursor = 0;
    let mut sent: u64 = 0;
    let mut end = SenderEnd::default();
    let mut picks: Vec<usize> = Vec::with_capacity(plan.batch);
    let mut params: Vec<String> = Vec::with_capacity(plan.batch);
    let mut last_request: Option<Instant> = None;
    loop {
        let elapsed = shared.epoch.elapsed();
        if elapsed >= plan.window || shared.stop_sending.load(Ordering::Acquire) {
            if !pacer.unpaced() {
                end.behind = pacer
                    .due(plan.window.saturating_sub(Duration::from_nanos(1)))
                    .saturating_sub(sent);
            }
            return end;
        }
        let due = pacer.due(elapsed).saturating_sub(sent);
        if due == 0 {
            std::thread::sleep(pacer.until_due(sent, elapsed).min(MAX_SLEEP));
            continue;
        }
        // Let a batch fill rather than spend a request on every transaction as it falls due:
        // the node's rate limit counts requests.
        if let Some(wait) = last_request.map(|t| plan.min_interval.saturating_sub(t.elapsed())) {
            if !wait.is_zero() {
                std::thread::sleep(wait.min(MAX_SLEEP));
                continue;
            }
        }
        let want = usize::try_from(due).unwrap_or(usize::MAX).min(plan.batch);

        // Round-robin over this sender's accounts: one tx from each that may send now.
        let now = Instant::now();
        picks.clear();
        let mut live = false;
        for step in 0..states.len() {
            if picks.len() == want {
                break;
            }
            let si = (cursor + step) % states.len();
            let st = &states[si];
            let account = &shared.plan.accounts[st.account];
            if st.retired || st.next >= account.txs.len() {
                continue;
            }
            live = true;
            if st.retry_at.is_some_and(|t| t > now) || !account.may_send(st.next) {
                continue;
            }
            picks.push(si);
        }
        if picks.is_empty() {
            if !live {
                end.ran_dry_at = Some(elapsed);
                return end;
            }
            std::thread::sleep(BLOCKED_SLEEP);
            continue;
        }
        if let Some(&last) = picks.last() {
            cursor = (last + 1) % states.len();
        }

        params.clear();
        for &si in &picks {
            let st = &states[si];
            let tx = &shared.plan.accounts[st.account].txs[st.next];
            params.push(format!(
                r#"{{"tx":"0x{}","wait":"mempool"}}"#,
                hex::encode(&tx.bytes)
            ));
        }
        let calls: Vec<(&str, &str)> = params.iter().map(|p| ("sendRawTx", p.as_str())).collect();
        // Stamped just before the request leaves: the latency is the chain's, not the time a
        // transaction waited in the generator.
        let stamp = shared.stamp();
        for &si in &picks {
            let st = &mut states[si];
            shared.plan.accounts[st.account].sent_at_us[st.next].store(stamp, Ordering::Release);
            if st.next >= st.high {
                st.high = st.next + 1;
                shared.submitted.fetch_add(1, Ordering::Relaxed);
            }
        }
        sent += picks.len() as u64;
        last_request = Some(Instant::now());

        match conn.batch::<IgnoredAny>(&calls) {
            Err(refusal) => {
                // Nothing is known about any call of the batch: all are resent (an attempt
                // that did get through answers `duplicate` next time).
                shared.reject(&refusal, picks.len() as u64);
                let retry_at = Instant::now() + RETRY_BACKOFF;
                for &si in &picks {
                    let st = &mut states[si];
                    match verdict(&refusal.reason) {
                        Verdict::Retire => retire(shared, st),
                        _ => st.retry_at = Some(retry_at),
                    }
                }
                if refusal.is_transport() {
                    // A node that is down would otherwise be hammered in a tight loop.
                    std::thread::sleep(RETRY_BACKOFF);
                }
            }
            Ok(results) => {
                for (&si, result) in picks.iter().zip(results) {
                    let st = &mut states[si];
                    let refusal = match result {
                        Ok(_) => {
                            shared.accepted.fetch_add(1, Ordering::Relaxed);
                            st.next += 1;
                            st.retry_at = None;
                            continue;
                        }
                        Err(r) => r,
                    };
                    shared.reject(&refusal, 1);
                    match verdict(&refusal.reason) {
                        Verdict::AlreadyTaken => {
                            shared.accepted.fetch_add(1, Ordering::Relaxed);
                            st.next += 1;
                        }
                        Verdict::Skip => st.next += 1,
                        Verdict::Retry => st.retry_at = Some(Instant::now() + RETRY_BACKOFF),
                        Verdict::Retire => retire(shared, st),
                    }
                }
            }
        }
    }
}

fn retire(shared: &Shared, st: &mut AccountState) {
    if !st.retired {
        st.retired = true;
        shared.retired.fetch_add(1, Ordering::Relaxed);
    }
}

/// Requests per second the senders of one node may make together: well under the node's
/// default per-IP limit (200/s, SPEC §7), which also has to serve the commit follower (up to 50
/// reads/s on one node) and the setup calls. With full batches of 100 this still offers 12,000
/// tx/s per validator.
pub const REQUESTS_PER_NODE_PER_S: f64 = 120.0;

/// Least time between two requests of one sender when `senders_on_node` senders share a
/// validator: their requests together stay within [`REQUESTS_PER_NODE_PER_S`].
pub fn min_interval(senders_on_node: usize) -> Duration {
    Duration::from_secs_f64(senders_on_node.max(1) as f64 / REQUESTS_PER_NODE_PER_S)
}

/// Deals `accounts` accounts out to `senders` senders round-robin (account `a` to sender
/// `a % senders`), so that every sender gets a share of every part of the account range.
pub fn deal(accounts: usize, senders: usize) -> Vec<Vec<usize>> {
    let senders = senders.clamp(1, accounts.max(1));
    let mut out = vec![Vec::new(); senders];
    for a in 0..accounts {
        out[a % senders].push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_retried_skipped_or_retire_the_account() {
        assert_eq!(verdict("mempool_full"), Verdict::Retry);
        assert_eq!(verdict("rate_limited"), Verdict::Retry);
        assert_eq!(verdict("transport"), Verdict::Retry);
        assert_eq!(verdict("duplicate"), Verdict::AlreadyTaken);
        assert_eq!(verdict("stale_nonce"), Verdict::Skip);
        for r in [
            "bad_signature",
            "fee_too_low",
            "insufficient_funds",
            "wrong_chain",
            "error_32099",
        ] {
            assert_eq!(verdict(r), Verdict::Retire, "{r}");
        }
    }

    #[test]
    fn senders_of_a_node_share_its_request_budget() {
        assert_eq!(min_interval(1), Duration::from_secs_f64(1.0 / 120.0));
        assert_eq!(min_interval(2), Duration::from_secs_f64(2.0 / 120.0));
        assert_eq!(min_interval(0), min_interval(1));
        // Two senders with full batches still offer 12,000 tx/s to their node.
        let per_node = 2.0 / min_interval(2).as_secs_f64() * 100.0;
        assert!((per_node - 12_000.0).abs() < 0.01, "{per_node}");
    }

    #[test]
    fn accounts_are_dealt_evenly_and_disjointly() {
        let d = deal(10, 4);
        assert_eq!(
            d,
            vec![vec![0, 4, 8], vec![1, 5, 9], vec![2, 6], vec![3, 7]]
        );
        // More senders than accounts: one sender per account, none idle.
        assert_eq!(deal(2, 8), vec![vec![0], vec![1]]);
        assert_eq!(deal(0, 3), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn stamps_are_never_zero_and_rejections_add_up() {
        let plan = Plan::new(Vec::new(), 0, false);
        let shared = Shared::new(plan, Instant::now());
        assert!(shared.stamp() >= 1);
        let r = Refusal {
            reason: "mempool_full".into(),
            message: "full".into(),
        };
        shared.reject(&r, 3);
        shared.reject(
            &Refusal {
                message: "still full".into(),
                ..r
            },
            1,
        );
        let map = shared.rejections.lock().expect("lock");
        assert_eq!(
            map["mempool_full"],
            Rejection {
                count: 4,
                example: "full".into()
            }
        );
    }
}
