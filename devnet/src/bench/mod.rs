//! `aitbc-devnet bench`: load a running devnet with signed transfers and measure what the chain
//! commits, against the targets of SPEC §9.
//!
//! A run has three phases:
//! 1. **Plan** (not measured): read every sending account's nonce (`getBalance`) and the fee
//!    schedule (`estimateFee`), then pre-sign all the transfers the window can use, so the
//!    window measures the chain rather than the generator's signing. See [`plan`].
//! 2. **Window** (`--duration`): sender threads, each with its own HTTP connection, its own
//!    accounts and one validator, send the transfers in JSON-RPC batches on a fixed schedule
//!    ([`pace`]); a follower thread reads every committed block and matches our transaction
//!    hashes ([`follow`]); the main thread samples each validator's memory and draws progress.
//! 3. **Drain**: sending stops; the follower keeps reading until every admitted transfer is
//!    committed (or a time limit), so latencies of transfers sent near the end are not lost.
//!    Those late commits count for latency, not for tx/s.
//!
//! Only transfers found in committed blocks count as committed; nothing is inferred from what
//! was submitted. Refusals at submit are counted by the node's reason.

pub mod follow;
pub mod pace;
pub mod plan;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod rpc;
pub mod send;
pub mod stats;

use crate::accounts::{account_address, account_key};
use crate::process;
use crate::record::{Devnet, Member};
use crate::table::thousands;
use aitbc_chain::{Address, SecretKey};
use anyhow::{bail, Context, Result};
use plan::{AccountInput, Plan};
use progress::{bar, Progress};
use report::{BlockStats, NodeStats, ProcessStats, Report};
use rpc::{Conn, HeadAnswer, StatusAnswer};
use send::{SenderEnd, SenderPlan, Shared};
use serde::Deserialize;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Measured window unless `--duration` says otherwise: the 60 s of SPEC §9.
pub const DEFAULT_DURATION_S: u64 = 60;
/// Calls per JSON-RPC batch: the node's default `max_batch`.
pub const DEFAULT_BATCH: usize = 100;
/// Sender threads (HTTP connections) per validator unless `--connections` says otherwise: two,
/// so one connection's round trip overlaps the other's.
pub const SENDERS_PER_NODE: usize = 2;
/// Progress redraw and memory sampling period.
const TICK: Duration = Duration::from_millis(500);
/// Timeout of the setup calls (nonces, fee, head).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Accounts whose nonces one `getBalance` batch reads.
const BALANCE_BATCH: usize = 100;

/// What `bench` was asked to do.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub dir: PathBuf,
    /// The measured window.
    pub duration: Duration,
    /// Target transfers per second; 0 = as fast as the chain takes them.
    pub rate: u64,
    /// Sending accounts (`account0` …); `None` = every funded account of the devnet.
    pub accounts: Option<u32>,
    /// Sender threads; `None` = [`SENDERS_PER_NODE`] per validator.
    pub connections: Option<usize>,
    /// Calls per batch.
    pub batch: usize,
    /// Where to write the JSON report; `-` = stdout (the table then goes to stderr).
    pub json: Option<PathBuf>,
}

#[derive(Deserialize)]
struct BalanceAnswer {
    balance: u64,
    nonce: u64,
}

#[derive(Deserialize)]
struct FeeAnswer {
    base_fee: u64,
    fee_per_byte: u64,
}

/// The command: run the bench, print the table, write the JSON as `--json` says. Ctrl-C ends
/// the window early and still reports what was measured.
pub fn main(opts: &BenchOptions, out: &mut dyn Write) -> Result<()> {
    process::catch_interrupts();
    let report = run(opts)?;
    report::emit(
        &report::render_text(&report),
        &report,
        opts.json.as_deref(),
        out,
    )
}

/// Runs the bench against the devnet in `opts.dir` and returns its figures (progress goes to
/// stderr).
pub fn run(opts: &BenchOptions) -> Result<Report> {
    if opts.duration.is_zero() {
        bail!("--duration must be at least 1 second");
    }
    if opts.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (dir, devnet) = crate::status::load(&opts.dir)?;
    let node_count = devnet.nodes.len();
    let mut pids = Vec::with_capacity(node_count);
    for (i, node) in devnet.nodes.iter().enumerate() {
        match node
            .pid
            .filter(|_| devnet.is_running(&dir, Member::Validator(i)))
        {
            Some(pid) => pids.push(pid),
            None => bail!(
                "node{i} is not running: the bench needs every validator (start them with \
                 `aitbc-devnet up --dir {}`)",
                opts.dir.display()
            ),
        }
    }
    let urls: Vec<String> = devnet.nodes.iter().map(|n| n.rpc_url()).collect();
    let mut conn = Conn::new(&urls[0], SETUP_TIMEOUT);
    let status: StatusAnswer = conn
        .call("status", json!({}))
        .context("asking node0 for its status")?;
    if status.chain_id != devnet.chain_id {
        bail!(
            "node0 runs chain {:?}, but {} records {:?}",
            status.chain_id,
            Devnet::path(&dir).display(),
            devnet.chain_id
        );
    }
    let chain_id = devnet.chain_id.clone();

    let count = opts.accounts.unwrap_or(devnet.accounts);
    if devnet.accounts == 0 {
        bail!("this devnet funds no accounts (make one with `aitbc-devnet up --accounts N`)");
    }
    if count == 0 || count > devnet.accounts {
        bail!(
            "--accounts {count}: this devnet funds {} accounts (account0 … account{})",
            devnet.accounts,
            devnet.accounts - 1
        );
    }
    let duration_s = opts.duration.as_secs().max(1);
    let (total, capped) = plan::presign_count(opts.rate, duration_s);

    // Plan: nonces, fee, funds.
    let keys: Vec<SecretKey> = (0..count).map(account_key).collect();
    let addresses: Vec<Address> = keys.iter().map(|k| Address::of(&k.public())).collect();
    let balances = read_accounts(&mut conn, &addresses)?;
    let probe = plan::transfer(&chain_id, &keys[0], keys[0].public(), addresses[0], 1, 0, 0);
    let fees: FeeAnswer = conn
        .call("estimateFee", json!({ "bytes": probe.encoded_len() }))
        .context("asking node0 for the fee schedule (estimateFee)")?;
    let fee = probe.min_fee(fees.base_fee, fees.fee_per_byte);
    let counts = pace::split(total, count as usize);
    for (i, (&(balance, _), &n)) in balances.iter().zip(&counts).enumerate() {
        let needed = u128::from(n) * (u128::from(plan::TRANSFER_AMOUNT) + u128::from(fee));
        if u128::from(balance) < needed {
            bail!(
                "account{i} holds {balance} units but the run needs {needed} ({n} transfers of \
                 {} plus fee {fee}): use fewer --accounts or a lower --rate/--duration",
                plan::TRANSFER_AMOUNT
            );
        }
    }
    // Recipients: the other senders (with a single sender, the next devnet account).
    let pool = if count > 1 {
        addresses.clone()
    } else {
        vec![account_address(1)]
    };
    let inputs: Vec<AccountInput> = keys
        .into_iter()
        .zip(&balances)
        .zip(&counts)
        .enumerate()
        .map(|(i, ((key, &(_, nonce)), &n))| AccountInput {
            index: i as u32,
            key,
            nonce,
            count: n,
        })
        .collect();

    let mut progress = Progress::new();
    let signed = AtomicUsize::new(0);
    let stop_signing = AtomicBool::new(false);
    let sign_start = Instant::now();
    let accounts = std::thread::scope(|s| {
        let signer = s.spawn(|| {
            plan::sign_all(
                &chain_id,
                inputs,
                &pool,
                fees.base_fee,
                fees.fee_per_byte,
                &signed,
                &stop_signing,
            )
        });
        while !signer.is_finished() {
            if process::check_interrupted().is_err() {
                stop_signing.store(true, Ordering::Release);
            }
            let done = signed.load(Ordering::Relaxed) as u64;
            progress.show(
                &format!(
                    "pre-signing {} {} of {} transfers",
                    bar(done as f64 / total.max(1) as f64, 30),
                    thousands(done),
                    thousands(total)
                ),
                false,
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        signer
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    progress.finish();
    process::check_interrupted()?;
    let presign_s = sign_start.elapsed().as_secs_f64();
    let plan = Plan::new(accounts, fee, capped);
    let presigned = plan.total;

    // Window.
    let senders = send::deal(
        count as usize,
        opts.connections.unwrap_or(SENDERS_PER_NODE * node_count),
    );
    let connections = senders.len();
    let views_before: Vec<Option<u64>> = urls.iter().map(|u| view_changes(u)).collect();
    let head: HeadAnswer = conn
        .call("getHead", json!({}))
        .context("asking node0 for its head")?;
    // Follow from node0, falling over to the others in order.
    let follow_urls = urls.clone();
    let ticks = procfs::ticks_per_second();
    let cpu_before: Vec<_> = pids.iter().map(|&p| procfs::sample(p)).collect();
    let self_before = procfs::sample_self();
    let cpu_clock = Instant::now();
    let shared = Shared::new(plan, Instant::now());
    let window = opts.duration;
    let mut rss_max: Vec<Option<u64>> = vec![None; node_count];
    let mut interrupted = false;

    let (window_s, window_end_us, cpu_after, self_after, cpu_wall, ends, followed) =
        std::thread::scope(|s| {
            let shared = &shared;
            let follower =
                s.spawn(|| follow::run(shared, &follow_urls, head.header.height.saturating_add(1)));
            let handles: Vec<_> = senders
                .into_iter()
                .enumerate()
                .map(|(k, accounts)| {
                    // Senders k, k + n, k + 2n, … share node k % n.
                    let on_node = (connections + node_count - 1 - k % node_count) / node_count;
                    let plan = SenderPlan {
                        min_interval: send::min_interval(on_node),
                        url: urls[k % node_count].clone(),
                        rate: opts.rate as f64 * accounts.len() as f64 / f64::from(count),
                        accounts,
                        batch: opts.batch,
                        window,
                    };
                    s.spawn(move || send::run(shared, plan))
                })
                .collect();

            loop {
                let elapsed = shared.epoch.elapsed();
                if elapsed >= window {
                    break;
                }
                if process::check_interrupted().is_err() {
                    interrupted = true;
                    break;
                }
                std::thread::sleep(TICK.min(window - elapsed));
                for (max, &pid) in rss_max.iter_mut().zip(&pids) {
                    if let Some(sample) = procfs::sample(pid) {
                        *max = Some(max.unwrap_or(0).max(sample.rss_bytes));
                    }
                }
                let now = Instant::now();
                let committed = shared.committed.load(Ordering::Relaxed);
                let rate = progress.rate(now, committed);
                let elapsed = shared.epoch.elapsed().min(window);
                progress.show(
                    &format!(
                        "{} {:.1}/{} s  submitted {}  committed {}  {} tx/s",
                        bar(elapsed.as_secs_f64() / window.as_secs_f64(), 30),
                        elapsed.as_secs_f64(),
                        window.as_secs(),
                        thousands(shared.submitted.load(Ordering::Relaxed)),
                        thousands(committed),
                        thousands(rate.round() as u64),
                    ),
                    // The last line of the window is always shown, also into a log.
                    elapsed >= window,
                );
            }
            let cpu_after: Vec<_> = pids.iter().map(|&p| procfs::sample(p)).collect();
            let self_after = procfs::sample_self();
            let cpu_wall = cpu_clock.elapsed().as_secs_f64();
            let window_elapsed = shared.epoch.elapsed().min(window);
            shared.stop_sending.store(true, Ordering::Release);
            let ends: Vec<SenderEnd> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect();

            // Drain: wait for what was admitted to commit, within a bound (a tx evicted from a
            // mempool never will).
            let limit = drain_limit(devnet.block_time_ms);
            let drain_start = Instant::now();
            while !interrupted
                && shared.committed.load(Ordering::Relaxed)
                    < shared.accepted.load(Ordering::Relaxed)
                && drain_start.elapsed() < limit
            {
                if process::check_interrupted().is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                progress.show(
                    &format!(
                        "draining: {} of {} admitted transfers committed ({:.0}/{} s)",
                        thousands(shared.committed.load(Ordering::Relaxed)),
                        thousands(shared.accepted.load(Ordering::Relaxed)),
                        drain_start.elapsed().as_secs_f64(),
                        limit.as_secs()
                    ),
                    false,
                );
            }
            shared.stop_following.store(true, Ordering::Release);
            let followed = follower
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            (
                window_elapsed.as_secs_f64(),
                u64::try_from(window_elapsed.as_micros()).unwrap_or(u64::MAX),
                cpu_after,
                self_after,
                cpu_wall,
                ends,
                followed,
            )
        });
    progress.finish();
    let views_after: Vec<Option<u64>> = urls.iter().map(|u| view_changes(u)).collect();

    // Figures.
    let mut in_window = Vec::new();
    let mut all = Vec::with_capacity(followed.latencies.len());
    for &(observed, latency) in &followed.latencies {
        if observed <= window_end_us {
            in_window.push(latency);
        }
        all.push(latency);
    }
    let committed = in_window.len() as u64;
    let committed_after_window = all.len() as u64 - committed;
    let window_blocks: Vec<&follow::BlockSeen> = followed
        .blocks
        .iter()
        .filter(|b| b.observed_us <= window_end_us)
        .collect();
    let blocks = block_stats(&window_blocks);
    let nodes: Vec<NodeStats> = (0..node_count)
        .map(|i| NodeStats {
            node: i,
            pid: pids[i],
            rpc_url: urls[i].clone(),
            cpu_percent: cpu_before[i]
                .zip(cpu_after[i])
                .and_then(|(b, a)| procfs::cpu_percent(b, a, cpu_wall, ticks))
                .map(stats::round1),
            rss_mib: cpu_after[i].map(|a| report::mib(a.rss_bytes)),
            rss_max_mib: rss_max[i]
                .max(cpu_after[i].map(|a| a.rss_bytes))
                .map(report::mib),
            view_changes: views_before[i]
                .zip(views_after[i])
                .map(|(b, a)| a.saturating_sub(b)),
        })
        .collect();
    let view_changes = nodes.iter().filter_map(|n| n.view_changes).max();
    let generator = ProcessStats {
        cpu_percent: self_before
            .zip(self_after)
            .and_then(|(b, a)| procfs::cpu_percent(b, a, cpu_wall, ticks))
            .map(stats::round1),
        rss_mib: self_after.map(|a| report::mib(a.rss_bytes)),
    };
    let submitted = shared.submitted.load(Ordering::Relaxed);
    let rejections =
        std::mem::take(&mut *shared.rejections.lock().unwrap_or_else(|e| e.into_inner()));
    let mut report = Report {
        chain_id,
        validators: node_count,
        block_time_ms: devnet.block_time_ms,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        duration_s: stats::round1(window_s),
        interrupted,
        target_rate: opts.rate,
        accounts: count,
        connections,
        batch: opts.batch,
        presigned,
        presign_capped: capped,
        presign_s: stats::round1(presign_s),
        fee,
        submitted,
        accepted: shared.accepted.load(Ordering::Relaxed),
        committed,
        committed_after_window,
        committed_tps: stats::round1(committed as f64 / window_s.max(1e-3)),
        submitted_tps: stats::round1(submitted as f64 / window_s.max(1e-3)),
        behind_schedule: ends.iter().map(|e| e.behind).sum(),
        ran_dry_at_s: ends
            .iter()
            .filter_map(|e| e.ran_dry_at)
            .min()
            .map(|d| stats::round1(d.as_secs_f64())),
        retired_accounts: shared.retired.load(Ordering::Relaxed),
        rejections,
        latency_ms: stats::LatencyMs::from_micros(&mut all),
        blocks,
        view_changes,
        nodes,
        generator,
        follower_errors: followed.errors,
        targets: Vec::new(),
    };
    report.targets = report::targets(&report);
    if let Some(e) = &followed.last_error {
        eprintln!(
            "commit follower: {} failed reads, the last: {e}",
            followed.errors
        );
    }
    Ok(report)
}

/// Reads `(balance, nonce)` of every address from one node, in batches.
fn read_accounts(conn: &mut Conn, addresses: &[Address]) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::with_capacity(addresses.len());
    for chunk in addresses.chunks(BALANCE_BATCH) {
        let params: Vec<String> = chunk
            .iter()
            .map(|a| json!({ "address": a.to_string() }).to_string())
            .collect();
        let calls: Vec<(&str, &str)> = params.iter().map(|p| ("getBalance", p.as_str())).collect();
        let answers = conn
            .batch::<BalanceAnswer>(&calls)
            .with_context(|| format!("reading the accounts' nonces from {}", conn.url()))?;
        for (address, answer) in chunk.iter().zip(answers) {
            let a = answer.with_context(|| format!("getBalance {address}"))?;
            out.push((a.balance, a.nonce));
        }
    }
    Ok(out)
}

/// This node's `blockchain_view_changes_total`, from its `/metrics`.
fn view_changes(url: &str) -> Option<u64> {
    let text = Conn::new(url, SETUP_TIMEOUT).get_text("/metrics").ok()?;
    metric_value(&text, "blockchain_view_changes_total")
}

/// The value of an unlabelled counter or gauge `name` in Prometheus/OpenMetrics text.
pub fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?.split_ascii_whitespace().next()?;
        let v: f64 = value.parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v as u64)
    })
}

/// How long to wait after the window for admitted transfers to commit: ten block times plus
/// five seconds for a backlog, at most 30 s.
pub fn drain_limit(block_time_ms: u64) -> Duration {
    (Duration::from_secs(5) + Duration::from_millis(block_time_ms.saturating_mul(10)))
        .min(Duration::from_secs(30))
}

/// Block figures over the blocks committed in the window (in height order).
pub fn block_stats(blocks: &[&follow::BlockSeen]) -> BlockStats {
    let mut intervals: Vec<u64> = blocks
        .windows(2)
        .filter(|w| w[1].height == w[0].height.saturating_add(1))
        .map(|w| w[1].timestamp_ms.saturating_sub(w[0].timestamp_ms))
        .collect();
    let txs: Vec<u64> = blocks.iter().map(|b| u64::from(b.txs)).collect();
    let mut seen_after: Vec<u64> = blocks.iter().map(|b| b.seen_after_ms).collect();
    BlockStats {
        count: blocks.len() as u64,
        empty: blocks.iter().filter(|b| b.txs == 0).count() as u64,
        txs_mean: stats::mean(&txs).map(stats::round1),
        txs_max: txs.iter().copied().max().unwrap_or(0),
        interval_ms: stats::IntervalMs::from_ms(&mut intervals),
        seen_after_ms: stats::IntervalMs::from_ms(&mut seen_after),
        after_view_change: blocks.iter().filter(|b| b.view > 0).count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_from_metrics_text() {
        let text = "# HELP blockchain_view_changes View changes.\n\
                    # TYPE blockchain_view_changes counter\n\
                    blockchain_view_changes_total 3\n\
                    blockchain_view_changes_total_other 9\n\
                    blockchain_height 42\n# EOF\n";
        assert_eq!(metric_value(text, "blockchain_view_changes_total"), Some(3));
        assert_eq!(metric_value(text, "blockchain_height"), Some(42));
        assert_eq!(metric_value(text, "blockchain_missing"), None);
        assert_eq!(metric_value("x_total NaN\n", "x_total"), None);
        assert_eq!(metric_value("x_total 1.5e1\n", "x_total"), Some(15));
    }

    #[test]
    fn drain_is_bounded() {
        assert_eq!(drain_limit(200), Duration::from_secs(7));
        assert_eq!(drain_limit(1_000), Duration::from_secs(15));
        assert_eq!(drain_limit(u64::MAX), Duration::from_secs(30));
    }

    #[test]
    fn block_figures_use_consecutive_heights_only() {
        let b = |height, timestamp_ms, txs, view| follow::BlockSeen {
            height,
            timestamp_ms,
            view,
            txs,
            ours: txs,
            observed_us: 0,
            seen_after_ms: height * 10,
        };
        let blocks = [
            b(5, 1_000, 10, 0),
            b(6, 1_200, 0, 0),
            b(7, 1_700, 30, 1),
            b(9, 9_000, 2, 0),
        ];
        let refs: Vec<&follow::BlockSeen> = blocks.iter().collect();
        let s = block_stats(&refs);
        assert_eq!(s.count, 4);
        assert_eq!(s.empty, 1);
        assert_eq!(s.txs_max, 30);
        assert_eq!(s.txs_mean, Some(10.5));
        assert_eq!(s.after_view_change, 1);
        assert_eq!(s.interval_ms.mean, Some(350.0));
        assert_eq!(s.interval_ms.max, Some(500.0));
        assert_eq!(
            s.seen_after_ms.mean,
            Some(67.5),
            "every block, not consecutive only"
        );
        assert_eq!(s.seen_after_ms.max, Some(90.0));
        assert_eq!(block_stats(&[]).interval_ms.mean, None);
    }
}
