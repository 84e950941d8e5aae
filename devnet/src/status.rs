//! `aitbc-devnet status`: per node (validators, then light peers), whether its process runs,
//! and what its RPC says (height, peers, mempool size, age of the last block). A light peer
//! has no mempool; its height is its verified head.

use crate::process;
use crate::record::{Devnet, Member};
use aitbc_node::client::rpc::RpcClient;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Per-call RPC timeout: `status` must stay responsive with a wedged node in the set.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// What one node looks like right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub member: Member,
    pub pid: Option<u32>,
    pub running: bool,
    pub rpc_url: String,
    pub height: Option<u64>,
    pub peers: Option<u64>,
    pub mempool: Option<u64>,
    pub head_time_ms: Option<u64>,
    /// Why the RPC gave no answer, for a running node.
    pub rpc_error: Option<String>,
}

/// Loads the devnet in `dir`, failing clearly if there is none. Returns the canonical folder,
/// which is how node processes are recognised (their `--home` is under it).
pub fn load(dir: &Path) -> Result<(PathBuf, Devnet)> {
    let canonical = match std::fs::canonicalize(dir) {
        Ok(p) => p,
        Err(_) => bail!(
            "--dir {}: no such folder, so no devnet there (start one with `aitbc-devnet up --dir {0}`)",
            dir.display()
        ),
    };
    match Devnet::load(&canonical)? {
        Some(d) => Ok((canonical, d)),
        None => bail!(
            "--dir {}: no {} there, so it is not a devnet folder (start one with \
             `aitbc-devnet up --dir {0}`)",
            dir.display(),
            crate::record::DEVNET_FILE
        ),
    }
}

/// Looks at every node: process first, then (for running ones) `status` and `getMempool`.
pub fn collect(dir: &Path, devnet: &Devnet) -> Vec<NodeView> {
    std::thread::scope(|s| {
        // Asked in parallel: one unresponsive node must not multiply the wait.
        let handles: Vec<_> = devnet
            .members()
            .map(|m| (m, s.spawn(move || view(dir, devnet, m))))
            .collect();
        handles
            .into_iter()
            .map(|(m, h)| {
                h.join().unwrap_or_else(|_| NodeView {
                    member: m,
                    pid: None,
                    running: false,
                    rpc_url: devnet.get(m).map(|n| n.rpc_url()).unwrap_or_default(),
                    height: None,
                    peers: None,
                    mempool: None,
                    head_time_ms: None,
                    rpc_error: Some("internal error while asking".into()),
                })
            })
            .collect()
    })
}

fn view(dir: &Path, devnet: &Devnet, member: Member) -> NodeView {
    let running = devnet.is_running(dir, member);
    let node = devnet.get(member);
    let mut v = NodeView {
        member,
        pid: node.and_then(|n| n.pid).filter(|_| running),
        running,
        rpc_url: node.map(|n| n.rpc_url()).unwrap_or_default(),
        height: None,
        peers: None,
        mempool: None,
        head_time_ms: None,
        rpc_error: None,
    };
    if !running {
        return v;
    }
    let answer = || -> Result<(Value, Option<Value>)> {
        let client = RpcClient::with_timeout(&v.rpc_url, RPC_TIMEOUT)?;
        let status = client.call("status", json!({}))?;
        let mempool = match member {
            Member::Validator(_) => Some(client.call("getMempool", json!({ "limit": 0 }))?),
            Member::Light(_) => None,
        };
        Ok((status, mempool))
    };
    match answer() {
        Ok((status, mempool)) => {
            v.height = status.get("head_height").and_then(Value::as_u64);
            v.peers = status.get("peers").and_then(Value::as_u64);
            v.head_time_ms = status.get("head_time_ms").and_then(Value::as_u64);
            v.mempool = mempool.and_then(|m| m.get("count").and_then(Value::as_u64));
        }
        Err(e) => v.rpc_error = Some(format!("{e:#}")),
    }
    v
}

/// The status table at time `now_ms`, then one line per RPC failure.
pub fn render(dir: &Path, devnet: &Devnet, views: &[NodeView], now_ms: u64) -> String {
    let dash = || "-".to_string();
    let num = |v: Option<u64>| v.map_or_else(dash, |v| v.to_string());
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let state = match (v.running, &v.rpc_error) {
                (false, _) => "stopped",
                (true, None) => "running",
                (true, Some(_)) => "running, RPC down",
            };
            // Height 0 is genesis, whose time is not a block's.
            let last_block = match (v.height, v.head_time_ms) {
                (Some(h), Some(t)) if h > 0 => {
                    format!("{} ago", crate::table::age(now_ms.saturating_sub(t)))
                }
                _ => dash(),
            };
            vec![
                v.member.to_string(),
                state.to_string(),
                num(v.pid.map(u64::from)),
                num(v.height),
                num(v.peers),
                num(v.mempool),
                last_block,
                v.rpc_url.clone(),
            ]
        })
        .collect();
    let running = views.iter().filter(|v| v.running).count();
    let mut out = format!(
        "devnet {} (chain {}): {running} of {} nodes running\n",
        dir.display(),
        devnet.chain_id,
        views.len()
    );
    out.push_str(&crate::table::render(
        &[
            "node",
            "state",
            "pid",
            "height",
            "peers",
            "mempool",
            "last block",
            "RPC URL",
        ],
        &rows,
    ));
    for v in views {
        if let Some(e) = &v.rpc_error {
            out.push_str(&format!("{}: {e}\n", v.member));
        }
    }
    out
}

/// `status`, once or (with `watch`) every second until interrupted.
pub fn run(dir: &Path, watch: bool, out: &mut dyn std::io::Write) -> Result<()> {
    let (dir, devnet) = load(dir)?;
    loop {
        let views = collect(&dir, &devnet);
        let text = render(&dir, &devnet, &views, process::now_ms());
        if watch {
            // Clear the screen and home the cursor, so the table redraws in place.
            writeln!(
                out,
                "\x1b[2J\x1b[H{text}(refreshing every second; Ctrl-C to stop)"
            )
        } else {
            write!(out, "{text}")
        }
        .context("writing the status")?;
        out.flush().context("writing the status")?;
        if !watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_running_stopped_and_unanswering_nodes() {
        let devnet = crate::record::test_record(3);
        let base = NodeView {
            member: Member::Validator(0),
            pid: Some(100),
            running: true,
            rpc_url: "http://127.0.0.1:2000".into(),
            height: Some(12),
            peers: Some(3),
            mempool: Some(5),
            head_time_ms: Some(9_600),
            rpc_error: None,
        };
        let views = vec![
            base.clone(),
            NodeView {
                member: Member::Validator(1),
                pid: None,
                running: false,
                height: None,
                peers: None,
                mempool: None,
                head_time_ms: None,
                ..base.clone()
            },
            NodeView {
                member: Member::Light(0),
                height: None,
                rpc_error: Some("cannot reach".into()),
                ..base
            },
        ];
        let text = render(Path::new("/tmp/net"), &devnet, &views, 10_000);
        assert!(text.starts_with("devnet /tmp/net (chain aitbc-devnet): 2 of 3 nodes running"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("node "), "{text}");
        assert!(
            lines[2].contains("running") && lines[2].contains("400ms ago"),
            "{text}"
        );
        assert!(lines[3].contains("stopped"), "{text}");
        assert!(lines[4].contains("running, RPC down"), "{text}");
        assert!(lines[4].starts_with("light0"), "{text}");
        assert_eq!(lines[5], "light0: cannot reach");
    }

    #[test]
    fn a_folder_without_a_record_is_a_clear_error() {
        let t = tempfile::tempdir().expect("tempdir");
        let err = load(t.path()).expect_err("no record");
        assert!(err.to_string().contains("not a devnet folder"), "{err:#}");
        let err = load(&t.path().join("missing")).expect_err("no folder");
        assert!(err.to_string().contains("no such folder"), "{err:#}");
    }
}
