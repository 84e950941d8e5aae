//! `aitbc-devnet bench-sync`: how fast a new node catches up with the running devnet, against
//! SPEC §9's "sync of 10,000 blocks from peers: ≥ 2,000 blocks/s".
//!
//! The follower is a real `aitbc-node run`, made the way an operator joins a network: a fresh
//! `aitbc-node init` home in a temporary folder inside the devnet folder, the devnet's genesis
//! copied over the home's own, node0 as its only bootstrap peer. Its validator key is not in the
//! genesis set, so it never votes; it only syncs. Its head is read over JSON-RPC every
//! [`POLL`], and the clock runs from the first reading at height ≥ 1 (the first synced blocks,
//! so process start-up, the dial and the handshake are not counted) to the first reading at or
//! above node0's head as read before the follower started. Blocks the devnet commits meanwhile
//! are not waited for: the target is fixed when the run starts.
//!
//! The follower belongs to this command only: it is in no `devnet.json`, so nothing else would
//! ever stop it. It is stopped (SIGTERM, then SIGKILL) and its home deleted on every way out —
//! success, error, timeout, Ctrl-C, a panic — and, on Linux, it is also told to end if this
//! process dies without cleaning up (`PR_SET_PDEATHSIG`).

use crate::bench::procfs::{self, Sample};
use crate::bench::progress::{bar, Progress};
use crate::bench::report::{emit, mib, targets_table, Target};
use crate::bench::rpc::{Conn, HeadAnswer, StatusAnswer};
use crate::bench::stats::round1;
use crate::process::{self, LOG_FILE};
use crate::record::{Devnet, Member};
use crate::table::{render, thousands};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Blocks the follower must sync unless `--blocks` says otherwise: SPEC §9's.
pub const DEFAULT_BLOCKS: u64 = TARGET_SYNC_BLOCKS;
/// Most `--blocks`: far more than SPEC §9 asks, few enough that a typo is not a day-long run.
pub const MAX_BLOCKS: u64 = 1_000_000;
/// Seconds allowed for the follower to start and reach the target unless `--timeout` says
/// otherwise: 10,000 blocks at the target rate take 5 s, so this only ends a stuck run.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
/// SPEC §9: sync from peers, in blocks per second.
pub const TARGET_BLOCKS_PER_S: f64 = 2_000.0;
/// SPEC §9's target is stated for a chain of this many blocks; a shorter sync does not decide
/// it (it says little about a store that has grown larger).
pub const TARGET_SYNC_BLOCKS: u64 = 10_000;
/// How often the follower's head is read: the figure's resolution at each end of the span.
const POLL: Duration = Duration::from_millis(50);
/// Timeout of one `getHead` while polling; a slower answer counts as no reading.
const POLL_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of the calls to node0 before the follower starts.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The follower's home is `<dir>/sync-bench-<pid>-<random>`.
const HOME_PREFIX: &str = "sync-bench-";
/// Lines of the follower's log shown when it fails.
const LOG_TAIL_LINES: usize = 30;

/// What `bench-sync` was asked to do.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub dir: PathBuf,
    /// The follower must sync at least this many blocks: node0's chain must be this long.
    pub blocks: u64,
    /// Bound on the follower starting and reaching the target.
    pub timeout: Duration,
    pub node_bin: Option<PathBuf>,
    /// Where to write the JSON report; `-` = stdout (the table then goes to stderr).
    pub json: Option<PathBuf>,
}

/// The figures of one run, printed as a table and serialised as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    pub chain_id: String,
    pub validators: usize,
    pub block_time_ms: u64,
    /// Cores of this machine (the follower and the validators share them).
    pub cpus: usize,
    /// `--blocks`.
    pub blocks_asked: u64,
    /// node0's head before the follower started: the height it had to reach.
    pub target_height: u64,
    /// node0's head once the follower got there (the devnet keeps committing meanwhile).
    pub source_height_after: Option<u64>,
    /// From the follower's start to its first reading at height ≥ 1.
    pub first_block_s: f64,
    /// The follower's height at that first reading: where the timed span starts.
    pub first_height: u64,
    /// Its height at the first reading at or above the target: where the span ends.
    pub end_height: u64,
    /// `end_height - first_height`.
    pub synced_blocks: u64,
    pub sync_s: f64,
    pub blocks_per_s: f64,
    pub follower: FollowerStats,
    /// The validators over the same span: they serve the blocks and share the cores.
    pub nodes: Vec<NodeCpu>,
    pub targets: Vec<Target>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FollowerStats {
    pub pid: u32,
    /// Share of one core over the timed span (can exceed 100: a node has many threads).
    pub cpu_percent: Option<f64>,
    /// Resident memory when it reached the target.
    pub rss_mib: Option<f64>,
    /// Largest resident memory sampled from its start to the target.
    pub rss_max_mib: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeCpu {
    pub node: usize,
    pub pid: u32,
    pub cpu_percent: Option<f64>,
    pub rss_mib: Option<f64>,
}

/// The command: run, print the table, write the JSON as `--json` says (as `bench` does).
pub fn main(opts: &SyncOptions, out: &mut dyn Write) -> Result<()> {
    // Ctrl-C ends the wait with an error, and the follower is stopped on the way out.
    process::catch_interrupts();
    let report = run(opts)?;
    emit(&render_text(&report), &report, opts.json.as_deref(), out)
}

/// Runs the measurement against the devnet in `opts.dir` (progress goes to stderr).
pub fn run(opts: &SyncOptions) -> Result<SyncReport> {
    check_options(opts)?;
    let (dir, devnet) = crate::status::load(&opts.dir)?;
    let seed = Member::Validator(0);
    let node0 = devnet.get(seed).context("the devnet record has no node0")?;
    if !devnet.is_running(&dir, seed) {
        bail!(
            "node0 is not running: the follower syncs from it (start the devnet with \
             `aitbc-devnet up --dir {}`)",
            opts.dir.display()
        );
    }
    if node0.peer_id.is_none() {
        bail!(
            "{} has no peer id for node0, so the follower cannot dial it; restart the devnet \
             (`aitbc-devnet down --dir {1} && aitbc-devnet up --dir {1}`)",
            Devnet::path(&dir).display(),
            opts.dir.display()
        );
    }
    let mut conn = Conn::new(&node0.rpc_url(), SETUP_TIMEOUT);
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
    let head: HeadAnswer = conn
        .call("getHead", json!({}))
        .context("asking node0 for its head")?;
    let target = head.header.height;
    check_chain_length(target, opts.blocks, &opts.dir, devnet.block_time_ms)?;
    let bin = process::find_node_bin(opts.node_bin.as_deref())?;

    eprintln!(
        "starting a follower node (bootstrap node0) to sync {} blocks",
        thousands(target)
    );
    let mut follower = Follower::start(&bin, &dir, &devnet, &node0.p2p_multiaddr())?;
    let result = measure(&mut follower, &dir, &devnet, target, opts);
    if let Err(e) = follower.finish() {
        eprintln!("warning: {e:#}");
    }
    let mut report = result?;
    report.source_height_after = conn
        .call::<HeadAnswer>("getHead", json!({}))
        .ok()
        .map(|h| h.header.height);
    Ok(report)
}

fn check_options(opts: &SyncOptions) -> Result<()> {
    if !(1..=MAX_BLOCKS).contains(&opts.blocks) {
        bail!("--blocks {}: between 1 and {MAX_BLOCKS}", opts.blocks);
    }
    if opts.timeout.is_zero() {
        bail!("--timeout 0: the follower needs time to sync");
    }
    Ok(())
}

/// Fails unless node0's chain (`head` blocks after genesis) has at least `blocks` blocks, with
/// how to grow it.
pub fn check_chain_length(head: u64, blocks: u64, dir: &Path, block_time_ms: u64) -> Result<()> {
    if head >= blocks {
        return Ok(());
    }
    let d = dir.display();
    let grow = if block_time_ms == 0 {
        format!(
            "it commits empty blocks as fast as it can (block time 0), about 150-200 a second \
             on a small machine: wait about {} s more and try again",
            (blocks - head).div_ceil(150)
        )
    } else {
        format!(
            "it runs with a {block_time_ms} ms block time; restart it committing as fast as it \
             can (about 150-200 empty blocks a second) with `aitbc-devnet down --dir {d} && \
             aitbc-devnet up --dir {d} --block-time 0` and wait"
        )
    };
    bail!(
        "node0's chain has {} blocks, fewer than --blocks {}: {grow}; `aitbc-devnet bench --dir \
         {d}` adds blocks with transfers. Or ask for fewer blocks{}",
        thousands(head),
        thousands(blocks),
        if head > 0 {
            format!(" (--blocks {head})")
        } else {
            String::new()
        }
    )
}

/// The follower process and its temporary home. Dropping it stops the process and deletes the
/// home, so no way out of [`run`] leaves either behind; [`Follower::finish`] does the same and
/// reports what went wrong.
struct Follower {
    child: Child,
    /// `None` once removed.
    home: Option<tempfile::TempDir>,
    /// The path given as `--home` (how [`process::stop`] recognises the process).
    home_path: PathBuf,
    rpc_url: String,
    stopped: bool,
}

impl Follower {
    /// Makes the home (`aitbc-node init`, the devnet's genesis) and starts the node on free
    /// ports, bootstrapping from `bootstrap`.
    fn start(bin: &Path, dir: &Path, devnet: &Devnet, bootstrap: &str) -> Result<Follower> {
        let home = tempfile::Builder::new()
            .prefix(&format!("{HOME_PREFIX}{}-", std::process::id()))
            .tempdir_in(dir)
            .with_context(|| format!("making a temporary home in {}", dir.display()))?;
        let home_path = home.path().to_path_buf();
        process::init_home(bin, &home_path, &devnet.chain_id)?;
        // `init` wrote a one-validator genesis of its own; the follower must run the devnet's.
        let genesis = dir.join(aitbc_node::home::GENESIS_FILE);
        let bytes =
            std::fs::read(&genesis).with_context(|| format!("reading {}", genesis.display()))?;
        let target = home_path.join(aitbc_node::home::GENESIS_FILE);
        crate::record::write_atomic(&target, &bytes)
            .with_context(|| format!("writing {}", target.display()))?;
        let ports = crate::up::free_ports(2)?;
        let log_path = home_path.join(LOG_FILE);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        // Started as every devnet node is (its own process group: a Ctrl-C reaches this
        // process, which then stops the follower in order).
        let p2p_bind = format!("/ip4/127.0.0.1/tcp/{}", ports[0]);
        let mut cmd = process::node_command(bin, &home_path, &p2p_bind, ports[1], log);
        // As the validators run: a block time given to them overrides the genesis one.
        cmd.args(["--block-time", &devnet.block_time_ms.to_string()])
            .args(["--bootstrap-peers", bootstrap]);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it only
            // asks the kernel to send SIGTERM to the child when this process's thread exits.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} for the follower", bin.display()))?;
        Ok(Follower {
            child,
            home: Some(home),
            home_path,
            rpc_url: format!("http://127.0.0.1:{}", ports[1]),
            stopped: false,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the follower's log, for an error message (the home, log included, is
    /// deleted once this command ends).
    fn log_tail(&self) -> String {
        format!(
            "last lines of the follower's log:\n{}",
            process::log_tail(&self.home_path.join(LOG_FILE), LOG_TAIL_LINES)
        )
    }

    /// Fails if the follower has exited, with its status and log tail.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("checking the follower process")?
        {
            bail!("the follower exited ({status}); {}", self.log_tail());
        }
        Ok(())
    }

    /// Stops the process (SIGTERM, then SIGKILL after [`crate::down::GRACE`]), reaps it and
    /// deletes the home.
    fn finish(&mut self) -> Result<()> {
        let mut result = Ok(());
        if !self.stopped {
            self.stopped = true;
            let pid = self.pid();
            if let Err(e) = process::stop(&[(pid, self.home_path.clone())], crate::down::GRACE) {
                result = Err(e.context(format!("stopping the follower (pid {pid})")));
            }
            // Whatever stop saw (or could not see): the child is ours, so end and reap it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(home) = self.home.take() {
            let path = home.path().to_path_buf();
            if let Err(e) = home.close() {
                let e = anyhow::Error::new(e).context(format!(
                    "deleting the follower's home {} (remove it by hand)",
                    path.display()
                ));
                result = result.and(Err(e));
            }
        }
        result
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            eprintln!("warning: {e:#}");
        }
    }
}

/// What one reading of the follower's height changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// It was the first at height ≥ 1: the span starts here.
    pub started: bool,
    /// It was the first at or above the target: the span ends here.
    pub finished: bool,
}

/// The sync's clock, fed every reading of the follower's height (times since it started).
#[derive(Clone, Debug)]
pub struct SyncClock {
    target: u64,
    first: Option<(Duration, u64)>,
    end: Option<(Duration, u64)>,
}

impl SyncClock {
    pub fn new(target: u64) -> SyncClock {
        SyncClock {
            target,
            first: None,
            end: None,
        }
    }

    /// Takes a reading of `height` at `at`; readings after the end change nothing.
    pub fn observe(&mut self, at: Duration, height: u64) -> Seen {
        let mut seen = Seen::default();
        if self.end.is_some() || height == 0 {
            return seen;
        }
        if self.first.is_none() {
            self.first = Some((at, height));
            seen.started = true;
        }
        if height >= self.target {
            self.end = Some((at, height));
            seen.finished = true;
        }
        seen
    }

    /// The first reading at height ≥ 1, if any.
    pub fn first(&self) -> Option<(Duration, u64)> {
        self.first
    }

    /// The timed span, once the target is reached.
    pub fn span(&self) -> Option<Span> {
        let ((first_at, first_height), (end_at, end_height)) = self.first.zip(self.end)?;
        Some(Span {
            first_at,
            first_height,
            end_at,
            end_height,
        })
    }
}

/// From the first synced reading to the first reading at the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub first_at: Duration,
    pub first_height: u64,
    pub end_at: Duration,
    pub end_height: u64,
}

impl Span {
    pub fn blocks(&self) -> u64 {
        self.end_height.saturating_sub(self.first_height)
    }

    pub fn duration(&self) -> Duration {
        self.end_at.saturating_sub(self.first_at)
    }

    /// `None` when the span has no length to divide by: the first reading was already at the
    /// target.
    pub fn blocks_per_s(&self) -> Option<f64> {
        let s = self.duration().as_secs_f64();
        (self.blocks() > 0 && s > 0.0).then(|| self.blocks() as f64 / s)
    }
}

/// Readings of the processes at one instant, for CPU shares over the span.
struct Snapshot {
    at: Instant,
    follower: Option<Sample>,
    nodes: Vec<Option<Sample>>,
}

impl Snapshot {
    fn take(follower: u32, nodes: &[(usize, u32)]) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            follower: procfs::sample(follower),
            nodes: nodes.iter().map(|&(_, pid)| procfs::sample(pid)).collect(),
        }
    }
}

/// Polls the follower until it reaches `target`, then works out the figures.
fn measure(
    follower: &mut Follower,
    dir: &Path,
    devnet: &Devnet,
    target: u64,
    opts: &SyncOptions,
) -> Result<SyncReport> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let nodes: Vec<(usize, u32)> = (0..devnet.nodes.len())
        .filter_map(|i| {
            let pid = devnet.nodes[i].pid?;
            devnet
                .is_running(dir, Member::Validator(i))
                .then_some((i, pid))
        })
        .collect();
    let pid = follower.pid();
    let mut conn = Conn::new(&follower.rpc_url, POLL_RPC_TIMEOUT);
    let mut clock = SyncClock::new(target);
    let mut progress = Progress::new();
    let mut rss_max: Option<u64> = None;
    let mut before: Option<Snapshot> = None;
    let mut height: Option<u64> = None;
    let after = loop {
        let tick = Instant::now();
        process::check_interrupted()?;
        follower.check_alive()?;
        if let Ok(head) = conn.call::<HeadAnswer>("getHead", json!({})) {
            height = Some(head.header.height);
            let seen = clock.observe(started.elapsed(), head.header.height);
            if seen.started {
                before = Some(Snapshot::take(pid, &nodes));
            }
            if seen.finished {
                break Snapshot::take(pid, &nodes);
            }
        }
        if let Some(s) = procfs::sample(pid) {
            rss_max = Some(rss_max.unwrap_or(0).max(s.rss_bytes));
        }
        if Instant::now() >= deadline {
            progress.finish();
            let at = height.map_or("not answering on its RPC".into(), |h| {
                format!("at height {}", thousands(h))
            });
            bail!(
                "the follower did not reach height {} within {} s ({at}); {}",
                thousands(target),
                opts.timeout.as_secs(),
                follower.log_tail()
            );
        }
        let line = match (height, clock.first()) {
            (Some(h), Some(_)) => format!(
                "syncing {} {} of {} blocks  {} blocks/s",
                bar(h as f64 / target as f64, 30),
                thousands(h),
                thousands(target),
                thousands(progress.rate(Instant::now(), h).round() as u64)
            ),
            _ => format!(
                "waiting for the follower's first block ({:.1} s)",
                started.elapsed().as_secs_f64()
            ),
        };
        progress.show(&line, false);
        std::thread::sleep(POLL.saturating_sub(tick.elapsed()));
    };
    progress.finish();
    let span = clock
        .span()
        .context("the sync ended without a span (internal error)")?;
    let Some(rate) = span.blocks_per_s() else {
        bail!(
            "the follower was already at height {} (target {}) at its first reading after \
             genesis, so there is nothing to time; ask for more --blocks",
            thousands(span.first_height),
            thousands(target)
        );
    };
    if let Some(s) = after.follower {
        rss_max = Some(rss_max.unwrap_or(0).max(s.rss_bytes));
    }
    let ticks = procfs::ticks_per_second();
    let cpu = |b: Option<Sample>, a: Option<Sample>, wall: f64| {
        b.zip(a)
            .and_then(|(b, a)| procfs::cpu_percent(b, a, wall, ticks))
            .map(round1)
    };
    let (follower_cpu, node_cpu): (Option<f64>, Vec<Option<f64>>) = match &before {
        Some(b) => {
            let wall = after.at.duration_since(b.at).as_secs_f64();
            (
                cpu(b.follower, after.follower, wall),
                b.nodes
                    .iter()
                    .zip(&after.nodes)
                    .map(|(&b, &a)| cpu(b, a, wall))
                    .collect(),
            )
        }
        None => (None, vec![None; nodes.len()]),
    };
    let mut report = SyncReport {
        chain_id: devnet.chain_id.clone(),
        validators: devnet.nodes.len(),
        block_time_ms: devnet.block_time_ms,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        blocks_asked: opts.blocks,
        target_height: target,
        source_height_after: None,
        first_block_s: round3(span.first_at.as_secs_f64()),
        first_height: span.first_height,
        end_height: span.end_height,
        synced_blocks: span.blocks(),
        sync_s: round3(span.duration().as_secs_f64()),
        blocks_per_s: round1(rate),
        follower: FollowerStats {
            pid,
            cpu_percent: follower_cpu,
            rss_mib: after.follower.map(|s| mib(s.rss_bytes)),
            rss_max_mib: rss_max.map(mib),
        },
        nodes: nodes
            .iter()
            .zip(node_cpu)
            .zip(&after.nodes)
            .map(|((&(node, pid), cpu_percent), a)| NodeCpu {
                node,
                pid,
                cpu_percent,
                rss_mib: a.map(|s| mib(s.rss_bytes)),
            })
            .collect(),
        targets: Vec::new(),
    };
    report.targets = targets(&report);
    Ok(report)
}

/// `v` rounded to three decimals (seconds to the millisecond).
fn round3(v: f64) -> f64 {
    (v * 1_000.0).round() / 1_000.0
}

/// The SPEC §9 row: decided only for a chain of at least [`TARGET_SYNC_BLOCKS`] blocks.
pub fn targets(r: &SyncReport) -> Vec<Target> {
    vec![Target {
        figure: format!(
            "sync of {} blocks from peers",
            thousands(TARGET_SYNC_BLOCKS)
        ),
        target: format!("≥ {} blocks/s", thousands(TARGET_BLOCKS_PER_S as u64)),
        measured: format!(
            "{} blocks/s over {} blocks",
            thousands(r.blocks_per_s.round() as u64),
            thousands(r.synced_blocks)
        ),
        met: (r.target_height >= TARGET_SYNC_BLOCKS)
            .then_some(r.blocks_per_s >= TARGET_BLOCKS_PER_S),
    }]
}

/// The report as text: a summary, the target row, the processes.
pub fn render_text(r: &SyncReport) -> String {
    let mut s = format!(
        "bench-sync: a fresh node synced node0's chain ({} validators, block time {} ms, chain {})\n",
        r.validators, r.block_time_ms, r.chain_id
    );
    s.push_str(&format!(
        "target: node0's head at the start, height {} (--blocks {}); first synced block seen \
         {:.1} s after the follower started, at height {}\n",
        thousands(r.target_height),
        thousands(r.blocks_asked),
        r.first_block_s,
        thousands(r.first_height),
    ));
    s.push_str(&format!(
        "synced {} blocks (height {} → {}) in {:.3} s{}\n\n",
        thousands(r.synced_blocks),
        thousands(r.first_height),
        thousands(r.end_height),
        r.sync_s,
        match r.source_height_after {
            Some(h) if h > r.end_height =>
                format!("; node0 meanwhile went on to height {}", thousands(h)),
            _ => String::new(),
        },
    ));
    s.push_str(&targets_table(&r.targets));
    if r.target_height < TARGET_SYNC_BLOCKS {
        s.push_str(&format!(
            "(met is decided on a chain of at least {} blocks; this one had {})\n",
            thousands(TARGET_SYNC_BLOCKS),
            thousands(r.target_height)
        ));
    }
    s.push('\n');
    let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}%"));
    let mem = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1} MiB"));
    let mut rows = vec![vec![
        "follower".into(),
        r.follower.pid.to_string(),
        pct(r.follower.cpu_percent),
        mem(r.follower.rss_mib),
        mem(r.follower.rss_max_mib),
    ]];
    rows.extend(r.nodes.iter().map(|n| {
        vec![
            format!("node{}", n.node),
            n.pid.to_string(),
            pct(n.cpu_percent),
            mem(n.rss_mib),
            "-".into(),
        ]
    }));
    s.push_str(&render(&["process", "pid", "CPU", "RSS", "RSS max"], &rows));
    s.push_str(&format!(
        "CPU: share of one core over the timed span; the follower and the {} validators share \
         {} cores.\n",
        r.validators, r.cpus
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn the_clock_starts_at_the_first_block_and_stops_at_the_target() {
        let mut c = SyncClock::new(3_000);
        assert_eq!(c.observe(ms(100), 0), Seen::default(), "genesis only");
        assert_eq!(c.span(), None);
        let s = c.observe(ms(700), 128);
        assert!(s.started && !s.finished);
        assert_eq!(c.first(), Some((ms(700), 128)));
        assert_eq!(c.observe(ms(750), 256), Seen::default());
        let s = c.observe(ms(2_100), 3_040);
        assert!(!s.started && s.finished);
        // Later readings change nothing.
        assert_eq!(c.observe(ms(2_150), 3_100), Seen::default());
        let span = c.span().expect("span");
        assert_eq!(span.blocks(), 2_912);
        assert_eq!(span.duration(), ms(1_400));
        assert_eq!(span.blocks_per_s(), Some(2_080.0));
    }

    #[test]
    fn a_target_reached_at_the_first_reading_has_no_rate() {
        let mut c = SyncClock::new(100);
        let s = c.observe(ms(500), 128);
        assert!(s.started && s.finished);
        let span = c.span().expect("span");
        assert_eq!(span.blocks(), 0);
        assert_eq!(span.blocks_per_s(), None);
    }

    #[test]
    fn a_short_chain_is_refused_with_how_to_grow_it() {
        let dir = Path::new("/tmp/net");
        assert!(check_chain_length(10_000, 10_000, dir, 0).is_ok());
        let err = check_chain_length(2_500, 10_000, dir, 0).expect_err("short");
        let msg = err.to_string();
        assert!(
            msg.contains("has 2,500 blocks, fewer than --blocks 10,000"),
            "{msg}"
        );
        assert!(msg.contains("about 50 s more"), "{msg}");
        assert!(msg.contains("(--blocks 2500)"), "{msg}");
        assert!(msg.contains("aitbc-devnet bench --dir /tmp/net"), "{msg}");
        let err = check_chain_length(0, 1, dir, 1_000).expect_err("empty");
        let msg = err.to_string();
        assert!(msg.contains("up --dir /tmp/net --block-time 0"), "{msg}");
        assert!(!msg.contains("(--blocks"), "{msg}");
    }

    #[test]
    fn options_out_of_range_name_the_flag() {
        let mut o = SyncOptions {
            dir: PathBuf::from("/nonexistent"),
            blocks: 0,
            timeout: Duration::from_secs(1),
            node_bin: None,
            json: None,
        };
        assert!(check_options(&o)
            .expect_err("0")
            .to_string()
            .starts_with("--blocks 0"));
        o.blocks = MAX_BLOCKS + 1;
        assert!(check_options(&o).is_err());
        o.blocks = MAX_BLOCKS;
        assert!(check_options(&o).is_ok());
        o.timeout = Duration::ZERO;
        assert!(check_options(&o)
            .expect_err("0 s")
            .to_string()
            .starts_with("--timeout 0"));
    }

    fn sample(target_height: u64, blocks_per_s: f64) -> SyncReport {
        let mut r = SyncReport {
            chain_id: "aitbc-devnet".into(),
            validators: 4,
            block_time_ms: 0,
            cpus: 2,
            blocks_asked: 10_000,
            target_height,
            source_height_after: Some(target_height + 900),
            first_block_s: 0.64,
            first_height: 128,
            end_height: target_height + 10,
            synced_blocks: target_height - 118,
            sync_s: 4.321,
            blocks_per_s,
            follower: FollowerStats {
                pid: 4242,
                cpu_percent: Some(151.5),
                rss_mib: Some(70.0),
                rss_max_mib: Some(81.2),
            },
            nodes: vec![NodeCpu {
                node: 0,
                pid: 100,
                cpu_percent: Some(40.0),
                rss_mib: Some(90.5),
            }],
            targets: Vec::new(),
        };
        r.targets = targets(&r);
        r
    }

    #[test]
    fn the_target_is_judged_only_on_a_long_enough_chain() {
        assert_eq!(sample(10_000, 2_000.0).targets[0].met, Some(true));
        assert_eq!(sample(12_000, 1_999.9).targets[0].met, Some(false));
        assert_eq!(sample(3_000, 9_000.0).targets[0].met, None);
        let t = &sample(10_000, 2_315.4).targets[0];
        assert_eq!(t.figure, "sync of 10,000 blocks from peers");
        assert_eq!(t.target, "≥ 2,000 blocks/s");
        assert_eq!(t.measured, "2,315 blocks/s over 9,882 blocks");
    }

    #[test]
    fn text_and_json_carry_the_figures() {
        let text = render_text(&sample(10_000, 2_315.4));
        assert!(
            text.contains("synced 9,882 blocks (height 128 → 10,010) in 4.321 s"),
            "{text}"
        );
        assert!(text.contains("went on to height 10,900"), "{text}");
        assert!(text.contains("target (SPEC §9)"), "{text}");
        assert!(text.contains("≥ 2,000 blocks/s  yes"), "{text}");
        assert!(
            text.contains("follower  4242  151.5%  70.0 MiB  81.2 MiB"),
            "{text}"
        );
        assert!(!text.contains("met is decided"), "{text}");
        let short = render_text(&sample(3_000, 2_315.4));
        assert!(short.contains("this one had 3,000"), "{short}");
        let json = serde_json::to_value(sample(10_000, 2_315.4)).expect("json");
        assert_eq!(json["blocks_per_s"], 2_315.4);
        assert_eq!(json["synced_blocks"], 9_882);
        assert_eq!(json["follower"]["rss_max_mib"], 81.2);
        assert_eq!(json["targets"][0]["met"], true);
        assert_eq!(round3(1.23456), 1.235);
    }
}
