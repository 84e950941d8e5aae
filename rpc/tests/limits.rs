//! Per-IP rate limit, connection limit, CORS and config checks of `serve`.

mod common;

use aitbc_rpc::{serve, RpcConfig};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn from(ip: [u8; 4], request: Request<Body>) -> Request<Body> {
    let mut request = request;
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 5555))));
    request
}

#[tokio::test]
async fn rate_limit_answers_429_per_ip() {
    let (node, metrics) = TestNode::new(true);
    let config = RpcConfig {
        rate_per_ip: 1,
        rate_burst: 2,
        ..config()
    };
    let app = app(&node, &metrics, &config);
    let head = || {
        Request::get("/rpc/getHead")
            .body(Body::empty())
            .expect("req")
    };
    for _ in 0..2 {
        assert_eq!(
            send(&app, from([10, 0, 0, 1], head())).await.status,
            StatusCode::OK
        );
    }
    let a = send(&app, from([10, 0, 0, 1], head())).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.json()["code"], -32005);
    assert_eq!(a.json()["data"]["reason"], "rate_limited");

    // JSON-RPC routes answer with a JSON-RPC envelope.
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "status"}).to_string();
    let a = send(
        &app,
        from(
            [10, 0, 0, 1],
            Request::post("/").body(Body::from(call)).expect("req"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.json()["jsonrpc"], "2.0");
    assert_eq!(a.json()["error"]["code"], -32005);

    // Another client is not affected.
    assert_eq!(
        send(&app, from([10, 0, 0, 2], head())).await.status,
        StatusCode::OK
    );
    let text = get(&app, "/metrics").await.text;
    assert!(
        text.contains(r#"rpc_requests_total{method="unknown",outcome="rate_limited"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn retry_after_is_sent() {
    let (node, metrics) = TestNode::new(true);
    let config = RpcConfig {
        rate_per_ip: 1,
        rate_burst: 1,
        ..config()
    };
    let app = app(&node, &metrics, &config);
    let request = || Request::get("/health").body(Body::empty()).expect("req");
    assert_eq!(send(&app, request()).await.status, StatusCode::OK);
    let response = tower::ServiceExt::oneshot(app.clone(), request())
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
}

#[tokio::test]
async fn rate_limit_can_be_turned_off() {
    let (node, metrics) = TestNode::new(true);
    let config = RpcConfig {
        rate_per_ip: 0,
        ..config()
    };
    let app = app(&node, &metrics, &config);
    for _ in 0..50 {
        assert_eq!(get(&app, "/health").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn cors_only_when_configured() {
    let (node, metrics) = TestNode::new(true);
    let with_origin = || {
        Request::get("/health")
            .header(header::ORIGIN, "http://example.com")
            .body(Body::empty())
            .expect("req")
    };
    let allow = |a: &axum::response::Response| {
        a.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let call = |config: RpcConfig, request: Request<Body>| {
        let app = app(&node, &metrics, &config);
        async move {
            tower::ServiceExt::oneshot(app, request)
                .await
                .unwrap_or_else(|never| match never {})
        }
    };

    let none = call(config(), with_origin()).await;
    assert_eq!(allow(&none), None);

    let listed = RpcConfig {
        cors_origins: vec!["http://example.com".into()],
        ..config()
    };
    assert_eq!(
        allow(&call(listed.clone(), with_origin()).await).as_deref(),
        Some("http://example.com")
    );
    let other = Request::get("/health")
        .header(header::ORIGIN, "http://evil.test")
        .body(Body::empty())
        .expect("req");
    assert_eq!(allow(&call(listed.clone(), other).await), None);
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/")
        .header(header::ORIGIN, "http://example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .expect("req");
    let answer = call(listed, preflight).await;
    assert!(answer.status().is_success(), "{:?}", answer.status());
    assert!(answer
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_METHODS)
        .is_some());

    let any = RpcConfig {
        cors_origins: vec!["*".into()],
        ..config()
    };
    assert_eq!(allow(&call(any, with_origin()).await).as_deref(), Some("*"));
}

#[tokio::test]
async fn serve_refuses_a_bad_config_naming_the_field() {
    let (node, metrics) = TestNode::new(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = RpcConfig {
        max_batch: 0,
        ..config()
    };
    let err = serve(listener, node, config, metrics, async {})
        .await
        .expect_err("invalid");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("max_batch"), "{err}");
}

/// Sends one keep-alive HTTP/1.1 request and reads the start of the answer.
async fn request_head(stream: &mut TcpStream) -> std::io::Result<String> {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn connection_limit_counts_open_connections() {
    let (node, metrics) = TestNode::new(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = RpcConfig {
        max_connections: 1,
        ..config()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, Arc::clone(&node), config, metrics, async {
        let _ = stopped.await;
    }));

    let mut first = TcpStream::connect(addr).await.expect("connect");
    let head = request_head(&mut first).await.expect("first answered");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // The first connection is idle but open: the second waits in the accept queue.
    let mut second = TcpStream::connect(addr).await.expect("connect");
    let waiting = tokio::time::timeout(Duration::from_millis(300), request_head(&mut second)).await;
    assert!(
        waiting.is_err(),
        "second connection served while the first is open"
    );

    // Closing the first frees its permit; the second is then served.
    drop(first);
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
        .await
        .expect("served once the first closed")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let _ = stop.send(());
    drop(second);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .expect("join")
        .expect("serve ok");
}
