//! The WebSocket at `/ws`: JSON-RPC messages in text (or binary) frames, the same methods as
//! HTTP plus `subscribe` / `unsubscribe`, and pushed notifications
//! `{"jsonrpc":"2.0","method":"subscription","params":{"subscription":id,"result":event}}`.
//!
//! One task per connection. It never blocks the node: events come from a bounded broadcast
//! channel that drops the oldest for a subscriber that falls behind (the client is then told how
//! many it missed), calls run in their own tasks (a few at a time per connection), and a client
//! that stops reading is disconnected after [`SEND_TIMEOUT`].

use crate::envelope::{error_text, notification};
use crate::jsonrpc::{self, RpcError};
use crate::methods::Ctx;
use crate::rate_limit::{ClientAddr, RateLimiter};
use crate::respond;
use crate::server::AppState;
use crate::subscriptions::Subscriptions;
use crate::{NodeApi, NodeEvent};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// A client that has not taken a message within this long is disconnected.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Calls of one connection running at once; past this the connection's frames wait unread.
pub(crate) const MAX_CALLS_IN_FLIGHT: usize = 16;

/// `GET /ws`: upgrades the connection.
pub(crate) async fn handler<A: NodeApi>(
    State(state): State<AppState<A>>,
    ClientAddr(addr): ClientAddr,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return respond::json(
                rejection.status(),
                &RpcError::invalid_request(format!("/ws needs a WebSocket upgrade: {rejection}")),
            )
        }
    };
    let session = Arc::new(Subscriptions::new(state.max_ws_subscriptions));
    let connection = Connection {
        ctx: Ctx {
            session: Some(Arc::clone(&session)),
            ..state.ctx.clone()
        },
        session,
        limiter: state.limiter.clone(),
        ip: addr.map(|a| a.ip()),
        shutdown: state.shutdown.clone(),
    };
    let max = state.ctx.max_body_bytes;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection.run(socket))
}

struct Connection<A> {
    ctx: Ctx<A>,
    session: Arc<Subscriptions>,
    limiter: Option<Arc<RateLimiter>>,
    ip: Option<IpAddr>,
    shutdown: watch::Receiver<bool>,
}

/// Resolves once the server shuts down; never if the shutdown sender is gone without asking
/// (the router was built without `serve`). Cancel-safe.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The next event, or never once the node's channel is closed. Cancel-safe.
async fn next_event(
    events: &mut Option<broadcast::Receiver<NodeEvent>>,
) -> Result<NodeEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends a text frame; `false` if the client is gone or too slow to take it.
async fn send(socket: &mut WebSocket, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

impl<A: NodeApi> Connection<A> {
    async fn run(mut self, mut socket: WebSocket) {
        let _open = self.ctx.metrics.ws_connection();
        let mut events = Some(self.ctx.api.subscribe());
        let mut calls: JoinSet<Option<String>> = JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown_requested(&mut self.shutdown) => {
                    let close = Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: "server shutting down".into(),
                    }));
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(close)).await;
                    break;
                }
                Some(done) = calls.join_next() => match done {
                    Ok(Some(text)) => {
                        if !send(&mut socket, text).await {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(component = "rpc", error = %e, "websocket call task failed"),
                },
                incoming = socket.recv(), if calls.len() < MAX_CALLS_IN_FLIGHT => match incoming {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(e)) => {
                        debug!(component = "rpc", error = %e, "websocket closed by error");
                        break;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(message)) => {
                        if !self.on_message(&mut socket, &mut calls, message).await {
                            break;
                        }
                    }
                },
                event = next_event(&mut events) => match event {
                    Ok(event) => {
                        if !self.push(&mut socket, &event).await {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        if !self.push_lagged(&mut socket, missed).await {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => events = None,
                },
            }
        }
        // Dropping `calls` aborts whatever is still running for this connection.
    }

    /// Starts answering one message in its own task, unless the client is over its rate.
    async fn on_message(
        &self,
        socket: &mut WebSocket,
        calls: &mut JoinSet<Option<String>>,
        message: Message,
    ) -> bool {
        if let Some(limiter) = &self.limiter {
            if let Err(wait) = limiter.check(self.ip) {
                self.ctx
                    .metrics
                    .record_failure(jsonrpc::codes::RATE_LIMITED);
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                return send(socket, error_text(RpcError::rate_limited(secs))).await;
            }
        }
        let data = message.into_data();
        let ctx = self.ctx.clone();
        calls.spawn(async move { jsonrpc::handle_message(&ctx, &data).await });
        true
    }

    /// Sends `event` to each subscription of its topic.
    async fn push(&self, socket: &mut WebSocket, event: &NodeEvent) -> bool {
        let ids = self.session.ids_for(event.topic());
        if ids.is_empty() {
            return true;
        }
        // Serialised once for all of this connection's subscriptions to the topic.
        let result = match serde_json::value::to_raw_value(event) {
            Ok(v) => v,
            Err(e) => {
                warn!(component = "rpc", error = %e, "event not serialisable");
                return true;
            }
        };
        for id in ids {
            if !send(socket, notification(&id, Ok(&result))).await {
                return false;
            }
        }
        true
    }

    /// Tells every subscription that this connection fell behind and `missed` events are lost.
    async fn push_lagged(&self, socket: &mut WebSocket, missed: u64) -> bool {
        let error = RpcError {
            data: Some(json!({"reason": "lagged", "missed": missed})),
            ..RpcError::new(
                jsonrpc::codes::UNAVAILABLE,
                format!("this connection fell behind and missed {missed} events"),
            )
        };
        for id in self.session.all_ids() {
            if !send(socket, notification(&id, Err(&error))).await {
                return false;
            }
        }
        true
    }
}
