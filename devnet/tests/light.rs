//! End-to-end: `aitbc-devnet up --light 2` on a real 4-validator devnet. Both light peers are
//! `aitbc-node run --light` processes that bootstrap from node0. light0 follows the chain from
//! the start; light1 is stopped while the chain runs several hundred blocks and changes its
//! validator set, then started again and must verify its way to the head. Both must agree
//! with the validators header for header, track the new set, and return the balance a full
//! node holds, verified against a proof. `status`, `stop`, `start` and `down` treat light
//! peers as members of the devnet.

// Not every harness item is used here.
#[allow(dead_code)]
mod common;

use aitbc_devnet::record::{Devnet, Member};
use aitbc_node::client::rpc::RpcClient;
use common::{hashes, try_height, Net};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Deadline of one wait: far above what it takes on an idle machine, so only a stuck chain
/// or peer hits it.
const WAIT: Duration = Duration::from_secs(180);
/// Blocks the chain must have before light1 comes back: "several hundred" (issue #7).
const HISTORY: u64 = 300;

/// Polls `f` every 100 ms until it returns `Some`; panics after [`WAIT`] naming `what`, with
/// the devnet's log tails.
fn wait_for<T>(net: &Net, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting until {what}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The validator set as `(address, power)`: what a header's `validators_hash` commits to.
fn set_of(c: &RpcClient) -> Vec<(String, u64)> {
    let v = c.call("getValidators", json!({})).expect("getValidators");
    v.as_array()
        .expect("a list of validators")
        .iter()
        .map(|v| {
            let address = v["address"].as_str().expect("address").to_string();
            (address, v["power"].as_u64().expect("power"))
        })
        .collect()
}

#[test]
fn light_peers_follow_the_devnet_and_catch_up_across_a_set_change() {
    let net = Net::new();
    let table = net.ok(
        "up",
        &[
            "-n",
            "4",
            "--light",
            "2",
            "--block-time",
            "20",
            "--accounts",
            "0",
        ],
    );
    // `up` returned only once every member, light peers included, had verified new blocks.
    let record = net.record();
    assert_eq!(record.light.len(), 2);
    for m in [Member::Light(0), Member::Light(1)] {
        let node = record.get(m).expect("recorded");
        assert!(node.validator.is_none(), "{m} is recorded as a validator");
        assert!(node.peer_id.is_some(), "{m} has no peer id: {table}");
        assert!(record.is_running(&net.dir, m), "{m} is not running");
        assert!(
            table.contains(&m.to_string()),
            "{m} is not in the table:\n{table}"
        );
    }
    let node0 = net.member_client(Member::Validator(0));
    let node2 = net.member_client(Member::Validator(2));
    let light0 = net.member_client(Member::Light(0));
    let light1 = net.member_client(Member::Light(1));
    assert!(try_height(&light0).is_some_and(|h| h >= 2));

    // light1 goes away; validator0 stakes more, so at the next epoch boundary its power, and
    // so the set, changes; the chain runs on for several hundred blocks.
    let stopped = net.ok("stop", &["light1"]);
    assert!(stopped.contains("stopped light1"), "{stopped}");
    let key =
        aitbc_node::client::load_signing_key(&Devnet::home(&net.dir, 0).join("validator_key"))
            .expect("validator0's key");
    let fee = node0
        .call("estimateFee", json!({ "bytes": 400 }))
        .expect("estimateFee")["fee"]
        .as_u64()
        .expect("fee");
    let stake = aitbc_chain::Tx::signed(
        &record.chain_id,
        aitbc_chain::TxKind::Stake {
            amount: 500_000_000,
        },
        &key,
        1,
        fee,
    );
    net.client(0)
        .call("sendTx", json!({ "tx": stake, "wait": "commit" }))
        .expect("stake committed");
    let before = set_of(&node2);
    wait_for(&net, "the validator set to change", || {
        (set_of(&node2) != before).then_some(())
    });
    let target = wait_for(&net, "several hundred blocks", || {
        try_height(&node0).filter(|h| *h >= HISTORY)
    });

    // light1 comes back on its recorded ports and verifies its way to the head.
    let started = net.ok("start", &["light1"]);
    assert!(started.contains("light1 started"), "{started}");
    let status = net.ok("status", &[]);
    for m in ["light0", "light1"] {
        let row = status
            .lines()
            .find(|l| l.starts_with(m))
            .unwrap_or_else(|| panic!("no {m} row in:\n{status}"));
        assert!(row.contains("running"), "{row}");
    }
    for (m, c) in [(Member::Light(0), &light0), (Member::Light(1), &light1)] {
        wait_for(&net, &format!("{m} reaches height {target}"), || {
            try_height(c).filter(|h| *h >= target)
        });
        let chain = hashes(&net, Member::Validator(2), target);
        let verified = hashes(&net, m, target);
        if let Some(h) = (0..chain.len()).find(|&k| verified[k] != chain[k]) {
            panic!("{m} and node2 disagree at height {}", h + 1);
        }
        assert_eq!(set_of(c), set_of(&node0), "{m}'s validator set");
    }

    // A balance a light peer returns is the one the full nodes hold, proven against a
    // verified state root.
    let address = aitbc_chain::Address::of(&key.public()).to_string();
    let full = node0
        .call("getBalance", json!({ "address": address }))
        .expect("full node balance");
    for c in [&light0, &light1] {
        let verified = c
            .call("getBalance", json!({ "address": address }))
            .expect("verified balance");
        assert_eq!(verified["balance"], full["balance"]);
        assert_eq!(verified["stake"], full["stake"]);
        assert_ne!(verified["stake"], Value::Null);
    }

    // `down` stops the light peers with the validators.
    let pids = net.recorded_pids();
    assert_eq!(pids.len(), 6, "{pids:?}");
    net.ok("down", &[]);
    for (pid, home) in pids {
        assert!(
            !aitbc_devnet::process::is_node_process(pid, &home),
            "{} (pid {pid}) still runs after down",
            home.display()
        );
    }
}
