//! JSON-RPC over HTTP: every method, the envelope rules, batches and each error code.

mod common;

use aitbc_chain::{Hash, TxKind};
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn send_tx_waits_as_asked() {
    let (node, app) = setup();
    let tx = transfer(&alice(), addr(&bob()), 5, 2);
    let r = rpc_ok(&app, "sendTx", json!({"tx": tx, "wait": "none"})).await;
    assert_eq!(r["status"], "submitted");
    assert_eq!(r["hash"], tx.hash().to_string());

    let tx = transfer(&alice(), addr(&bob()), 5, 3);
    let r = rpc_ok(&app, "sendTx", json!([tx])).await;
    assert_eq!(r["status"], "pending", "mempool is the default wait");

    let tx = transfer(&alice(), addr(&bob()), 5, 4);
    let r = rpc_ok(&app, "sendTx", json!({"tx": tx, "wait": "commit"})).await;
    assert_eq!(r["status"], "committed");
    assert_eq!(r["height"], node.head_height());
    assert_eq!(node.account(&addr(&alice())).nonce, 4);

    let e = rpc_err(&app, "sendTx", json!({"tx": tx, "wait": "eventually"})).await;
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"].as_str().unwrap_or("").contains("\"wait\""),
        "{e}"
    );
}

#[tokio::test]
async fn send_raw_tx_decodes_canonical_hex() {
    let (_node, app) = setup();
    let tx = transfer(&alice(), addr(&bob()), 7, 2);
    let raw = format!("0x{}", hex::encode(tx.encode()));
    let r = rpc_ok(&app, "sendRawTx", json!({"tx": raw})).await;
    assert_eq!(r["hash"], tx.hash().to_string());
    assert_eq!(r["status"], "pending");

    for bad in ["0xnothex", "0x0011", "abcd"] {
        let e = rpc_err(&app, "sendRawTx", json!([bad])).await;
        assert_eq!(e["code"], -32602, "{bad}: {e}");
        assert!(
            e["message"].as_str().unwrap_or("").contains("\"tx\""),
            "{e}"
        );
    }
}

#[tokio::test]
async fn submit_receipt_takes_only_receipt_claims() {
    let (_node, app) = setup();
    let claim = receipt_claim(&bob(), 1);
    assert!(matches!(claim.kind, TxKind::ReceiptClaim { .. }));
    // bob has 1000 units from setup: enough for the fee? No — and the node says so by reason.
    let e = rpc_err(&app, "submitReceipt", json!({"tx": claim})).await;
    assert_eq!(e["code"], -32000);
    assert_eq!(e["data"]["reason"], "insufficient_funds");

    let claim = receipt_claim(&alice(), 2);
    let r = rpc_ok(
        &app,
        "submitReceipt",
        json!({"tx": claim, "wait": "mempool"}),
    )
    .await;
    assert_eq!(r["hash"], claim.hash().to_string());

    let not_a_claim = transfer(&alice(), addr(&bob()), 1, 3);
    let e = rpc_err(&app, "submitReceipt", json!({"tx": not_a_claim})).await;
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"].as_str().unwrap_or("").contains("transfer"),
        "{e}"
    );
}

#[tokio::test]
async fn application_errors_carry_the_reason() {
    let (_node, app) = setup();
    let stale = transfer(&alice(), addr(&bob()), 1_000, 1);
    let e = rpc_err(&app, "sendTx", json!({"tx": stale})).await;
    assert_eq!(e["code"], -32000);
    assert_eq!(e["data"]["reason"], "duplicate");

    let mut forged = transfer(&alice(), addr(&bob()), 1, 2);
    forged.fee += 1;
    let e = rpc_err(&app, "sendTx", json!({"tx": forged})).await;
    assert_eq!(e["data"]["reason"], "bad_signature");

    let gap = transfer(&alice(), addr(&bob()), 1, 9);
    let e = rpc_err(&app, "sendTx", json!({"tx": gap})).await;
    assert_eq!(e["data"]["reason"], "bad_nonce");
}

#[tokio::test]
async fn get_tx_committed_pending_and_missing() {
    let (node, app) = setup();
    let committed = node
        .get_block_txs(1)
        .first()
        .copied()
        .expect("block 1 holds the setup transfer");
    let r = rpc_ok(&app, "getTx", json!({"hash": committed})).await;
    assert_eq!(r["status"], "committed");
    assert_eq!(r["height"], 1);
    assert_eq!(r["index"], 0);

    let tx = transfer(&alice(), addr(&bob()), 5, 2);
    rpc_ok(&app, "sendTx", json!({"tx": tx})).await;
    let r = rpc_ok(&app, "getTx", json!([tx.hash()])).await;
    assert_eq!(r["status"], "pending");

    let missing = Hash::of(b"nope");
    let e = rpc_err(&app, "getTx", json!({"hash": missing})).await;
    assert_eq!(e["code"], -32001);
    assert_eq!(e["data"]["reason"], "not_found");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains(&missing.to_string()),
        "{e}"
    );
    let e = rpc_err(&app, "getTx", json!({"hash": "0x1234"})).await;
    assert_eq!(e["code"], -32602);
}

#[tokio::test]
async fn get_block_by_height_or_hash() {
    let (_node, app) = setup();
    let by_height = rpc_ok(&app, "getBlock", json!({"height": 1})).await;
    let hash = by_height["hash"].clone();
    assert_eq!(by_height["block"]["header"]["height"], 1);
    assert!(by_height["commit"].is_object());
    let by_hash = rpc_ok(&app, "getBlock", json!({ "hash": hash })).await;
    assert_eq!(by_hash, by_height);
    assert_eq!(rpc_ok(&app, "getBlock", json!([1])).await, by_height);
    assert_eq!(rpc_ok(&app, "getBlock", json!([hash])).await, by_height);
    let genesis = rpc_ok(&app, "getBlock", json!([0])).await;
    assert!(genesis["commit"].is_null());

    let e = rpc_err(&app, "getBlock", json!({"height": 99})).await;
    assert_eq!(e["code"], -32001);
    assert!(e["message"].as_str().unwrap_or("").contains("99"), "{e}");
    let e = rpc_err(&app, "getBlock", json!({"hash": Hash::of(b"x")})).await;
    assert_eq!(e["data"]["reason"], "not_found");
    let e = rpc_err(&app, "getBlock", json!({})).await;
    assert_eq!(e["code"], -32602);
}

#[tokio::test]
async fn get_block_with_tx_hashes_only() {
    let (node, app) = setup();
    for nonce in [2, 3] {
        let tx = transfer(&alice(), addr(&bob()), 5, nonce);
        rpc_ok(&app, "sendTx", json!({ "tx": tx })).await;
    }
    let height = node.commit_block();
    let full = rpc_ok(&app, "getBlock", json!({ "height": height })).await;
    let hashes = rpc_ok(
        &app,
        "getBlock",
        json!({ "height": height, "txs": "hashes" }),
    )
    .await;
    let in_block = node.get_block_txs(height);
    assert_eq!(in_block.len(), 2);
    assert_eq!(full["block"]["txs"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        hashes["tx_hashes"],
        json!(in_block),
        "every tx, in block order"
    );
    assert_eq!(hashes["hash"], full["hash"]);
    assert_eq!(hashes["header"], full["block"]["header"]);
    assert_eq!(hashes["commit"], full["commit"]);
    assert!(hashes.get("block").is_none(), "no tx bodies: {hashes}");
    assert_eq!(
        rpc_ok(
            &app,
            "getBlock",
            json!({ "hash": full["hash"], "txs": "full" })
        )
        .await,
        full
    );
    let e = rpc_err(
        &app,
        "getBlock",
        json!({ "height": height, "txs": "bodies" }),
    )
    .await;
    assert_eq!(e["code"], -32602);
    assert!(e["message"].as_str().unwrap_or("").contains("txs"), "{e}");
}

#[tokio::test]
async fn headers_and_commits() {
    let (node, app) = setup();
    let head = rpc_ok(&app, "getHead", json!([])).await;
    assert_eq!(head["header"]["height"], node.head_height());
    assert_eq!(head["tx_count"], 1);
    let h1 = rpc_ok(&app, "getHeader", json!({"height": 1})).await;
    assert_eq!(h1, head);
    assert_eq!(rpc_ok(&app, "getHeader", json!({})).await, head);
    let e = rpc_err(&app, "getHeader", json!([42])).await;
    assert_eq!(e["code"], -32001);

    let commit = rpc_ok(&app, "getCommit", json!({"height": 1})).await;
    assert_eq!(commit["block_hash"], head["hash"]);
    let e = rpc_err(&app, "getCommit", json!({"height": 7})).await;
    assert_eq!(e["data"]["reason"], "not_found");
    let e = rpc_err(&app, "getCommit", json!({})).await;
    assert_eq!(e["code"], -32602);
    assert_eq!(e["message"], "missing param \"height\"");
}

#[tokio::test]
async fn balances_and_proofs() {
    let (_node, app) = setup();
    let b = rpc_ok(&app, "getBalance", json!({"address": addr(&bob())})).await;
    assert_eq!(b["balance"], 1_000);
    assert_eq!(b["nonce"], 0);
    assert_eq!(b["height"], 1);
    let a = rpc_ok(&app, "getBalance", json!([addr(&alice())])).await;
    assert_eq!(a["nonce"], 1);

    let e = rpc_err(&app, "getBalance", json!({"address": "btc1qqqq"})).await;
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"].as_str().unwrap_or("").contains("\"address\""),
        "{e}"
    );

    let p = rpc_ok(&app, "getAccountProof", json!({"address": addr(&alice())})).await;
    assert_eq!(p["address"], addr(&alice()).to_string());
    assert!(p["proof"].is_object());
}

#[tokio::test]
async fn estimate_fee_from_tx_or_bytes() {
    let (node, app) = setup();
    let tx = transfer(&alice(), addr(&bob()), 5, 2);
    let p = &aitbc_rpc::NodeApi::genesis(&*node).params;
    let want = p.base_fee + p.fee_per_byte * tx.encoded_len() as u64;
    let r = rpc_ok(&app, "estimateFee", json!({"tx": tx})).await;
    assert_eq!(r["fee"], want);
    assert_eq!(r["bytes"], tx.encoded_len());
    let r = rpc_ok(&app, "estimateFee", json!({"bytes": 100})).await;
    assert_eq!(r["fee"], p.base_fee + p.fee_per_byte * 100);
    let e = rpc_err(&app, "estimateFee", json!({})).await;
    assert_eq!(e["code"], -32602);
}

#[tokio::test]
async fn node_wide_reads() {
    let (node, app) = setup();
    let v = rpc_ok(&app, "getValidators", json!(null)).await;
    assert_eq!(v[0]["address"], addr(&validator_key()).to_string());
    let peers = rpc_ok(&app, "getPeers", json!([])).await;
    assert_eq!(peers[0]["connected"], true);
    let supply = rpc_ok(&app, "getSupply", json!({})).await;
    assert!(supply["supply"].as_u64().unwrap_or(0) > 0);
    let g = rpc_ok(&app, "getGenesis", json!([])).await;
    assert_eq!(g["chain_id"], CHAIN_ID);
    let c = rpc_ok(&app, "consensusState", json!([])).await;
    assert_eq!(c["height"], node.head_height() + 1);
    let s = rpc_ok(&app, "status", json!([])).await;
    assert_eq!(s["chain_id"], CHAIN_ID);
    assert_eq!(s["head_height"], node.head_height());
    let s = rpc_ok(&app, "syncStatus", json!([])).await;
    assert_eq!(s["syncing"], false);

    let e = rpc_err(&app, "status", json!({"verbose": true})).await;
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"].as_str().unwrap_or("").contains("verbose"),
        "{e}"
    );
}

#[tokio::test]
async fn mempool_limit() {
    let (_node, app) = setup();
    for nonce in 2..5 {
        let tx = transfer(&alice(), addr(&bob()), 1, nonce);
        rpc_ok(&app, "sendTx", json!({"tx": tx})).await;
    }
    let m = rpc_ok(&app, "getMempool", json!({})).await;
    assert_eq!(m["count"], 3);
    assert_eq!(m["txs"].as_array().map(Vec::len), Some(3));
    let m = rpc_ok(&app, "getMempool", json!({"limit": 1})).await;
    assert_eq!(m["count"], 3);
    assert_eq!(m["txs"].as_array().map(Vec::len), Some(1));
    let e = rpc_err(&app, "getMempool", json!({"limit": 1001})).await;
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"].as_str().unwrap_or("").contains("\"limit\""),
        "{e}"
    );
}

#[tokio::test]
async fn subscribe_is_websocket_only() {
    let (_node, app) = setup();
    let e = rpc_err(&app, "subscribe", json!({"topic": "newBlocks"})).await;
    assert_eq!(e["code"], -32601);
    assert!(e["message"].as_str().unwrap_or("").contains("/ws"), "{e}");
}

#[tokio::test]
async fn standard_error_codes() {
    let (node, app) = setup();
    // -32700: not JSON; the id could not be read, so it is null.
    let a = post_raw(&app, "/", "{\"jsonrpc\": \"2.0\", \"id\": 1,").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["error"]["code"], -32700);
    assert_eq!(a.json()["id"], Value::Null);
    let a = post_raw(&app, "/rpc", vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(a.json()["error"]["code"], -32700);
    let a = post_raw(&app, "/", "").await;
    assert_eq!(a.json()["error"]["code"], -32700);

    // -32600: JSON, but not a request.
    for body in [
        json!(42),
        json!("x"),
        json!([]),
        json!({"jsonrpc": "1.0", "id": 1, "method": "status"}),
        json!({"jsonrpc": "2.0", "id": 1}),
        json!({"jsonrpc": "2.0", "id": [1], "method": "status"}),
    ] {
        let a = post_json(&app, "/", &body).await;
        assert_eq!(a.json()["error"]["code"], -32600, "{body}: {}", a.text);
    }
    let a = post_json(
        &app,
        "/",
        &json!({"jsonrpc": "1.0", "id": 7, "method": "status"}),
    )
    .await;
    assert_eq!(a.json()["id"], 7, "a readable id is echoed");

    // -32601
    let e = rpc_err(&app, "noSuchMethod", json!([])).await;
    assert_eq!(e["code"], -32601);
    assert!(
        e["message"].as_str().unwrap_or("").contains("noSuchMethod"),
        "{e}"
    );

    // -32602
    let e = rpc_err(&app, "getBlock", json!({"height": "tall"})).await;
    assert_eq!(e["code"], -32602);
    assert!(
        e["message"].as_str().unwrap_or("").contains("\"height\""),
        "{e}"
    );

    // -32603
    node.broken_supply.store(true, Ordering::SeqCst);
    let e = rpc_err(&app, "getSupply", json!([])).await;
    assert_eq!(e["code"], -32603);
    assert!(e.get("data").is_none(), "{e}");
}

#[tokio::test]
async fn ids_are_echoed_as_given() {
    let (_node, app) = setup();
    for id in [json!("abc"), json!(7), json!(null), json!(1.5)] {
        let a = post_json(
            &app,
            "/",
            &json!({"jsonrpc": "2.0", "id": id, "method": "syncStatus"}),
        )
        .await;
        assert_eq!(a.json()["id"], id);
        assert_eq!(a.json()["jsonrpc"], "2.0");
        assert!(a.json()["result"].is_object());
    }
}

#[tokio::test]
async fn batch_answers_in_order_and_skips_notifications() {
    let (_node, app) = setup();
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "getHead"},
        {"jsonrpc": "2.0", "method": "status"},
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        7,
        {"jsonrpc": "2.0", "id": "c", "method": "getBlock", "params": {"height": 1}},
        {"jsonrpc": "2.0", "id": "d", "method": "getTx", "params": [Hash::of(b"missing")]},
    ]);
    let a = post_json(&app, "/", &batch).await;
    assert_eq!(a.status, StatusCode::OK);
    let answers = a.json();
    let answers = answers.as_array().expect("array");
    assert_eq!(answers.len(), 5, "the notification gets no answer");
    assert_eq!(answers[0]["id"], "a");
    assert!(answers[0]["result"].is_object());
    assert_eq!(answers[1]["id"], "b");
    assert_eq!(answers[1]["error"]["code"], -32601);
    assert_eq!(answers[2]["id"], Value::Null);
    assert_eq!(answers[2]["error"]["code"], -32600);
    assert_eq!(answers[3]["id"], "c");
    assert_eq!(answers[3]["result"]["block"]["header"]["height"], 1);
    assert_eq!(answers[4]["id"], "d");
    assert_eq!(answers[4]["error"]["code"], -32001);
}

#[tokio::test]
async fn notifications_only_answer_204() {
    let (node, app) = setup();
    let tx = transfer(&alice(), addr(&bob()), 1, 2);
    let a = post_json(
        &app,
        "/",
        &json!({"jsonrpc": "2.0", "method": "sendTx", "params": {"tx": tx}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.text.is_empty());
    assert_eq!(
        node.mempool_len(),
        1,
        "a notification still runs the method"
    );
    let a = post_json(
        &app,
        "/rpc",
        &json!([{"jsonrpc": "2.0", "method": "status"}, {"jsonrpc": "2.0", "method": "nope"}]),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn batch_over_the_limit_is_refused() {
    let (node, metrics) = TestNode::new(true);
    let config = aitbc_rpc::RpcConfig {
        max_batch: 3,
        ..config()
    };
    let app = app(&node, &metrics, &config);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "status"});
    let a = post_json(&app, "/", &json!([call, call, call])).await;
    assert_eq!(a.json().as_array().map(Vec::len), Some(3));
    let a = post_json(&app, "/", &json!([call, call, call, call])).await;
    assert_eq!(a.json()["error"]["code"], -32600);
    assert!(a.text.contains("limit"), "{}", a.text);
}

#[tokio::test]
async fn oversized_body_is_an_invalid_request() {
    let (node, metrics) = TestNode::new(true);
    let config = aitbc_rpc::RpcConfig {
        max_body_bytes: 64 << 10,
        ..config()
    };
    let app = app(&node, &metrics, &config);
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sendRawTx\",\"params\":[\"0x{}\"]}}",
        "00".repeat(40 << 10)
    );
    let a = post_raw(&app, "/", big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let error = &a.json()["error"];
    assert_eq!(error["code"], -32600);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("body too large"),
        "{error}"
    );
    assert_eq!(a.json()["id"], Value::Null);
    // Just under the limit is read (and refused for what it is, not for its size).
    let fits = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sendRawTx\",\"params\":[\"0x{}\"]}}",
        "00".repeat(30 << 10)
    );
    let a = post_raw(&app, "/", fits).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["error"]["code"], -32602);
}

#[tokio::test]
async fn deeply_nested_json_does_not_panic() {
    let (_node, app) = setup();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let a = post_raw(&app, "/", deep).await;
    assert_eq!(a.json()["error"]["code"], -32700);
    let a = post_raw(&app, "/", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getTx\",\"params\":{\"hash\":{\"a\":[[[[[1]]]]]}}}").await;
    assert_eq!(a.json()["error"]["code"], -32602);
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_outcome() {
    let (_node, app) = setup();
    rpc_ok(&app, "getHead", json!([])).await;
    rpc_ok(&app, "getHead", json!([])).await;
    rpc_err(&app, "getTx", json!([Hash::of(b"none")])).await;
    rpc_err(&app, "made_up_method_name_1", json!([])).await;
    rpc_err(&app, "made_up_method_name_2", json!([])).await;
    post_raw(&app, "/", "not json").await;
    let text = get(&app, "/metrics").await.text;
    assert!(
        text.contains(r#"rpc_requests_total{method="getHead",outcome="ok"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"rpc_requests_total{method="getTx",outcome="not_found"} 1"#));
    assert!(
        text.contains(r#"rpc_requests_total{method="unknown",outcome="method_not_found"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"rpc_requests_total{method="unknown",outcome="parse_error"} 1"#));
    assert!(
        !text.contains("made_up"),
        "unknown names never become labels"
    );
    assert!(text.contains(r#"rpc_request_duration_seconds_count{method="getHead"} 2"#));
}
