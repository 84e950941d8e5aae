//! The router (every route and layer) and the server loop with graceful shutdown.

use crate::admin::{self, AdminToken};
use crate::config::RpcConfig;
use crate::connections::{LimitedListener, LimitedStream};
use crate::envelope::error_text;
use crate::jsonrpc::{self, codes, RpcError};
use crate::methods::Ctx;
use crate::metrics::RpcMetrics;
use crate::rate_limit::{self, RateLimit, RateLimiter};
use crate::{respond, rest, ws, NodeApi};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::info;

/// How long `serve` waits, after shutdown, for WebSocket connections to say goodbye.
const WS_DRAIN: Duration = Duration::from_secs(5);

/// What every handler shares. Cheap to clone (handles).
pub(crate) struct AppState<A> {
    pub ctx: Ctx<A>,
    /// `None` when the rate limit is off.
    pub limiter: Option<Arc<RateLimiter>>,
    /// `None` when no admin token is configured (the admin routes are then absent too).
    pub admin: Option<AdminToken>,
    pub max_ws_subscriptions: usize,
    /// Turns `true` when the server shuts down: WebSocket connections close on it.
    pub shutdown: watch::Receiver<bool>,
}

impl<A> Clone for AppState<A> {
    fn clone(&self) -> Self {
        AppState {
            ctx: self.ctx.clone(),
            limiter: self.limiter.clone(),
            admin: self.admin.clone(),
            max_ws_subscriptions: self.max_ws_subscriptions,
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Every route of the server, with its layers: CORS (outermost, when configured), the per-IP
/// rate limit (when `rate_per_ip > 0`), and the body limit. `config` should have passed
/// [`RpcConfig::validate`]; `serve` checks it.
///
/// The rate limit keys on the client address from axum's connect info: serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()` (as [`serve`] does), or add
/// `MockConnectInfo` in tests; without either, all clients share one bucket.
pub fn router<A: NodeApi>(api: Arc<A>, config: &RpcConfig, metrics: RpcMetrics) -> Router {
    // Nobody will ever ask this router to shut down: the sender goes, and WebSocket
    // connections read that as "never".
    let (_never, shutdown) = watch::channel(false);
    build(api, config, metrics, shutdown)
}

fn build<A: NodeApi>(
    api: Arc<A>,
    config: &RpcConfig,
    metrics: RpcMetrics,
    shutdown: watch::Receiver<bool>,
) -> Router {
    let limiter = RateLimiter::new(config.rate_per_ip, config.rate_burst).map(Arc::new);
    let state = AppState {
        ctx: Ctx {
            api,
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            max_batch: config.max_batch,
            session: None,
        },
        limiter: limiter.clone(),
        admin: config.admin_token.as_deref().map(AdminToken::new),
        max_ws_subscriptions: config.max_ws_subscriptions,
        shutdown,
    };
    let mut routes = Router::new()
        .route("/", post(jsonrpc_http::<A>))
        .route("/rpc", post(jsonrpc_http::<A>))
        .route("/ws", get(ws::handler::<A>))
        .merge(rest::routes::<A>());
    if state.admin.is_some() {
        routes = routes.merge(admin::routes::<A>());
    }
    let mut app = routes
        .fallback(no_route)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    if let Some(limiter) = limiter {
        app = app.layer(axum::middleware::from_fn_with_state(
            RateLimit { limiter, metrics },
            rate_limit::limit,
        ));
    }
    match cors(&config.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// The CORS layer for `origins` (`None` = no CORS headers). Browsers may `GET` and `POST`
/// JSON; the `Authorization` header is not allowed, so admin calls cannot come from a page.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE]);
    if origins.iter().any(|o| o == "*") {
        return Some(layer.allow_origin(Any));
    }
    // Validation already refused origins that are not valid header values.
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(layer.allow_origin(AllowOrigin::list(list)))
}

/// `POST /` and `POST /rpc`: one JSON-RPC message. 200 with the answer, 204 when there is
/// nothing to answer (notifications only), 413 with a JSON-RPC error for an oversized body.
async fn jsonrpc_http<A: NodeApi>(
    State(s): State<AppState<A>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let (status, error) = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    RpcError::body_too_large(s.ctx.max_body_bytes),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    RpcError::invalid_request(format!("could not read the body: {rejection}")),
                )
            };
            s.ctx.metrics.record_failure(codes::INVALID_REQUEST);
            return respond::text_json(status, error_text(error));
        }
    };
    match jsonrpc::handle_message(&s.ctx, &body).await {
        Some(text) => respond::text_json(StatusCode::OK, text),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Any other path: 404 with a JSON error object.
async fn no_route(method: Method, uri: Uri) -> Response {
    let error = RpcError::new(
        codes::METHOD_NOT_FOUND,
        format!("no route for {method} {}", jsonrpc::truncated(uri.path())),
    );
    respond::json(StatusCode::NOT_FOUND, &error)
}

/// Serves the RPC on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish, closes WebSocket connections (waiting up to a few seconds for
/// them), and returns. At most `config.max_connections` connections are served at once.
///
/// The node registers `metrics` into its registry before calling this, so that
/// [`NodeApi::metrics_text`] (served at `/metrics`) includes them.
pub async fn serve<A: NodeApi>(
    listener: TcpListener,
    api: Arc<A>,
    config: RpcConfig,
    metrics: RpcMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (stop, stopped) = watch::channel(false);
    let app = build(api, &config, metrics, stopped);
    let local = listener.local_addr()?;
    info!(component = "rpc", addr = %local, "rpc listening");
    let listener =
        LimitedListener::new(listener, config.max_connections).tap_io(LimitedStream::set_nodelay);
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.send_replace(true);
        }
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .await?;
    // HTTP connections are done; WebSocket tasks (detached from hyper on upgrade) each hold a
    // receiver until they have sent their close frame.
    let _ = tokio::time::timeout(WS_DRAIN, stop.closed()).await;
    info!(component = "rpc", addr = %local, "rpc stopped");
    Ok(())
}

/// Serves only `GET /metrics` on `listener`: the optional `metrics_port` (SPEC §8), so a
/// Prometheus scraper needs no access to the RPC. No limits beyond a small connection cap: it
/// answers one cheap, fixed route.
pub async fn serve_metrics<A: NodeApi>(
    listener: TcpListener,
    api: Arc<A>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let api = api.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        axum::http::HeaderValue::from_static(crate::rest::OPENMETRICS),
                    )],
                    api.metrics_text(),
                )
            }
        }),
    );
    let local = listener.local_addr()?;
    info!(component = "rpc", addr = %local, "metrics listening");
    let listener = LimitedListener::new(listener, METRICS_CONNECTIONS);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Scrapers open one or two connections; a few more cover a second scraper and curl.
const METRICS_CONNECTIONS: usize = 8;
