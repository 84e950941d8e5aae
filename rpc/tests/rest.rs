//! REST aliases, `/health`, `/metrics`, and the admin routes.

mod common;

use aitbc_chain::Hash;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn get_head_in_both_spellings() {
    let (node, app) = setup();
    for path in ["/rpc/getHead", "/rpc/get_head"] {
        let a = get(&app, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert_eq!(a.json()["header"]["height"], node.head_height());
    }
}

#[tokio::test]
async fn get_block_by_height_or_hash() {
    let (_node, app) = setup();
    let by_height = get(&app, "/rpc/getBlock/1").await.json();
    assert_eq!(by_height["block"]["header"]["height"], 1);
    let hash = by_height["hash"].as_str().expect("hash").to_string();
    assert_eq!(
        get(&app, &format!("/rpc/getBlock/{hash}")).await.json(),
        by_height
    );
    assert_eq!(get(&app, "/rpc/get_block/1").await.json(), by_height);

    let a = get(&app, "/rpc/getBlock/999").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["code"], -32001);
    assert_eq!(a.json()["data"]["reason"], "not_found");
    let a = get(&app, "/rpc/getBlock/not-a-hash").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["code"], -32602);
}

#[tokio::test]
async fn get_tx_and_balance() {
    let (node, app) = setup();
    let hash = node.get_block_txs(1)[0];
    let a = get(&app, &format!("/rpc/getTx/{hash}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["status"], "committed");
    let a = get(&app, &format!("/rpc/getTx/{}", Hash::of(b"none"))).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    for path in ["/rpc/getBalance", "/rpc/get_balance"] {
        let a = get(&app, &format!("{path}/{}", addr(&bob()))).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["balance"], 1_000);
        let a = get(&app, &format!("{path}/ait1notanaddress")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.json()["code"], -32602);
    }
}

#[tokio::test]
async fn send_tx_in_both_spellings_and_errors() {
    let (node, app) = setup();
    let tx = transfer(&alice(), addr(&bob()), 3, 2);
    let a = post_json(&app, "/rpc/sendTx", &json!({"tx": tx})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["status"], "pending");
    let tx = transfer(&alice(), addr(&bob()), 3, 3);
    let a = post_json(&app, "/rpc/send_tx", &json!({"tx": tx, "wait": "commit"})).await;
    assert_eq!(a.json()["status"], "committed");
    assert_eq!(node.mempool_len(), 0);

    // A refused tx: 400 with the node's reason.
    let a = post_json(&app, "/rpc/sendTx", &json!({"tx": tx})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["data"]["reason"], "duplicate");
    // Bad input: not JSON, not an object, missing param.
    let a = post_raw(&app, "/rpc/sendTx", "{oops").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["code"], -32700);
    let a = post_json(&app, "/rpc/sendTx", &json!([1, 2])).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = post_json(&app, "/rpc/sendTx", &json!({})).await;
    assert_eq!(a.json()["message"], "missing param \"tx\"");
}

#[tokio::test]
async fn submit_receipt_and_estimate_fee() {
    let (_node, app) = setup();
    let claim = receipt_claim(&alice(), 2);
    let a = post_json(&app, "/rpc/submitReceipt", &json!({"tx": claim})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["hash"], claim.hash().to_string());
    let a = post_json(&app, "/rpc/estimateFee", &json!({"bytes": 200})).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["bytes"], 200);
}

#[tokio::test]
async fn peers_sync_status_and_unknown_routes() {
    let (_node, app) = setup();
    let a = get(&app, "/p2p/peers").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()[0]["peer_id"], "12D3KooWTestPeer");
    let a = get(&app, "/sync_status").await;
    assert_eq!(a.json()["syncing"], false);
    let a = get(&app, "/nowhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.json()["message"]
        .as_str()
        .unwrap_or("")
        .contains("/nowhere"));
}

#[tokio::test]
async fn health_reports_the_node() {
    let (node, app) = setup();
    let a = get(&app, "/health").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "ok"}));
    node.healthy.store(false, Ordering::SeqCst);
    let a = get(&app, "/health").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["status"], "error");
    assert_eq!(a.json()["error"]["data"]["reason"], "store_closed");
}

#[tokio::test]
async fn metrics_are_openmetrics_text_and_count_rest_calls() {
    let (_node, app) = setup();
    get(&app, "/rpc/getHead").await;
    get(&app, "/rpc/get_head").await;
    get(&app, "/health").await;
    let a = get(&app, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        a.text
            .contains(r#"rpc_requests_total{method="getHead",outcome="ok"} 2"#),
        "{}",
        a.text
    );
    assert!(a
        .text
        .contains(r#"rpc_requests_total{method="health",outcome="ok"} 1"#));
    assert!(a.text.ends_with("# EOF\n"), "{}", a.text);
}

#[tokio::test]
async fn oversized_rest_body_is_413() {
    let (node, metrics) = TestNode::new(true);
    let config = aitbc_rpc::RpcConfig {
        max_body_bytes: 64 << 10,
        ..config()
    };
    let app = app(&node, &metrics, &config);
    let big = json!({"tx": "x".repeat(100 << 10)});
    for path in ["/rpc/sendTx", "/rpc/send_tx", "/rpc/estimateFee"] {
        let a = post_json(&app, path, &big).await;
        assert_eq!(
            a.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            a.text
        );
        assert_eq!(a.json()["data"]["reason"], "body_too_large");
    }
    let a = admin(&app, "/admin/paramSet", Some(ADMIN_TOKEN), &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
}

async fn admin(app: &axum::Router, path: &str, token: Option<&str>, body: &Value) -> Answer {
    let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    send(
        app,
        request.body(Body::from(body.to_string())).expect("request"),
    )
    .await
}

#[tokio::test]
async fn admin_routes_need_the_token() {
    let (node, app) = setup();
    let calls = [
        (
            "/admin/mintFaucet",
            json!({"address": addr(&bob()), "amount": 5}),
        ),
        (
            "/admin/peers/add",
            json!({"multiaddr": "/ip4/127.0.0.1/tcp/7070"}),
        ),
        ("/admin/paramSet", json!({"key": "base_fee", "value": 2000})),
    ];
    for (path, body) in &calls {
        for token in [None, Some("wrong-token-wrong-token"), Some("")] {
            let a = admin(&app, path, token, body).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
            assert_eq!(a.json()["code"], -32004);
            assert_eq!(a.json()["data"]["reason"], "unauthorized");
            assert!(!a.text.contains(ADMIN_TOKEN));
        }
    }
    assert_eq!(node.mempool_len(), 0, "refused calls did nothing");
    assert!(node
        .added_peers
        .lock()
        .map(|p| p.is_empty())
        .unwrap_or(false));

    let a = admin(&app, calls[0].0, Some(ADMIN_TOKEN), &calls[0].1).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json()["status"], "pending");
    assert_eq!(node.mempool_len(), 1);
    let a = admin(&app, calls[1].0, Some(ADMIN_TOKEN), &calls[1].1).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json(), json!(true));
    assert_eq!(
        node.added_peers
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default(),
        vec!["/ip4/127.0.0.1/tcp/7070".to_string()]
    );
    let a = admin(&app, calls[2].0, Some(ADMIN_TOKEN), &calls[2].1).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.json()["hash"].is_string());

    // Right token, bad params: named.
    let a = admin(
        &app,
        calls[0].0,
        Some(ADMIN_TOKEN),
        &json!({"address": addr(&bob())}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["message"], "missing param \"amount\"");
    let a = admin(
        &app,
        calls[1].0,
        Some(ADMIN_TOKEN),
        &json!({"multiaddr": "nope"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let text = get(&app, "/metrics").await.text;
    assert!(
        text.contains(r#"rpc_requests_total{method="admin_mintFaucet",outcome="unauthorized"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn admin_routes_are_absent_without_a_token() {
    let (node, metrics) = TestNode::new(true);
    let config = aitbc_rpc::RpcConfig {
        admin_token: None,
        ..config()
    };
    let app = app(&node, &metrics, &config);
    for path in ["/admin/mintFaucet", "/admin/peers/add", "/admin/paramSet"] {
        let a = admin(&app, path, Some(ADMIN_TOKEN), &json!({})).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn faucet_needs_a_genesis_faucet() {
    let (node, metrics) = TestNode::new(false);
    let app = app(&node, &metrics, &config());
    let a = admin(
        &app,
        "/admin/mintFaucet",
        Some(ADMIN_TOKEN),
        &json!({"address": addr(&bob()), "amount": 5}),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["data"]["reason"], "no_faucet");
}
