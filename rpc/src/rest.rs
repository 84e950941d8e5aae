//! REST aliases (SPEC §7, from the original AITBC API documents): plain HTTP routes onto the
//! same methods as JSON-RPC. Answers are the bare result with 200, or the error object with the
//! HTTP status that fits it (see [`respond::status_of`]).

use crate::jsonrpc::RpcError;
use crate::methods::{self, call_observed};
use crate::respond;
use crate::server::AppState;
use crate::NodeApi;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde_json::{json, Value};
use std::time::Instant;

/// Content type of the OpenMetrics text format.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) fn routes<A: NodeApi>() -> Router<AppState<A>> {
    Router::new()
        .route("/rpc/getHead", no_params::<A>("getHead"))
        .route("/rpc/get_head", no_params::<A>("getHead"))
        .route(
            "/rpc/getBlock/{block}",
            from_path::<A>("getBlock", block_param),
        )
        .route(
            "/rpc/get_block/{block}",
            from_path::<A>("getBlock", block_param),
        )
        .route(
            "/rpc/getTx/{hash}",
            from_path::<A>("getTx", |s| json!({ "hash": s })),
        )
        .route(
            "/rpc/getBalance/{address}",
            from_path::<A>("getBalance", |s| json!({ "address": s })),
        )
        .route(
            "/rpc/get_balance/{address}",
            from_path::<A>("getBalance", |s| json!({ "address": s })),
        )
        .route("/rpc/sendTx", from_body::<A>("sendTx"))
        .route("/rpc/send_tx", from_body::<A>("sendTx"))
        .route("/rpc/submitReceipt", from_body::<A>("submitReceipt"))
        .route("/rpc/estimateFee", from_body::<A>("estimateFee"))
        .route("/p2p/peers", no_params::<A>("getPeers"))
        .route("/sync_status", no_params::<A>("syncStatus"))
        .route("/health", get(health::<A>))
        .route("/metrics", get(metrics::<A>))
}

/// `GET`: the method without params.
fn no_params<A: NodeApi>(method: &'static str) -> MethodRouter<AppState<A>> {
    get(move |State(s): State<AppState<A>>| async move {
        respond::rest(call_observed(&s.ctx, method, None).await)
    })
}

/// `GET …/{x}`: the method with params made from the path segment.
fn from_path<A: NodeApi>(
    method: &'static str,
    params: fn(String) -> Value,
) -> MethodRouter<AppState<A>> {
    get(
        move |State(s): State<AppState<A>>, path: Result<Path<String>, PathRejection>| async move {
            match path {
                Ok(Path(segment)) => {
                    respond::rest(call_observed(&s.ctx, method, Some(params(segment))).await)
                }
                Err(rejection) => {
                    let e = RpcError::invalid_params(format!("path: {rejection}"));
                    s.ctx.metrics.record_failure(e.code);
                    respond::rest(Err(e))
                }
            }
        },
    )
}

/// `getBlock/{heightOrHash}`: digits are a height, anything else is read as a hash.
fn block_param(segment: String) -> Value {
    match segment.parse::<u64>() {
        Ok(height) => json!([height]),
        Err(_) => json!([segment]),
    }
}

/// `POST`: the method with the JSON body as its params object.
fn from_body<A: NodeApi>(method: &'static str) -> MethodRouter<AppState<A>> {
    post(
        move |State(s): State<AppState<A>>, body: Result<Bytes, BytesRejection>| async move {
            match body_object(body, s.ctx.max_body_bytes) {
                Ok(params) => respond::rest(call_observed(&s.ctx, method, Some(params)).await),
                Err(e) => {
                    s.ctx.metrics.record_failure(e.code);
                    respond::rest(Err(e))
                }
            }
        },
    )
}

/// A request body that must be a JSON object (the params of a REST or admin call).
pub(crate) fn body_object(
    body: Result<Bytes, BytesRejection>,
    max_body_bytes: usize,
) -> Result<Value, RpcError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RpcError::body_too_large(max_body_bytes)
        } else {
            RpcError::invalid_request(format!("could not read the body: {rejection}"))
        }
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(RpcError::parse_error)?;
    if !value.is_object() {
        return Err(RpcError::invalid_params(
            "the body must be a JSON object of named params",
        ));
    }
    Ok(value)
}

/// `GET /health`: 200 `{"status":"ok"}` while the node can serve, else 503 with the error.
async fn health<A: NodeApi>(State(s): State<AppState<A>>) -> Response {
    let started = Instant::now();
    let result = s.ctx.api.health().map_err(RpcError::from);
    methods::finish(&s.ctx.metrics, "health", started, &result);
    match result {
        Ok(()) => respond::json(StatusCode::OK, &json!({"status": "ok"})),
        Err(e) => respond::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": e}),
        ),
    }
}

/// `GET /metrics`: the node's registry (which holds the RPC's metrics too) in OpenMetrics text.
async fn metrics<A: NodeApi>(State(s): State<AppState<A>>) -> Response {
    let started = Instant::now();
    methods::finish::<()>(&s.ctx.metrics, "metrics", started, &Ok(()));
    let text = s.ctx.api.metrics_text();
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS))],
        text,
    )
        .into_response()
}
