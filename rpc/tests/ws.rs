//! The WebSocket at `/ws` against a real server on 127.0.0.1, and graceful shutdown.

mod common;

use aitbc_chain::Hash;
use aitbc_rpc::{serve, ConsensusEvent, NodeEvent, RpcConfig};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest any step waits for the server.
const STEP: Duration = Duration::from_secs(10);

struct Server {
    node: Arc<TestNode>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(config: RpcConfig) -> Server {
    let (node, metrics) = TestNode::new(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, Arc::clone(&node), config, metrics, async {
        let _ = stopped.await;
    }));
    Server {
        node,
        addr,
        stop: Some(stop),
        task,
    }
}

async fn connect(server: &Server) -> Ws {
    let (ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    ws
}

async fn send_json(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next text frame as JSON.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("frame");
        match frame {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    send_json(
        ws,
        &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
    )
    .await;
    let answer = next_json(ws).await;
    assert_eq!(answer["id"], id, "{answer}");
    answer
}

#[tokio::test]
async fn methods_and_batches_over_websocket() {
    let server = start(config()).await;
    let mut ws = connect(&server).await;
    let head = call(&mut ws, 1, "getHead", json!([])).await;
    assert_eq!(
        head["result"]["header"]["height"],
        server.node.head_height()
    );
    let missing = call(&mut ws, 2, "getTx", json!([Hash::of(b"none")])).await;
    assert_eq!(missing["error"]["code"], -32001);

    send_json(
        &mut ws,
        &json!([
            {"jsonrpc": "2.0", "id": 3, "method": "status"},
            {"jsonrpc": "2.0", "method": "status"},
            {"jsonrpc": "2.0", "id": 4, "method": "nope"},
        ]),
    )
    .await;
    let batch = next_json(&mut ws).await;
    let batch = batch.as_array().expect("array");
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0]["id"], 3);
    assert_eq!(batch[1]["error"]["code"], -32601);
}

#[tokio::test]
async fn bad_frames_get_parse_errors_and_the_connection_stays() {
    let server = start(config()).await;
    let mut ws = connect(&server).await;
    ws.send(Message::text("{not json")).await.expect("send");
    let e = next_json(&mut ws).await;
    assert_eq!(e["error"]["code"], -32700);
    assert_eq!(e["id"], Value::Null);
    ws.send(Message::binary(b"\x00\x01".to_vec()))
        .await
        .expect("send");
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32700);
    let ok = call(&mut ws, 9, "syncStatus", json!([])).await;
    assert!(ok["result"].is_object());
}

#[tokio::test]
async fn subscribe_receives_pushed_events_until_unsubscribed() {
    let server = start(config()).await;
    let mut ws = connect(&server).await;
    let sub = call(&mut ws, 1, "subscribe", json!({"topic": "newBlocks"})).await;
    let id = sub["result"].as_str().expect("subscription id").to_string();
    let consensus = call(&mut ws, 2, "subscribe", json!(["consensusEvents"])).await;
    let consensus_id = consensus["result"].as_str().expect("id").to_string();

    // A block committed by the node reaches the newBlocks subscription only.
    let height = server.node.commit_block();
    let note = next_json(&mut ws).await;
    assert_eq!(note["jsonrpc"], "2.0");
    assert_eq!(note["method"], "subscription");
    assert_eq!(note["params"]["subscription"], id);
    assert_eq!(note["params"]["result"]["type"], "newBlock");
    assert_eq!(note["params"]["result"]["header"]["height"], height);

    // An event pushed straight through the test double's broadcast sender.
    let event = NodeEvent::Consensus(ConsensusEvent::ViewChange { height: 9, view: 2 });
    server.node.events.send(event).expect("a subscriber");
    let note = next_json(&mut ws).await;
    assert_eq!(note["params"]["subscription"], consensus_id);
    assert_eq!(note["params"]["result"]["event"], "viewChange");

    let r = call(&mut ws, 3, "unsubscribe", json!({"subscription": id})).await;
    assert_eq!(r["result"], true);
    let r = call(&mut ws, 4, "unsubscribe", json!([id])).await;
    assert_eq!(r["result"], false);
    // Nothing more for newBlocks: the next frame is the answer to the next call.
    server.node.commit_block();
    let r = call(&mut ws, 5, "getHead", json!([])).await;
    assert!(r["result"].is_object(), "{r}");

    let e = call(&mut ws, 6, "subscribe", json!({"topic": "everything"})).await;
    assert_eq!(e["error"]["code"], -32602);
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    let server = start(RpcConfig {
        max_ws_subscriptions: 2,
        ..config()
    })
    .await;
    let mut ws = connect(&server).await;
    for id in 1..=2 {
        let r = call(&mut ws, id, "subscribe", json!(["newTransactions"])).await;
        assert!(r["result"].is_string(), "{r}");
    }
    let r = call(&mut ws, 3, "subscribe", json!(["newTransactions"])).await;
    assert_eq!(r["error"]["code"], -32602);
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_what_it_missed() {
    let server = start(config()).await;
    let mut ws = connect(&server).await;
    let sub = call(&mut ws, 1, "subscribe", json!(["newTransactions"])).await;
    let id = sub["result"].clone();
    // Many more events than the channel holds (64), sent while the connection task is busy
    // behind this test's single-threaded runtime: its receiver lags.
    for i in 0..500u32 {
        let _ = server.node.events.send(NodeEvent::NewTransaction {
            hash: Hash::of(&i.to_le_bytes()),
        });
    }
    let mut saw_lag = false;
    for _ in 0..100 {
        let note = next_json(&mut ws).await;
        assert_eq!(note["params"]["subscription"], id);
        if let Some(error) = note["params"].get("error") {
            assert_eq!(error["data"]["reason"], "lagged");
            assert!(error["data"]["missed"].as_u64().unwrap_or(0) > 0);
            saw_lag = true;
            break;
        }
    }
    assert!(saw_lag, "no lag notification");
}

#[tokio::test]
async fn oversized_messages_close_the_connection() {
    let server = start(RpcConfig {
        max_body_bytes: 64 << 10,
        ..config()
    })
    .await;
    let mut ws = connect(&server).await;
    let _ = ws.send(Message::text("x".repeat(100 << 10))).await;
    let end = tokio::time::timeout(STEP, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection was not closed");
}

#[tokio::test]
async fn shutdown_closes_websockets_and_returns() {
    let mut server = start(config()).await;
    let mut ws = connect(&server).await;
    call(&mut ws, 1, "status", json!([])).await;
    if let Some(stop) = server.stop.take() {
        let _ = stop.send(());
    }
    let closed = tokio::time::timeout(STEP, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(closed, Some(1001), "a going-away close frame");
    let result = tokio::time::timeout(STEP, &mut server.task)
        .await
        .expect("serve returns")
        .expect("join");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn websocket_frames_count_against_the_rate_limit() {
    // The upgrade request takes one token of the burst, the first call the second.
    let server = start(RpcConfig {
        rate_per_ip: 1,
        rate_burst: 2,
        ..config()
    })
    .await;
    let mut ws = connect(&server).await;
    let ok = call(&mut ws, 1, "status", json!([])).await;
    assert!(ok["result"].is_object(), "{ok}");
    send_json(
        &mut ws,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "status"}),
    )
    .await;
    let limited = next_json(&mut ws).await;
    assert_eq!(limited["error"]["code"], -32005);
    assert_eq!(limited["error"]["data"]["reason"], "rate_limited");
}
