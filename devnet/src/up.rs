//! `aitbc-devnet up`: make a devnet folder (node homes, one genesis, funded accounts, ports)
//! or restart the stopped devnet already in it, start every node, and wait until all commit.
//!
//! Homes and genesis are made with the node's own commands (`aitbc-node init`, `keys show`,
//! `genesis new`) and the genesis is edited with the node's library, which validates it
//! exactly as a node loads it: the devnet is an operator's setup, only automated. Nodes start
//! one by one from node0, and every other node bootstraps from node0's multiaddr, the way the
//! issue asks and a real network starts from a seed.
//!
//! `up` never leaves processes behind on failure: every node it started is stopped before it
//! returns an error, and its pid is cleared in `devnet.json`. Once it succeeds, the nodes are on
//! their own (own process group, no inherited pipes) and `devnet.json` is how `down` finds them.

use crate::accounts::{self, ACCOUNT_BALANCE};
use crate::process::{self, LOG_FILE};
use crate::record::{Devnet, Member, NodeRecord, FORMAT_VERSION, MAX_LIGHT, MAX_NODES};
use aitbc_node::client::rpc::RpcClient;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Blocks every node must see committed in this run before `up` reports success: one proves
/// the chain commits, the second that it goes on after the first certificate. On a restart they
/// count from the highest head any node had when it first answered, so a restarted devnet must
/// really be committing again, not merely hold old blocks.
pub const MIN_BLOCKS: u64 = 2;
/// Lines of a failing node's log shown in an error.
const LOG_TAIL_LINES: usize = 30;
/// Timeout of one RPC call while polling; a node that takes longer is treated as not ready yet.
const POLL_RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// What `up` was asked for. `None` means "the default for a new devnet, or what the existing
/// devnet has".
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub nodes: Option<u16>,
    /// Light peers (`aitbc-node run --light`) started beside the validators.
    pub light: Option<u16>,
    pub block_time_ms: Option<u64>,
    pub accounts: Option<u32>,
    pub chain_id: Option<String>,
    pub node_bin: Option<PathBuf>,
    /// Bound on starting all nodes and waiting for [`MIN_BLOCKS`] blocks.
    pub timeout: Duration,
}

/// What the devnet folder holds before `up`.
#[derive(Debug)]
pub enum DirState {
    Missing,
    Empty,
    Devnet(Devnet),
    /// Something that is not a devnet: `up` will not write into it.
    Foreign,
}

/// Looks at `dir` without changing anything.
pub fn inspect(dir: &Path) -> Result<DirState> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DirState::Missing),
        Err(e) => return Err(e).with_context(|| format!("--dir {}", dir.display())),
        Ok(m) if !m.is_dir() && !m.file_type().is_symlink() => return Ok(DirState::Foreign),
        Ok(_) => {}
    }
    if let Some(d) = Devnet::load(dir)? {
        return Ok(DirState::Devnet(d));
    }
    let mut entries =
        fs::read_dir(dir).with_context(|| format!("--dir {}: cannot list it", dir.display()))?;
    Ok(if entries.next().is_none() {
        DirState::Empty
    } else {
        DirState::Foreign
    })
}

/// The outcome of `up`: the devnet as running, its folder (absolute) and each member's height
/// (in [`Devnet::members`] order: validators, then light peers).
#[derive(Debug)]
pub struct Up {
    pub dir: PathBuf,
    pub devnet: Devnet,
    pub heights: Vec<u64>,
    /// Whether an existing stopped devnet was restarted (rather than a new one made).
    pub restarted: bool,
}

/// Runs `up`. Progress goes to `progress` (stderr in the binary).
pub fn up(opts: &UpOptions, progress: &mut dyn Write) -> Result<Up> {
    check_options(opts)?;
    let state = inspect(&opts.dir)?;
    let (dir, mut devnet, restarted, bin) = match state {
        DirState::Foreign => bail!(
            "--dir {} exists and is not a devnet (it has no {}); choose another --dir",
            opts.dir.display(),
            crate::record::DEVNET_FILE
        ),
        DirState::Devnet(devnet) => {
            let dir = fs::canonicalize(&opts.dir)
                .with_context(|| format!("--dir {}", opts.dir.display()))?;
            let devnet = prepare_restart(&dir, devnet, opts)?;
            let bin = process::find_node_bin(opts.node_bin.as_deref())?;
            (dir, devnet, true, bin)
        }
        DirState::Missing | DirState::Empty => {
            let bin = process::find_node_bin(opts.node_bin.as_deref())?;
            let was_missing = matches!(state, DirState::Missing);
            if was_missing {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&opts.dir)
                    .with_context(|| format!("creating --dir {}", opts.dir.display()))?;
            }
            let dir = fs::canonicalize(&opts.dir)
                .with_context(|| format!("--dir {}", opts.dir.display()))?;
            match create(&dir, &bin, opts, progress) {
                Ok(devnet) => (dir, devnet, false, bin),
                Err(e) => {
                    // Everything in the folder is ours (it was missing or empty): leave it as
                    // found, so a retry is not refused as a foreign folder.
                    let undo = if was_missing {
                        fs::remove_dir_all(&dir)
                    } else {
                        empty_folder(&dir)
                    };
                    if let Err(u) = undo {
                        let _ =
                            writeln!(progress, "warning: could not undo {}: {u}", dir.display());
                    }
                    return Err(e);
                }
            }
        }
    };
    let heights = start_all(&dir, &bin, &mut devnet, opts.timeout, progress)?;
    Ok(Up {
        dir,
        devnet,
        heights,
        restarted,
    })
}

fn check_options(opts: &UpOptions) -> Result<()> {
    if let Some(n) = opts.nodes {
        if n == 0 || usize::from(n) > MAX_NODES {
            bail!("-n/--nodes {n}: a devnet has 1 to {MAX_NODES} nodes");
        }
    }
    if let Some(k) = opts.light {
        if usize::from(k) > MAX_LIGHT {
            bail!("--light {k}: a devnet has 0 to {MAX_LIGHT} light peers");
        }
    }
    if opts.timeout.is_zero() {
        bail!("--timeout 0: nodes need time to start");
    }
    Ok(())
}

/// Checks that a restart is what was asked for and possible: nothing running, flags that
/// would change the chain not contradicting it, homes present, ports free.
fn prepare_restart(dir: &Path, mut devnet: Devnet, opts: &UpOptions) -> Result<Devnet> {
    let running = devnet.running(dir);
    if !running.is_empty() {
        let names: Vec<String> = running.iter().map(Member::to_string).collect();
        bail!(
            "a devnet is already running in {} ({} up); see `aitbc-devnet status --dir {0}`, \
             or stop it first with `aitbc-devnet down --dir {0}`",
            dir.display(),
            names.join(", ")
        );
    }
    let n = devnet.nodes.len();
    if let Some(asked) = opts.nodes {
        if usize::from(asked) != n {
            bail!(
                "-n/--nodes {asked}: the stopped devnet in {} has {n} nodes; restart it without \
                 -n, or `aitbc-devnet down --clean --dir {0}` and make a new one",
                dir.display()
            );
        }
    }
    if let Some(asked) = opts.light {
        let k = devnet.light.len();
        if usize::from(asked) != k {
            bail!(
                "--light {asked}: the stopped devnet in {} has {k} light peers; restart it \
                 without --light, or `aitbc-devnet down --clean --dir {0}` and make a new one",
                dir.display()
            );
        }
    }
    if let Some(c) = &opts.chain_id {
        if *c != devnet.chain_id {
            bail!(
                "--chain-id {c}: the stopped devnet in {} is chain {}",
                dir.display(),
                devnet.chain_id
            );
        }
    }
    if let Some(a) = opts.accounts {
        if a != devnet.accounts {
            bail!(
                "--accounts {a}: the stopped devnet in {} funded {} accounts at genesis",
                dir.display(),
                devnet.accounts
            );
        }
    }
    // Whatever pids are recorded belong to processes that are gone (or are no longer nodes).
    devnet.clear_pids();
    if let Some(bt) = opts.block_time_ms {
        // A node-level override: the genesis keeps its value, the nodes run with this one.
        devnet.block_time_ms = bt;
    }
    let members: Vec<Member> = devnet.members().collect();
    for &m in &members {
        check_home(dir, m)?;
    }
    for &m in &members {
        check_ports_free(dir, &devnet, m)?;
    }
    devnet.save(dir)?;
    Ok(devnet)
}

/// Fails unless `member`'s home still holds its config: a node started without one would run
/// with defaults (another chain, default ports), not as this devnet's member.
pub(crate) fn check_home(dir: &Path, member: Member) -> Result<()> {
    let home = member.home(dir);
    if !home.join(aitbc_node::home::CONFIG_FILE).is_file() {
        bail!(
            "{} has no {}: the devnet folder is damaged; `aitbc-devnet down --clean --dir {}` \
             and make a new one",
            home.display(),
            aitbc_node::home::CONFIG_FILE,
            dir.display()
        );
    }
    Ok(())
}

/// Fails if `member`'s recorded ports are taken: a node restarted on its recorded ports must
/// get them all, since its peers and `devnet.json` know it only by them.
pub(crate) fn check_ports_free(dir: &Path, devnet: &Devnet, member: Member) -> Result<()> {
    let node = devnet
        .get(member)
        .with_context(|| format!("{member} is not in the devnet record"))?;
    for (what, port) in [("P2P", node.p2p_port), ("RPC", node.rpc_port)] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!(
                "port {port} ({what} of {member}) is in use on 127.0.0.1: another node or \
                 program holds it; stop it, or `aitbc-devnet down --clean --dir {}` and \
                 make a new devnet on fresh ports",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Removes everything inside `dir`, keeping `dir`.
fn empty_folder(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Makes a new devnet in the empty folder `dir`: homes, genesis, accounts, ports, record.
fn create(dir: &Path, bin: &Path, opts: &UpOptions, progress: &mut dyn Write) -> Result<Devnet> {
    let n = usize::from(opts.nodes.unwrap_or(crate::DEFAULT_NODES));
    let k = usize::from(opts.light.unwrap_or(0));
    let chain_id = opts
        .chain_id
        .clone()
        .unwrap_or_else(|| crate::DEFAULT_CHAIN_ID.to_string());
    let block_time_ms = opts.block_time_ms.unwrap_or(crate::DEFAULT_BLOCK_TIME_MS);
    let account_count = opts.accounts.unwrap_or(accounts::DEFAULT_ACCOUNTS);
    let _ = writeln!(
        progress,
        "creating a {n}-validator devnet{} (chain {chain_id}) in {}",
        if k > 0 {
            format!(" with {k} light peer(s)")
        } else {
            String::new()
        },
        dir.display()
    );
    // A light peer's home is an ordinary node home (its validator key is never used): the
    // same `init`, config and genesis, run with `--light`.
    let init = |member: Member| -> Result<PathBuf> {
        let home = member.home(dir);
        process::init_home(bin, &home, &chain_id)?;
        Ok(home)
    };

    let mut validators = Vec::with_capacity(n);
    for i in 0..n {
        let home = init(Member::Validator(i))?;
        let shown = process::run_node_cli(
            bin,
            &[
                OsStr::new("keys"),
                OsStr::new("show"),
                OsStr::new("--home"),
                home.as_os_str(),
            ],
        )?;
        validators.push(parse_keys_show(&shown).with_context(|| format!("node{i}: keys show"))?);
    }

    // One genesis with every validator, made by the node's `genesis new`. It validates against
    // the default `max_validators`, so validators beyond that are added in the edit below,
    // which raises the limit first.
    let default_max = usize::try_from(aitbc_chain::Params::default().max_validators)
        .unwrap_or(usize::MAX)
        .max(1);
    let (listed, extra) = validators.split_at(n.min(default_max));
    let genesis_path = dir.join(aitbc_node::home::GENESIS_FILE);
    let genesis_time = process::now_ms().to_string();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("genesis"),
        OsStr::new("new"),
        OsStr::new("--out"),
        genesis_path.as_os_str(),
        OsStr::new("--chain-id"),
        OsStr::new(&chain_id),
        OsStr::new("--genesis-time"),
        OsStr::new(&genesis_time),
    ];
    for (pubkey, _) in listed {
        args.push(OsStr::new("--validator"));
        args.push(OsStr::new(pubkey));
    }
    process::run_node_cli(bin, &args)?;
    let extra = extra
        .iter()
        .map(|(pubkey, _)| {
            pubkey
                .parse::<aitbc_chain::PublicKey>()
                .map_err(|e| anyhow!("keys show printed a bad public key {pubkey:?}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;

    let _ = writeln!(
        progress,
        "funding validator0 and {account_count} devnet accounts (keys in {})",
        dir.join(accounts::ACCOUNTS_DIR).display()
    );
    let funded = accounts::write_accounts(dir, account_count)?;
    // The devnet cast (SPEC §4): the coordinator registered and funded, the miner funded.
    crate::mocks::write_key_files(dir)?;
    let faucet: aitbc_chain::Address = validators[0]
        .1
        .parse()
        .map_err(|e| anyhow!("node0: keys show printed a bad address: {e}"))?;
    let first_listed = listed.len();
    let genesis = aitbc_node::home::edit_genesis(&genesis_path, |g| {
        g.params.block_time_ms = block_time_ms;
        // The default allows 10 validators; a bigger devnet needs room for all of them.
        g.params.max_validators = g.params.max_validators.max(n as u64);
        let stake = g.params.min_stake;
        g.validators
            .extend(extra.iter().enumerate().map(|(k, pubkey)| {
                aitbc_chain::genesis::GenesisValidator {
                    pubkey: *pubkey,
                    stake,
                    name: format!("validator-{}", first_listed + k),
                }
            }));
        g.accounts.push(aitbc_chain::genesis::GenesisAccount {
            address: faucet,
            balance: aitbc_node::home::DEV_BALANCE,
        });
        g.accounts
            .extend(funded.iter().map(|a| aitbc_chain::genesis::GenesisAccount {
                address: *a,
                balance: ACCOUNT_BALANCE,
            }));
        g.faucet = Some(faucet);
        crate::mocks::add_to_genesis(g);
    })
    .context("editing the devnet genesis")?;
    let json =
        fs::read(&genesis_path).with_context(|| format!("reading {}", genesis_path.display()))?;
    for i in 0..k {
        init(Member::Light(i))?;
    }
    let members = (0..n)
        .map(Member::Validator)
        .chain((0..k).map(Member::Light));
    for m in members {
        let path = m.home(dir).join(aitbc_node::home::GENESIS_FILE);
        crate::record::write_atomic(&path, &json)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    let ports = free_ports(2 * (n + k))?;
    let record = |slot: usize, validator: Option<String>| NodeRecord {
        validator,
        p2p_port: ports[2 * slot],
        rpc_port: ports[2 * slot + 1],
        peer_id: None,
        pid: None,
    };
    let devnet = Devnet {
        version: FORMAT_VERSION,
        chain_id,
        genesis_hash: genesis.hash().to_string(),
        block_time_ms,
        accounts: account_count,
        nodes: validators
            .into_iter()
            .enumerate()
            .map(|(i, (_, address))| record(i, Some(address)))
            .collect(),
        light: (0..k).map(|i| record(n + i, None)).collect(),
    };
    devnet.save(dir)?;
    Ok(devnet)
}

/// `(pubkey, address)` from the output of `aitbc-node keys show`.
fn parse_keys_show(text: &str) -> Result<(String, String)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| anyhow!("no {name:?} line in: {text}"))
    };
    Ok((field("validator pubkey:")?, field("validator address:")?))
}

/// `count` distinct free loopback TCP ports. All listeners are held until every port is known,
/// so no port is handed out twice; they are free again when this returns (a small race with
/// other programs remains, which a failed start then reports).
///
/// The ports lie below the kernel's ephemeral range, from a random start: a port there is never
/// the source port of an outgoing connection. A port the kernel picks for `bind(0)` is in that
/// range, so while a member was stopped, any program's outgoing connection could take its
/// recorded port and the member could not come back on it.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let (lo, hi) = (FIRST_PORT, ephemeral_start());
    let span = u32::from(hi.saturating_sub(lo));
    let listeners = if span < 4 * count as u32 {
        // No room below the ephemeral range on this machine: the kernel's own picks.
        (0..count)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<io::Result<Vec<_>>>()
            .context("finding free ports on 127.0.0.1")?
    } else {
        let start = (std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), count)
            % u64::from(span)) as u32;
        let listeners: Vec<_> = (0..span)
            .map(|i| lo + ((start + i) % span) as u16)
            .filter_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
            .take(count)
            .collect();
        if listeners.len() < count {
            bail!(
                "found only {} of {count} free ports on 127.0.0.1 between {lo} and {hi}",
                listeners.len()
            );
        }
        listeners
    };
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<io::Result<Vec<u16>>>()
        .context("finding free ports on 127.0.0.1")
}

/// Lowest port [`free_ports`] hands out: above the registered services most machines run.
const FIRST_PORT: u16 = 20_000;

/// First port of the kernel's ephemeral range (Linux's `ip_local_port_range`; 32768, its
/// default and below other systems' ranges, where it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// The children this `up` (or `start`) started. Unless disarmed, dropping it stops them all,
/// so no path out of `up` (an error, a panic) leaves orphans.
pub(crate) struct Launched {
    children: Vec<(Member, Child)>,
    armed: bool,
}

impl Launched {
    pub(crate) fn new() -> Launched {
        Launched {
            children: Vec::new(),
            armed: true,
        }
    }

    /// `member`'s process, stopped on drop until [`Launched::disarm`].
    pub(crate) fn push(&mut self, member: Member, child: Child) {
        self.children.push((member, child));
    }

    /// The nodes are started and recorded: from now on they outlive this process.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL; always reaps.
    pub(crate) fn stop_all(&mut self) {
        for (_, c) in &self.children {
            let _ = process::send_signal(c.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, c) in &mut self.children {
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }

    /// Fails if `member` has exited, with its status and log tail.
    fn check_alive(&mut self, dir: &Path, member: Member) -> Result<()> {
        let Some((_, child)) = self.children.iter_mut().find(|(m, _)| *m == member) else {
            return Ok(());
        };
        if let Some(status) = child.try_wait().context("checking a node process")? {
            bail!(
                "{member} exited ({status}); last lines of {}:\n{}",
                log_path(dir, member).display(),
                process::log_tail(&log_path(dir, member), LOG_TAIL_LINES)
            );
        }
        Ok(())
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if self.armed {
            self.stop_all();
        }
    }
}

fn log_path(dir: &Path, member: Member) -> PathBuf {
    member.home(dir).join(LOG_FILE)
}

/// Starts node0, learns its peer id, starts the other validators and then the light peers
/// bootstrapping from it, and waits until all have seen [`MIN_BLOCKS`] new blocks committed
/// (a light peer: verified). On failure stops what it started and clears the pids.
fn start_all(
    dir: &Path,
    bin: &Path,
    devnet: &mut Devnet,
    timeout: Duration,
    progress: &mut dyn Write,
) -> Result<Vec<u64>> {
    let mut launched = Launched::new();
    let result = start_inner(dir, bin, devnet, timeout, progress, &mut launched);
    match result {
        Ok(heights) => {
            launched.disarm();
            Ok(heights)
        }
        Err(e) => {
            let _ = writeln!(progress, "start failed; stopping the nodes started so far");
            let e = e.context(format!(
                "the devnet in {0} did not start and is left stopped (see `aitbc-devnet logs \
                 NODE --dir {0}`; `aitbc-devnet up --dir {0}` tries again, `aitbc-devnet down \
                 --clean --dir {0}` removes it)",
                dir.display()
            ));
            launched.stop_all();
            devnet.clear_pids();
            if let Err(save) = devnet.save(dir) {
                let _ = writeln!(progress, "warning: {save:#}");
            }
            Err(e)
        }
    }
}

fn start_inner(
    dir: &Path,
    bin: &Path,
    devnet: &mut Devnet,
    timeout: Duration,
    progress: &mut dyn Write,
    launched: &mut Launched,
) -> Result<Vec<u64>> {
    let deadline = Instant::now() + timeout;
    let seed = Member::Validator(0);
    let _ = writeln!(progress, "starting node0");
    spawn(dir, bin, devnet, seed, None, launched)?;
    let mut start_height = learn_peer_id(dir, devnet, seed, launched, deadline)?;
    let boot = devnet.nodes[0].p2p_multiaddr();
    let (n, k) = (devnet.nodes.len(), devnet.light.len());
    if n > 1 {
        let _ = writeln!(progress, "starting node1..node{} (bootstrap {boot})", n - 1);
    }
    let validators: Vec<Member> = (1..n).map(Member::Validator).collect();
    for &m in &validators {
        spawn(dir, bin, devnet, m, Some(&boot), launched)?;
    }
    for &m in &validators {
        start_height = start_height.max(learn_peer_id(dir, devnet, m, launched, deadline)?);
    }
    // Light peers start once every validator runs, so the first peer they meet can serve them.
    if k > 0 {
        let _ = writeln!(
            progress,
            "starting light0..light{} (bootstrap {boot})",
            k - 1
        );
    }
    let light: Vec<Member> = (0..k).map(Member::Light).collect();
    for &m in &light {
        spawn(dir, bin, devnet, m, Some(&boot), launched)?;
    }
    for &m in &light {
        learn_peer_id(dir, devnet, m, launched, deadline)?;
    }
    let target = start_height + MIN_BLOCKS;
    let _ = writeln!(
        progress,
        "waiting for every node to reach height {target} (up to {}s in all)",
        timeout.as_secs()
    );
    wait_heights(dir, devnet, target, launched, deadline)
}

/// Spawns `member`, records its pid at once (if this process dies here, `down` still finds
/// it) and hands it to `launched`.
fn spawn(
    dir: &Path,
    bin: &Path,
    devnet: &mut Devnet,
    member: Member,
    bootstrap: Option<&str>,
    launched: &mut Launched,
) -> Result<()> {
    let child = process::spawn_node(bin, dir, devnet, member, bootstrap)?;
    let pid = child.id();
    launched.push(member, child);
    devnet
        .get_mut(member)
        .with_context(|| format!("{member} is not in the devnet record"))?
        .pid = Some(pid);
    devnet.save(dir)
}

/// Polls `member`'s `status` until it answers, then records its peer id. Returns its head
/// height at that moment.
fn learn_peer_id(
    dir: &Path,
    devnet: &mut Devnet,
    member: Member,
    launched: &mut Launched,
    deadline: Instant,
) -> Result<u64> {
    let node = devnet
        .get_mut(member)
        .with_context(|| format!("{member} is not in the devnet record"))?;
    let (id, height) = wait_for_status(dir, &node.rpc_url(), member, launched, deadline)?;
    node.peer_id = Some(id);
    // `save` checks the peer id before it reaches a multiaddr or command line.
    devnet
        .save(dir)
        .with_context(|| format!("{member}: peer id"))?;
    Ok(height)
}

/// Polls `member` (just started, in `launched`) at `rpc_url` until its `status` answers;
/// returns its peer id and head height. Fails at `deadline`, on an interrupt, or as soon as
/// the process exits, with its log tail.
pub(crate) fn wait_for_status(
    dir: &Path,
    rpc_url: &str,
    member: Member,
    launched: &mut Launched,
    deadline: Instant,
) -> Result<(String, u64)> {
    let client = RpcClient::with_timeout(rpc_url, POLL_RPC_TIMEOUT)?;
    loop {
        process::check_interrupted()?;
        launched.check_alive(dir, member)?;
        match client.call("status", json!({})) {
            Ok(status) => {
                let id = status
                    .get("peer_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("{member}: `status` has no peer_id: {status}"))?;
                let height = status
                    .get("head_height")
                    .and_then(Value::as_u64)
                    .unwrap_or_default();
                return Ok((id.to_string(), height));
            }
            Err(e) if Instant::now() >= deadline => bail!(
                "{member} did not answer on {} in time ({e}); last lines of {}:\n{}",
                client.url(),
                log_path(dir, member).display(),
                process::log_tail(&log_path(dir, member), LOG_TAIL_LINES)
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Head height of a node, if it answers.
fn head_height(node: &NodeRecord) -> Option<u64> {
    let client = RpcClient::with_timeout(&node.rpc_url(), POLL_RPC_TIMEOUT).ok()?;
    client
        .call("status", json!({}))
        .ok()?
        .get("head_height")?
        .as_u64()
}

/// Polls every member until all are at `target` or above; returns their heights in
/// [`Devnet::members`] order.
fn wait_heights(
    dir: &Path,
    devnet: &Devnet,
    target: u64,
    launched: &mut Launched,
    deadline: Instant,
) -> Result<Vec<u64>> {
    let members: Vec<Member> = devnet.members().collect();
    loop {
        process::check_interrupted()?;
        let mut heights = Vec::with_capacity(members.len());
        for &m in &members {
            launched.check_alive(dir, m)?;
            heights.push(devnet.get(m).and_then(head_height));
        }
        if heights.iter().all(|h| h.is_some_and(|h| h >= target)) {
            return Ok(heights.into_iter().map(Option::unwrap_or_default).collect());
        }
        if Instant::now() >= deadline {
            // The lowest node is the one to look at (no answer counts lowest).
            let worst = members
                .iter()
                .zip(&heights)
                .min_by_key(|(_, h)| h.map_or(-1, |h| h as i128))
                .map_or(Member::Validator(0), |(m, _)| *m);
            let shown: Vec<String> = members
                .iter()
                .zip(&heights)
                .map(|(m, h)| match h {
                    Some(h) => format!("{m} at {h}"),
                    None => format!("{m} not answering"),
                })
                .collect();
            bail!(
                "not every node reached height {target} in time ({}); last lines of {}:\n{}",
                shown.join(", "),
                log_path(dir, worst).display(),
                process::log_tail(&log_path(dir, worst), LOG_TAIL_LINES)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The table `up` prints: node, peer id, RPC URL, P2P multiaddr, height.
pub fn table(up: &Up) -> String {
    let rows: Vec<Vec<String>> = up
        .devnet
        .members()
        .zip(up.heights.iter().map(Some).chain(std::iter::repeat(None)))
        .filter_map(|(m, h)| {
            let n = up.devnet.get(m)?;
            Some(vec![
                m.to_string(),
                n.peer_id.clone().unwrap_or_else(|| "-".into()),
                n.rpc_url(),
                n.p2p_multiaddr(),
                h.map_or("-".into(), u64::to_string),
            ])
        })
        .collect();
    let mut out = crate::table::render(
        &["node", "peer id", "RPC URL", "P2P multiaddr", "height"],
        &rows,
    );
    let d = &up.devnet;
    out.push_str(&format!(
        "\nchain {} (genesis {}), block time {} ms, data in {}\n\
         faucet: validator0, key {}\n\
         {} funded accounts of {} AIT each: keys in {}\n",
        d.chain_id,
        d.genesis_hash,
        d.block_time_ms,
        up.dir.display(),
        Devnet::home(&up.dir, 0)
            .join(aitbc_node::home::VALIDATOR_KEY_FILE)
            .display(),
        d.accounts,
        crate::table::thousands(ACCOUNT_BALANCE / aitbc_chain::params::AIT),
        up.dir.join(accounts::ACCOUNTS_DIR).display(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> UpOptions {
        UpOptions {
            dir: dir.to_path_buf(),
            nodes: None,
            light: None,
            block_time_ms: None,
            accounts: None,
            chain_id: None,
            node_bin: Some(PathBuf::from("/nonexistent/aitbc-node")),
            timeout: Duration::from_secs(60),
        }
    }

    fn record(pid: Option<u32>) -> Devnet {
        let ports = free_ports(4).expect("ports");
        let mut d = crate::record::test_record(2);
        d.accounts = 3;
        for (i, n) in d.nodes.iter_mut().enumerate() {
            n.p2p_port = ports[2 * i];
            n.rpc_port = ports[2 * i + 1];
            n.pid = pid;
        }
        d
    }

    #[test]
    fn folder_states() {
        let t = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            inspect(&t.path().join("x")).expect("missing"),
            DirState::Missing
        ));
        assert!(matches!(inspect(t.path()).expect("empty"), DirState::Empty));
        fs::write(t.path().join("notes.txt"), "mine").expect("write");
        assert!(matches!(
            inspect(t.path()).expect("foreign"),
            DirState::Foreign
        ));
        assert!(matches!(
            inspect(&t.path().join("notes.txt")).expect("a file"),
            DirState::Foreign
        ));
        let d = tempfile::tempdir().expect("tempdir");
        record(None).save(d.path()).expect("save");
        assert!(matches!(
            inspect(d.path()).expect("devnet"),
            DirState::Devnet(_)
        ));
    }

    #[test]
    fn refuses_a_foreign_folder_and_touches_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::write(t.path().join("notes.txt"), "mine").expect("write");
        let err = up(&opts(t.path()), &mut io::sink()).expect_err("foreign");
        assert!(err.to_string().contains("is not a devnet"), "{err:#}");
        let names: Vec<_> = fs::read_dir(t.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
    }

    #[test]
    fn refuses_a_running_devnet() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(t.path()).expect("canonical");
        // A process that looks like node1 of this devnet.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do sleep 0.05; done", "run", "--home"])
            .arg(Devnet::home(&dir, 1))
            .spawn()
            .expect("spawn sh");
        let mut d = record(None);
        d.nodes[1].pid = Some(child.id());
        #[cfg(target_os = "linux")]
        assert!(crate::process::tests::wait_until_visible(
            child.id(),
            &Devnet::home(&dir, 1)
        ));
        d.save(&dir).expect("save");
        let result = up(&opts(&dir), &mut io::sink());
        let _ = child.kill();
        let _ = child.wait();
        let err = result.expect_err("running");
        let msg = err.to_string();
        assert!(
            msg.contains("already running") && msg.contains("node1 up"),
            "{msg}"
        );
        assert!(msg.contains("aitbc-devnet down --dir"), "{msg}");
    }

    #[test]
    fn restart_flags_must_match_the_stopped_devnet() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(t.path()).expect("canonical");
        // A stale pid (this test process is alive but is no node) counts as stopped.
        record(Some(std::process::id())).save(&dir).expect("save");
        type Flag = fn(&mut UpOptions);
        let cases: [(&str, Flag); 4] = [
            ("-n/--nodes 3", |o| o.nodes = Some(3)),
            ("--light 1", |o| o.light = Some(1)),
            ("--chain-id other", |o| o.chain_id = Some("other".into())),
            ("--accounts 9", |o| o.accounts = Some(9)),
        ];
        for (flag, set) in cases {
            let mut o = opts(&dir);
            set(&mut o);
            let err = up(&o, &mut io::sink()).expect_err(flag);
            assert!(err.to_string().starts_with(flag), "{flag}: {err:#}");
        }
        // Matching flags get as far as the damaged homes (none were made here).
        let mut o = opts(&dir);
        o.nodes = Some(2);
        let err = up(&o, &mut io::sink()).expect_err("no homes");
        assert!(err.to_string().contains("damaged"), "{err:#}");
    }

    #[test]
    fn bad_options_name_the_flag() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut o = opts(&t.path().join("net"));
        o.nodes = Some(0);
        let err = up(&o, &mut io::sink()).expect_err("n = 0");
        assert!(err.to_string().starts_with("-n/--nodes 0"), "{err:#}");
        o.nodes = Some(4);
        let err = up(&o, &mut io::sink()).expect_err("no binary");
        assert!(err.to_string().contains("--node-bin"), "{err:#}");
        assert!(!t.path().join("net").exists(), "a failed up left a folder");
    }

    #[test]
    fn keys_show_output_is_parsed() {
        let text = "validator address: ait1xyz\nvalidator pubkey:  0xabc\n";
        assert_eq!(
            parse_keys_show(text).expect("parse"),
            ("0xabc".to_string(), "ait1xyz".to_string())
        );
        assert!(parse_keys_show("validator address: ait1xyz\n").is_err());
    }

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let ports = free_ports(16).expect("ports");
        let set: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(set.len(), 16);
        let hi = ephemeral_start();
        assert!(
            ports.iter().all(|p| (FIRST_PORT..hi).contains(p)),
            "{ports:?} not in {FIRST_PORT}..{hi}"
        );
    }
}
