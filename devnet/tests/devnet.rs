//! End-to-end: the `aitbc-devnet` binary driving real `aitbc-node` processes on 127.0.0.1, as a
//! developer would, checked only through its output, `devnet.json` and the nodes' JSON-RPC.
//!
//! The harness (the node binary next to `aitbc-devnet`, the [`Net`](common::Net) guard whose
//! `Drop` stops every node) is in `tests/common/mod.rs`.

// Not every harness item is used here (e.g. `Net::client`, used by `demo.rs`).
#[allow(dead_code)]
mod common;

use aitbc_devnet::process::is_node_process;
use aitbc_devnet::record::Devnet;
use aitbc_node::client::rpc::RpcClient;
use common::{balance, devnet, height, node_bin, text, try_height, Net};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_all_at(net: &Net, clients: &[RpcClient], target: u64) {
    let start = Instant::now();
    while !clients
        .iter()
        .all(|c| try_height(c).is_some_and(|h| h >= target))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not every node reached height {target}:\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn block_hash(c: &RpcClient, h: u64) -> String {
    let b = c
        .call("getBlock", json!({ "height": h }))
        .expect("getBlock");
    b["hash"].as_str().expect("hash").to_string()
}

/// The main path of issue #6: `up -n 4` makes four validators that converge, `status` shows
/// them, a second `up` is refused, and `down --clean` stops them and removes the folder.
#[test]
fn four_validators_converge_and_down_clean_removes_everything() {
    let net = Net::new();
    let table = net.ok("up", &["-n", "4", "--block-time", "200"]);

    // The table: a header and one row per node with its peer id, RPC URL and multiaddr.
    let d = net.record();
    assert_eq!(d.nodes.len(), 4);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("node") && lines[0].contains("peer id"),
        "{table}"
    );
    for (i, n) in d.nodes.iter().enumerate() {
        let peer = n.peer_id.as_deref().expect("peer id recorded");
        let row = lines[i + 1];
        assert!(row.starts_with(&format!("node{i} ")), "{table}");
        assert!(row.contains(peer) && row.contains(&n.rpc_url()), "{table}");
        assert!(row.contains(&n.p2p_multiaddr()), "{table}");
        let pid = n.pid.expect("pid recorded");
        assert!(
            is_node_process(pid, &Devnet::home(&net.dir, i)),
            "node{i} not running"
        );
    }

    // They converge: the same block at every height on every node.
    let clients = net.clients();
    wait_all_at(&net, &clients, 5);
    let reference: Vec<String> = (1..=5).map(|h| block_hash(&clients[0], h)).collect();
    for (i, c) in clients.iter().enumerate().skip(1) {
        let hashes: Vec<String> = (1..=5).map(|h| block_hash(c, h)).collect();
        assert_eq!(hashes, reference, "node{i} disagrees with node0");
    }
    // Every node bootstrapped from node0 and found the others.
    for c in &clients {
        let peers = c.call("status", json!({})).expect("status")["peers"].as_u64();
        assert!(peers.is_some_and(|p| p >= 1), "a node has no peers");
    }

    // Genesis funds the faucet (validator0) and the deterministic devnet accounts, whose key
    // files are 0600.
    assert_eq!(
        balance(
            &clients[1],
            d.nodes[0].validator.as_deref().expect("a validator")
        ),
        aitbc_node::home::DEV_BALANCE
    );
    assert_eq!(d.accounts, 1000);
    let last = aitbc_devnet::accounts::account_address(999).to_string();
    assert_eq!(
        balance(&clients[2], &last),
        aitbc_devnet::accounts::ACCOUNT_BALANCE
    );
    let key = aitbc_devnet::accounts::account_key_path(&net.dir, 999);
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let genesis: Value = serde_json::from_slice(
        &std::fs::read(net.dir.join("node3/genesis.json")).expect("genesis"),
    )
    .expect("json");
    assert_eq!(genesis["faucet"], json!(d.nodes[0].validator));
    assert_eq!(genesis["validators"].as_array().map(Vec::len), Some(4));

    // `status` lists four running nodes with their heights.
    let status = net.ok("status", &[]);
    assert!(status.contains("4 of 4 nodes running"), "{status}");
    let running: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("node") && l.contains(" running "))
        .collect();
    assert_eq!(running.len(), 4, "{status}");

    // `logs` prints a node's log; a second `up` is refused while the devnet runs.
    let log = net.ok("logs", &["2"]);
    assert!(log.contains("commit"), "node2 log has no commit:\n{log}");
    let again = net.run("up", &[]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already running"),
        "{}",
        text(&again.stderr)
    );

    // `down --clean` stops every process and removes the folder.
    let pids = net.recorded_pids();
    assert_eq!(pids.len(), 4);
    let msg = net.ok("down", &["--clean"]);
    assert!(msg.contains("stopped 4 node(s)"), "{msg}");
    for (pid, home) in &pids {
        assert!(!is_node_process(*pid, home), "pid {pid} still runs");
    }
    assert!(!net.dir.exists(), "down --clean left the folder");
}

/// A stopped devnet restarts on its ports with its chain; `reset` makes the next `up` start a
/// new chain from the same genesis.
#[test]
fn stopped_devnet_restarts_with_its_chain_and_reset_starts_over() {
    let net = Net::new();
    net.ok("up", &["-n", "2", "--block-time", "100", "--accounts", "3"]);
    let before = net.record();
    let clients = net.clients();
    wait_all_at(&net, &clients, 3);
    let height_before = height(&clients[0]);
    let first = block_hash(&clients[0], 1);
    let third = block_hash(&clients[1], 3);

    let msg = net.ok("down", &[]);
    assert!(msg.contains("stopped 2 node(s)"), "{msg}");
    assert!(net.record().nodes.iter().all(|n| n.pid.is_none()));
    let status = net.ok("status", &[]);
    assert!(status.contains("0 of 2 nodes running"), "{status}");
    assert!(
        try_height(&clients[0]).is_none(),
        "a stopped node still answers"
    );
    let head = height_before;

    // `-n` must match a stopped devnet; without it, `up` restarts what is there.
    let wrong = net.run("up", &["-n", "3"]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("-n/--nodes 3"),
        "{}",
        text(&wrong.stderr)
    );
    net.ok("up", &[]);
    let after = net.record();
    for (a, b) in after.nodes.iter().zip(&before.nodes) {
        assert_eq!((a.p2p_port, a.rpc_port), (b.p2p_port, b.rpc_port));
        assert_eq!(
            a.peer_id, b.peer_id,
            "the node key is kept, so is the peer id"
        );
    }
    wait_all_at(&net, &clients, head + 2);
    assert_eq!(block_hash(&clients[1], 1), first, "chain data was kept");
    assert_eq!(block_hash(&clients[0], 3), third, "chain data was kept");

    // `reset`: the next `up` builds a new chain (a new block 1) on the same genesis.
    let msg = net.ok("reset", &[]);
    assert!(msg.contains("removed the chain data"), "{msg}");
    assert!(net.dir.join("node0/validator_key").exists());
    net.ok("up", &[]);
    wait_all_at(&net, &clients, 1);
    assert_ne!(
        block_hash(&clients[0], 1),
        first,
        "reset kept the old chain"
    );
    let status = clients[0].call("status", json!({})).expect("status");
    assert_eq!(status["genesis_hash"], json!(before.genesis_hash));

    net.ok("down", &["--clean"]);
    assert!(!net.dir.exists());
}

/// `up` that fails half-way (node2 cannot start) stops the nodes it had started and says which
/// node failed, with its log.
#[test]
fn failed_up_leaves_no_process_behind() {
    let net = Net::new();
    std::fs::create_dir_all(net.dir.parent().expect("parent")).expect("mkdir");
    // A node binary that is the real one, except that node2 refuses to run.
    let wrapper = net.dir.with_file_name("aitbc-node-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n  \"run --home \"*/node2\\ *) echo 'boom: node2 will not \
             start' >&2; exit 3;;\nesac\nexec '{}' \"$@\"\n",
            node_bin().display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = net.run(
        "up",
        &[
            "-n",
            "3",
            "--accounts",
            "0",
            "--node-bin",
            wrapper.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success(), "up succeeded without node2");
    let err = text(&out.stderr);
    assert!(
        err.contains("node2 exited") && err.contains("boom"),
        "{err}"
    );

    // Nothing of this devnet runs: no recorded pid, and no process with one of its homes.
    let d = net.record();
    assert!(
        d.nodes.iter().all(|n| n.pid.is_none()),
        "pids left in devnet.json"
    );
    let home_prefix = net.dir.to_str().expect("utf-8").to_string();
    let start = Instant::now();
    loop {
        let left: Vec<u32> = std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| (0..3).any(|i| is_node_process(*pid, &Devnet::home(&net.dir, i))))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "processes of {home_prefix} left running: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The failed devnet can be removed as usual.
    net.ok("down", &["--clean"]);
}

/// Refusals that need no node: they name the argument and touch nothing.
#[test]
fn bad_arguments_and_foreign_folders_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let foreign = tmp.path().join("mine");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("notes.txt"), "keep").expect("write");
    let foreign = foreign.to_str().expect("utf-8");

    let out = devnet(&["up", "--dir", foreign]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not a devnet"),
        "{}",
        text(&out.stderr)
    );

    let out = devnet(&["down", "--clean", "--dir", foreign]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("deletes only a devnet folder"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        Path::new(foreign).join("notes.txt").exists(),
        "deleted a foreign folder"
    );

    let out = devnet(&["status", "--dir", foreign]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not a devnet folder"));

    for (args, named) in [
        (vec!["up", "-n", "0"], "--nodes"),
        (vec!["up", "-n", "65"], "--nodes"),
        (vec!["up", "--block-time", "soon"], "--block-time"),
        (vec!["up", "--timeout", "0"], "--timeout"),
        (vec!["logs"], "NODE"),
    ] {
        let out = devnet(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(named),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let missing = tmp.path().join("none");
    assert!(!missing.exists());
    let out = devnet(&["logs", "0", "--dir", missing.to_str().expect("utf-8")]);
    assert!(
        text(&out.stderr).contains("no such folder"),
        "{}",
        text(&out.stderr)
    );
}
