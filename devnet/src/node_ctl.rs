//! `aitbc-devnet stop NODE [--kill]` and `start NODE`: one validator (or light peer) down and
//! up again while the others run, which is what the SPEC §10 faults (a crashed validator, f of
//! n down, a late joiner) look like from outside, and what an operator reproducing one of them
//! needs.
//!
//! Both act on one node and rewrite only that node's entry of `devnet.json`, read afresh just
//! before: `stop 2` and `start 3` run side by side must not put back each other's old pids, or
//! `down` would lose track of a running node. As everywhere in the devnet, a recorded pid is
//! signalled only while `/proc` shows it is still that node's `aitbc-node run`.

use crate::process;
use crate::record::{Devnet, Member, NodeRecord};
use crate::up::{self, Launched};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `start` was asked for.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub dir: PathBuf,
    /// `3`, `node3` or `light0`.
    pub node: String,
    pub node_bin: Option<PathBuf>,
    /// Bound on the node starting and answering on its RPC port.
    pub timeout: Duration,
}

/// The node `start` started.
#[derive(Clone, Debug)]
pub struct Started {
    pub member: Member,
    pub pid: u32,
    /// Its head when it first answered: what it had stored, not yet what its peers have.
    pub height: u64,
    pub node: NodeRecord,
}

/// `stop NODE [--kill]`: a human summary of what was done. A node that is not running is not
/// an error (its stale pid, if any, is cleared), so a script can stop a node unconditionally.
pub fn stop(dir: &Path, node: &str, kill: bool) -> Result<String> {
    let (dir, devnet) = crate::status::load(dir)?;
    let i = devnet.member(node)?;
    let pid = match devnet.get(i).and_then(|n| n.pid) {
        Some(pid) if devnet.is_running(&dir, i) => pid,
        stale => {
            if stale.is_some() {
                update_node(&dir, i, |n| n.pid = None)?;
            }
            return Ok(format!("{i} was not running"));
        }
    };
    let target = [(pid, i.home(&dir))];
    let killed = if kill {
        process::kill(&target)?
    } else {
        process::stop(&target, crate::down::GRACE)?
    };
    // Only our pid is cleared: a `start` in between may already have recorded a new process.
    update_node(&dir, i, |n| {
        if n.pid == Some(pid) {
            n.pid = None;
        }
    })?;
    Ok(match (kill, killed.is_empty()) {
        (true, false) => format!("killed {i} (pid {pid}, SIGKILL)"),
        (true, true) => format!("{i} (pid {pid}) exited by itself before the SIGKILL"),
        (false, true) => format!("stopped {i} (pid {pid})"),
        (false, false) => format!(
            "stopped {i} (pid {pid}): it ignored SIGTERM for {:?} and was killed",
            crate::down::GRACE
        ),
    })
}

/// `start NODE`: starts one stopped node of a devnet on its recorded ports and block time, as
/// `up` restarts it, and waits until its RPC answers with its height. Progress goes to
/// `progress` (stderr in the binary). On failure the node is stopped again and its pid cleared.
pub fn start(opts: &StartOptions, progress: &mut dyn Write) -> Result<Started> {
    if opts.timeout.is_zero() {
        anyhow::bail!("--timeout 0: a node needs time to start");
    }
    let (dir, devnet) = crate::status::load(&opts.dir)?;
    let i = devnet.member(&opts.node)?;
    let record = devnet
        .get(i)
        .with_context(|| format!("{i} is not in the devnet record"))?;
    let rpc_url = record.rpc_url();
    if let Some(pid) = record.pid.filter(|_| devnet.is_running(&dir, i)) {
        anyhow::bail!(
            "{i} is already running (pid {pid}); `aitbc-devnet stop {i} --dir {}` first",
            dir.display()
        );
    }
    up::check_home(&dir, i)?;
    up::check_ports_free(&dir, &devnet, i)?;
    let bin = process::find_node_bin(opts.node_bin.as_deref())?;
    let peers = bootstrap_peers(&devnet, i);
    let _ = writeln!(
        progress,
        "starting {i}{}",
        if peers.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = peers.iter().map(|(j, _)| format!("node{j}")).collect();
            format!(" (bootstrap {})", names.join(", "))
        }
    );
    let bootstrap: Vec<&str> = peers.iter().map(|(_, a)| a.as_str()).collect();
    let bootstrap = (!bootstrap.is_empty()).then(|| bootstrap.join(","));
    let deadline = Instant::now() + opts.timeout;
    let mut launched = Launched::new();
    let child = process::spawn_node(&bin, &dir, &devnet, i, bootstrap.as_deref())?;
    let pid = child.id();
    launched.push(i, child);
    let mut wait = || -> Result<(NodeRecord, u64)> {
        // Recorded at once: if this process dies while waiting, `down` still finds the node.
        update_node(&dir, i, |n| n.pid = Some(pid))?;
        let (peer_id, height) = up::wait_for_status(&dir, &rpc_url, i, &mut launched, deadline)?;
        // `save` checks the peer id before it reaches a multiaddr or command line.
        let node = update_node(&dir, i, |n| n.peer_id = Some(peer_id))?;
        Ok((node, height))
    };
    let result = wait();
    match result {
        Ok((node, height)) => {
            launched.disarm();
            Ok(Started {
                member: i,
                pid,
                height,
                node,
            })
        }
        Err(e) => {
            let _ = writeln!(progress, "start failed; stopping {i}");
            launched.stop_all();
            if let Err(save) = update_node(&dir, i, |n| {
                if n.pid == Some(pid) {
                    n.pid = None;
                }
            }) {
                let _ = writeln!(progress, "warning: {save:#}");
            }
            Err(e.context(format!(
                "{i} did not start and is left stopped (see `aitbc-devnet logs {i} --dir {}`)",
                dir.display()
            )))
        }
    }
}

/// What `start` prints: the node's row as in `up`'s table, and where it goes from there.
pub fn table(s: &Started) -> String {
    let row = vec![
        s.member.to_string(),
        s.node.peer_id.clone().unwrap_or_else(|| "-".into()),
        s.node.rpc_url(),
        s.node.p2p_multiaddr(),
        s.height.to_string(),
    ];
    let mut out = crate::table::render(
        &["node", "peer id", "RPC URL", "P2P multiaddr", "height"],
        &[row],
    );
    let then = match s.member {
        Member::Validator(_) => "it syncs from its peers and then votes again",
        Member::Light(_) => "it verifies the headers it missed and then follows the head",
    };
    out.push_str(&format!("\n{} started (pid {}); {then}\n", s.member, s.pid));
    out
}

/// The other validators and their multiaddrs, node0 (`up`'s seed) first. All of them, not only
/// node0 and not only the running ones: the seed may be the node that is down, and a node
/// without connections redials its bootstrap list, so it also finds peers that come back later.
/// Light peers are never in it: they serve no blocks.
fn bootstrap_peers(devnet: &Devnet, member: Member) -> Vec<(usize, String)> {
    devnet
        .nodes
        .iter()
        .enumerate()
        .filter(|(j, n)| member != Member::Validator(*j) && n.peer_id.is_some())
        .map(|(j, n)| (j, n.p2p_multiaddr()))
        .collect()
}

/// Applies `change` to `member`'s entry of the record as it is on disk now and saves it;
/// returns the entry as saved.
fn update_node(
    dir: &Path,
    member: Member,
    change: impl FnOnce(&mut NodeRecord),
) -> Result<NodeRecord> {
    let mut devnet = Devnet::load(dir)?.with_context(|| {
        format!(
            "{} disappeared from {}",
            crate::record::DEVNET_FILE,
            dir.display()
        )
    })?;
    let node = devnet
        .get_mut(member)
        .with_context(|| format!("{member} is no longer in the devnet record"))?;
    change(node);
    let node = node.clone();
    devnet.save(dir)?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_the_other_known_nodes_seed_first() {
        let mut d = crate::record::test_record(3);
        let one = Member::Validator(1);
        assert_eq!(bootstrap_peers(&d, one), vec![], "no peer id known yet");
        d.nodes[0].peer_id = Some("12D3KooWzero".into());
        d.nodes[2].peer_id = Some("12D3KooWtwo".into());
        let zero = (0, "/ip4/127.0.0.1/tcp/1000/p2p/12D3KooWzero".to_string());
        let two = (2, "/ip4/127.0.0.1/tcp/1002/p2p/12D3KooWtwo".to_string());
        assert_eq!(bootstrap_peers(&d, one), vec![zero.clone(), two.clone()]);
        assert_eq!(bootstrap_peers(&d, Member::Validator(0)), vec![two.clone()]);
        assert_eq!(bootstrap_peers(&d, Member::Light(0)), vec![zero, two]);
    }

    #[test]
    fn stop_of_a_stopped_node_clears_its_stale_pid() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = std::fs::canonicalize(t.path()).expect("canonical");
        let mut d = crate::record::test_record(2);
        // This test process: alive, but not node1's `aitbc-node run`, so never signalled.
        d.nodes[1].pid = Some(std::process::id());
        d.save(&dir).expect("save");
        assert_eq!(
            stop(&dir, "node1", true).expect("stop"),
            "node1 was not running"
        );
        let after = Devnet::load(&dir).expect("load").expect("record");
        assert_eq!(after.nodes[1].pid, None);
        let err = stop(&dir, "2", false).expect_err("no node2");
        assert!(err.to_string().contains("node0 to node1"), "{err:#}");
    }

    #[test]
    fn start_refuses_a_running_node_and_a_damaged_home() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = std::fs::canonicalize(t.path()).expect("canonical");
        let ports = up::free_ports(4).expect("ports");
        let mut d = crate::record::test_record(2);
        for (k, n) in d.nodes.iter_mut().enumerate() {
            n.p2p_port = ports[2 * k];
            n.rpc_port = ports[2 * k + 1];
        }
        // A process that looks like node1 of this devnet.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do sleep 0.05; done", "run", "--home"])
            .arg(Devnet::home(&dir, 1))
            .spawn()
            .expect("spawn sh");
        d.nodes[1].pid = Some(child.id());
        d.save(&dir).expect("save");
        #[cfg(target_os = "linux")]
        assert!(crate::process::tests::wait_until_visible(
            child.id(),
            &Devnet::home(&dir, 1)
        ));
        let opts = |node: &str| StartOptions {
            dir: dir.clone(),
            node: node.into(),
            node_bin: Some(PathBuf::from("/nonexistent/aitbc-node")),
            timeout: Duration::from_secs(5),
        };
        let running = start(&opts("1"), &mut std::io::sink());
        let damaged = start(&opts("node0"), &mut std::io::sink());
        let _ = child.kill();
        let _ = child.wait();
        let err = running.expect_err("running");
        assert!(err.to_string().contains("already running"), "{err:#}");
        let err = damaged.expect_err("no home");
        assert!(err.to_string().contains("damaged"), "{err:#}");
    }
}
