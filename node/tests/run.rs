//! End-to-end: real `aitbc-node` processes on 127.0.0.1, driven only through their command
//! line and JSON-RPC, as an operator and a client would.

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

mod common;
use common::*;

#[test]
fn single_validator_commits_and_serves_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    Node::init(&home);
    let metrics_port = free_port().to_string();
    let mut node = Node::start_on(
        &home,
        free_port(),
        free_port(),
        &["--metrics-port", &metrics_port],
    );
    node.wait_for("height 3", |n| (n.height() >= 3).then_some(()));

    // A transfer signed by the CLI, answered once committed.
    let to = fresh_address(42);
    let key = home.join("validator_key");
    let out = cli(&[
        "tx",
        "transfer",
        &to,
        "5ait",
        "--key",
        path(&key),
        "--rpc",
        &node.rpc,
        "--wait",
        "commit",
    ]);
    assert!(
        out.status.success(),
        "tx transfer: {}\n{}",
        stderr(&out),
        node.log()
    );
    let sent: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert_eq!(sent["status"], "committed", "{sent}");
    let height = sent["height"].as_u64().expect("height");
    let hash = sent["hash"].as_str().expect("hash").to_string();

    let tx = node.call("getTx", json!({ "hash": hash })).expect("getTx");
    assert_eq!(tx["status"], "committed");
    assert_eq!(tx["height"].as_u64(), Some(height));
    let bal = node
        .call("getBalance", json!({ "address": to }))
        .expect("getBalance");
    assert_eq!(bal["balance"].as_u64(), Some(5_000_000));
    assert_eq!(bal["nonce"].as_u64(), Some(0));
    let from = node
        .call("getBalance", json!({ "address": address_of(&home) }))
        .expect("getBalance");
    assert_eq!(from["nonce"].as_u64(), Some(1));
    let block = node
        .call("getBlock", json!({ "height": height }))
        .expect("getBlock");
    assert_eq!(block["block"]["txs"].as_array().map(Vec::len), Some(1));
    assert!(block["commit"]["signatures"]
        .as_array()
        .is_some_and(|s| s.len() == 1));

    // A replay of the same tx is refused with a named reason.
    let replay = cli(&[
        "tx",
        "transfer",
        &to,
        "5ait",
        "--key",
        path(&key),
        "--rpc",
        &node.rpc,
        "--nonce",
        "1",
        "--wait",
        "mempool",
    ]);
    assert!(!replay.status.success());
    assert!(
        stderr(&replay).contains("stale_nonce"),
        "{}",
        stderr(&replay)
    );

    // Metrics are the node's real counters.
    let text = ureq_get(&format!("{}/metrics", node.rpc));
    assert!(metric(&text, "blockchain_blocks_total") >= height as f64);
    assert!(metric(&text, "blockchain_transactions_total") >= 1.0);
    assert!(metric(&text, "blockchain_height") >= height as f64);
    let scraped = ureq_get(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    assert!(metric(&scraped, "blockchain_blocks_total") >= height as f64);
    assert!(scraped.contains("rpc_requests_total"));

    // The WebSocket `newBlocks` stream pushes the next committed block.
    let (mut ws, _) =
        tokio_tungstenite::tungstenite::connect(format!("ws://127.0.0.1:{}/ws", node.rpc_port))
            .expect("websocket");
    if let tokio_tungstenite::tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
    }
    let sub =
        json!({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topic": "newBlocks"}});
    ws.send(sub.to_string().into()).expect("subscribe");
    let mut pushed = None;
    while pushed.is_none() {
        let msg = ws.read().expect("a websocket message");
        let v: Value = serde_json::from_str(msg.to_text().expect("text")).expect("json");
        if v["method"] == "subscription" {
            pushed = v["params"]["result"]["header"]["height"].as_u64();
        }
    }
    assert!(pushed.is_some_and(|h| h > height));

    // SIGTERM stops it cleanly.
    let status = node.signal("-TERM");
    assert!(status.success(), "exit {status:?}; log:\n{}", node.log());
}

fn ureq_get(url: &str) -> String {
    let mut resp = ureq::get(url).call().expect("GET");
    resp.body_mut().read_to_string().expect("body")
}

#[test]
fn sigkill_under_load_loses_no_committed_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    Node::init(&home);
    let mut node = Node::start(&home);
    let key = home.join("validator_key");
    let client = node.client();
    let from_key = aitbc_node::client::load_signing_key(&key).expect("validator key");
    let chain_id = "aitbc-dev";

    // Queue transfers (wait: mempool) while blocks commit, then kill -9 in the middle.
    let params = node
        .call("estimateFee", json!({ "bytes": 400 }))
        .expect("fee");
    let fee = params["fee"].as_u64().expect("fee");
    let to: aitbc_chain::Address = fresh_address(7).parse().expect("address");
    for nonce in 1..=40u64 {
        let tx = aitbc_chain::Tx::signed(
            chain_id,
            aitbc_chain::TxKind::Transfer { to, amount: 1 },
            &from_key,
            nonce,
            fee,
        );
        client
            .call("sendTx", json!({ "tx": tx, "wait": "mempool" }))
            .expect("sendTx");
        if nonce % 10 == 0 {
            std::thread::sleep(Duration::from_millis(120));
        }
    }
    node.wait_for("height 5", |n| (n.height() >= 5).then_some(()));
    let mut seen = Vec::new();
    let head = node.height();
    for h in 1..=head {
        let b = node
            .call("getBlock", json!({ "height": h }))
            .expect("getBlock");
        seen.push(b["hash"].as_str().expect("hash").to_string());
    }
    let status = node.signal("-KILL");
    assert!(!status.success());

    let node = Node::start_on(&home, node.p2p_port, node.rpc_port, &[]);
    assert!(node.height() >= head, "head went back from {head}");
    for (i, hash) in seen.iter().enumerate() {
        let b = node
            .call("getBlock", json!({ "height": i + 1 }))
            .expect("getBlock");
        assert_eq!(
            b["hash"].as_str(),
            Some(hash.as_str()),
            "block {} changed",
            i + 1
        );
    }
    // It goes on committing after the restart.
    node.wait_for("a block after the restart", |n| {
        (n.height() > head + 2).then_some(())
    });
}

/// Four validators from one genesis, bootstrapping from the first: they commit, agree on every
/// block, and one that is killed catches up by sync after a restart.
#[test]
fn four_validators_commit_agree_and_a_restarted_one_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let homes = validator_homes(dir.path(), 4);
    let (mut nodes, boot) = start_validators(&homes, &[]);
    let start =
        |h: &Path| Node::start_on(h, free_port(), free_port(), &["--bootstrap-peers", &boot]);
    for n in &nodes {
        n.wait_for("height 5 on every node", |n| {
            (n.height() >= 5).then_some(())
        });
    }
    let hashes = |n: &Node, upto: u64| -> Vec<String> {
        (1..=upto)
            .map(|h| {
                let b = n
                    .call("getBlock", json!({ "height": h }))
                    .expect("getBlock");
                b["hash"].as_str().expect("hash").to_string()
            })
            .collect()
    };
    let reference = hashes(&nodes[0], 5);
    for n in &nodes[1..] {
        assert_eq!(hashes(n, 5), reference, "nodes disagree");
    }

    // Kill one mid-load; the other three (> 2/3 of the power) go on.
    let key = aitbc_node::client::load_signing_key(&homes[0].join("validator_key")).expect("key");
    let fee = nodes[0]
        .call("estimateFee", json!({ "bytes": 400 }))
        .expect("fee")["fee"]
        .as_u64()
        .expect("fee");
    let to: aitbc_chain::Address = fresh_address(9).parse().expect("address");
    let send = |n: &Node, nonce: u64| {
        let tx = aitbc_chain::Tx::signed(
            "aitbc-dev",
            aitbc_chain::TxKind::Transfer { to, amount: 1 },
            &key,
            nonce,
            fee,
        );
        n.call("sendTx", json!({ "tx": tx, "wait": "mempool" }))
            .expect("sendTx");
    };
    // Sent to the nodes that stay up: a tx only the victim held when it died would leave a
    // nonce gap no later tx can pass.
    for nonce in 1..=20 {
        send(&nodes[nonce as usize % 3], nonce);
    }
    let mut victim = nodes.pop().expect("node 3");
    victim.signal("-KILL");
    for nonce in 21..=40 {
        send(&nodes[nonce as usize % 3], nonce);
    }
    let h0 = nodes[0].height();
    nodes[0].wait_for("progress with 3 of 4", |n| {
        (n.height() >= h0 + 5).then_some(())
    });
    let target = nodes[0].height();
    let back = start(&homes[3]);
    back.wait_for("the restarted node to catch up", |n| {
        (n.height() >= target).then_some(())
    });
    assert_eq!(hashes(&back, target), hashes(&nodes[0], target));
    nodes[0].wait_for("all 40 transfers", |n| {
        let b = n
            .call("getBalance", json!({ "address": to.to_string() }))
            .ok()?;
        (b["balance"].as_u64() == Some(40)).then_some(())
    });

    // The killed validator never signed anything conflicting: nobody submitted evidence
    // against it, and its stake is whole.
    let head = nodes[0].height();
    for h in 1..=head {
        let b = nodes[0]
            .call("getBlock", json!({ "height": h }))
            .expect("getBlock");
        for tx in b["block"]["txs"].as_array().expect("txs") {
            assert!(
                tx["kind"].get("Evidence").is_none(),
                "evidence at {h}: {tx}"
            );
        }
    }
    let stake = nodes[0]
        .call("getBalance", json!({ "address": address_of(&homes[3]) }))
        .expect("getBalance")["stake"]
        .as_u64();
    assert_eq!(stake, Some(1_000_000_000));
}
