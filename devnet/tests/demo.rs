//! End-to-end: `aitbc-devnet demo` against a real 4-validator devnet (separate `aitbc-node`
//! processes), checked independently of the demo's own accounting: this test reads balances and
//! supply over JSON-RPC itself, walks the committed blocks for the claims and transfers the
//! demo made, and recomputes the mint from SPEC §4 with the genesis parameters.
//!
//! As in `tests/devnet.rs`, the node binary must sit next to `aitbc-devnet` (`cargo build -p
//! aitbc-node` first when running only this package), and every devnet lives in a
//! [`Net`](common::Net) (`tests/common/mod.rs`) whose `Drop` stops it, so a failing assertion
//! leaves no process behind.

// Not every harness item is used here (e.g. `Net::clients`, used by `devnet.rs`).
#[allow(dead_code)]
mod common;

use aitbc_chain::genesis::Genesis;
use aitbc_chain::receipt::Receipt;
use aitbc_chain::{Address, Block, Hash, Tx, TxKind};
use aitbc_devnet::accounts::{account_address, account_key};
use aitbc_devnet::mocks::{self, coordinator_address, miner_address};
use aitbc_node::client::rpc::{RpcClient, RpcError};
use common::{balance, devnet, height, text, Net};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn get<T: serde::de::DeserializeOwned>(c: &RpcClient, method: &str, params: Value) -> T {
    let v = c
        .call(method, params)
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{method}: {e}"))
}

fn nonce(c: &RpcClient, a: &Address) -> u64 {
    c.call("getBalance", json!({ "address": a }))
        .expect("getBalance")["nonce"]
        .as_u64()
        .expect("nonce")
}

/// `(supply, height)` from `getSupply`.
fn supply(c: &RpcClient) -> (u64, u64) {
    let s = c.call("getSupply", json!({})).expect("getSupply");
    (
        s["supply"].as_u64().expect("supply"),
        s["height"].as_u64().expect("height"),
    )
}

fn wait_height(c: &RpcClient, target: u64) {
    let start = Instant::now();
    while height(c) < target {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not at height {target}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The txs of the committed blocks `from..=to`.
fn committed_txs(c: &RpcClient, from: u64, to: u64) -> Vec<Tx> {
    (from..=to)
        .flat_map(|h| {
            let info: Value = get(c, "getBlock", json!({ "height": h }));
            let block: Block = serde_json::from_value(info["block"].clone()).expect("a block");
            block.txs.into_iter().map(|t| t.tx).collect::<Vec<_>>()
        })
        .collect()
}

/// The demo's main path: every balance and the supply move exactly as SPEC §4 says for the
/// receipts that were claimed, checked here from the chain alone; a replayed receipt never
/// mints again.
#[test]
fn demo_mints_exactly_what_its_receipts_say_and_a_replay_is_refused() {
    let net = Net::new();
    net.ok("up", &["-n", "4", "--block-time", "200"]);
    let d = net.record();
    // The demo talks to node0; this test reads through node2.
    let (node0, node2) = (net.client(0), net.client(2));

    // `up` registered the coordinator and funded the cast; their key files are 0600.
    let genesis: Genesis = get(&node2, "getGenesis", json!({}));
    assert_eq!(genesis.coordinators, vec![coordinator_address()]);
    for path in [
        mocks::coordinator_key_path(&net.dir),
        mocks::miner_key_path(&net.dir),
    ] {
        let mode = std::fs::metadata(&path)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let client = account_address(d.accounts - 1);
    let (coordinator, miner, treasury) = (coordinator_address(), miner_address(), genesis.treasury);
    let tracked = [client, coordinator, miner, treasury];
    let before: Vec<u64> = tracked.iter().map(|a| balance(&node2, a)).collect();
    assert_eq!(before[1], mocks::COORDINATOR_BALANCE);
    assert_eq!(before[2], mocks::MINER_BALANCE);
    let (supply_before, h0) = supply(&node2);

    let out = net.ok("demo", &["--jobs", "2"]);
    for expected in [
        "job id 0 is outside",
        "job id 1000001 is outside",
        "total supply",
        "expected supply change",
        "the same claim tx again: rejected, reason",
        "result: every observed change matches the rule",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }

    // Node2 has caught up with everything node0 committed for the demo.
    wait_height(&node2, height(&node0));
    let after: Vec<u64> = tracked.iter().map(|a| balance(&node2, a)).collect();
    let (supply_after, h1) = supply(&node2);
    let txs = committed_txs(&node2, h0 + 1, h1);

    // What the chain holds: the client's payments and transfer, the miner's claims.
    let p = &genesis.params;
    let mut claims: Vec<Receipt> = Vec::new();
    let (mut client_out, mut to_coordinator, mut miner_fees) = (0u128, 0u128, 0u128);
    let mut payments = BTreeSet::new();
    for tx in &txs {
        let sender = tx.sender();
        match &tx.kind {
            TxKind::ReceiptClaim { receipt } => {
                assert_eq!(sender, miner, "the demo's miner submits its own claims");
                claims.push((**receipt).clone());
            }
            TxKind::Transfer { to, amount } if sender == client => {
                if *to == coordinator {
                    to_coordinator += u128::from(*amount);
                    payments.insert(tx.hash());
                }
                client_out += u128::from(*amount);
            }
            _ => {}
        }
        if sender == client {
            client_out += u128::from(tx.fee);
        }
        if sender == miner {
            miner_fees += u128::from(tx.fee);
        }
    }
    assert_eq!(claims.len(), 2, "two jobs, two claims");
    assert_eq!(payments.len(), 2, "two payments");
    let ids: BTreeSet<Hash> = claims.iter().map(|r| r.core.receipt_id).collect();
    assert_eq!(ids.len(), 2, "a receipt was claimed twice");
    let (mut mint_miner, mut mint_coord, mut mint_treasury, mut prices) = (0u128, 0, 0, 0);
    for r in &claims {
        r.verify_signatures(&genesis.chain_id)
            .expect("both signatures verify");
        assert_eq!(
            (r.core.client, r.core.miner, r.core.coordinator),
            (client, miner, coordinator)
        );
        assert!((1..=1_000_000).contains(&r.core.job_id));
        assert!(payments.contains(&r.core.client_payment_tx));
        // SPEC §4: mint = compute_units × mint_per_unit; bps shares on top, rounded down.
        let mint = u128::from(r.core.compute_units) * u128::from(p.mint_per_unit);
        mint_miner += mint;
        mint_coord += mint * u128::from(p.coordinator_bps) / 10_000;
        mint_treasury += mint * u128::from(p.treasury_bps) / 10_000;
        prices += u128::from(r.core.price);
    }
    assert!(mint_miner > 0 && mint_coord > 0 && mint_treasury > 0);
    let delta = |i: usize| i128::from(after[i]) - i128::from(before[i]);
    let minted = (mint_miner + mint_coord + mint_treasury) as i128;
    assert_eq!(
        i128::from(supply_after) - i128::from(supply_before),
        minted,
        "supply grows by exactly the mints (heights {h0} → {h1})"
    );
    assert_eq!(delta(0), -(client_out as i128), "client");
    assert_eq!(
        delta(1),
        (to_coordinator + mint_coord) as i128 - prices as i128,
        "coordinator"
    );
    assert_eq!(
        delta(2),
        (prices + mint_miner) as i128 - miner_fees as i128,
        "miner"
    );
    assert_eq!(delta(3), mint_treasury as i128, "treasury");

    // Replays, sent by this test: the committed claim tx again, and the same receipt in a new
    // tx from another account. Neither may ever commit or mint.
    let first = txs
        .iter()
        .find(|t| matches!(t.kind, TxKind::ReceiptClaim { .. }))
        .expect("a claim");
    let err = node2
        .call("submitReceipt", json!({ "tx": first, "wait": "mempool" }))
        .expect_err("the same claim tx is refused");
    assert!(
        matches!(
            err,
            RpcError::Rpc {
                reason: Some(_),
                ..
            }
        ),
        "{err}"
    );
    let TxKind::ReceiptClaim { receipt } = &first.kind else {
        unreachable!("found as a claim")
    };
    let relayer = account_key(5);
    let relayer_address = Address::of(&relayer.public());
    let relayed = Tx::signed(
        &genesis.chain_id,
        TxKind::ReceiptClaim {
            receipt: receipt.clone(),
        },
        &relayer,
        nonce(&node2, &relayer_address) + 1,
        1_000_000,
    );
    // Refused at admission, for the receipt (the mempool looks claimed receipts up).
    match node2.call("submitReceipt", json!({ "tx": relayed, "wait": "mempool" })) {
        Err(RpcError::Rpc { reason, .. }) => {
            assert_eq!(reason.as_deref(), Some("duplicate_receipt"))
        }
        other => panic!("a replayed receipt was not refused: {other:?}"),
    }
    assert_eq!(supply(&node2).0, supply_after, "a replay minted");
    assert_eq!(balance(&node2, &miner), after[2], "a replay paid the miner");
}

/// Refusals that need no running node.
#[test]
fn demo_needs_a_devnet_and_sane_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_str().expect("utf-8");
    let out = devnet(&["demo", "--dir", dir]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a devnet folder"),
        "{}",
        text(&out.stderr)
    );
    for (args, named) in [
        (vec!["demo", "--jobs", "0"], "--jobs"),
        (vec!["demo", "--jobs", "101"], "--jobs"),
        (vec!["demo", "--rpc-node", "x"], "--rpc-node"),
    ] {
        let out = devnet(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(named),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
