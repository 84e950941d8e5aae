//! Admin routes: `POST /admin/mintFaucet`, `/admin/peers/add`, `/admin/paramSet`.
//!
//! They exist only when an admin token is configured (otherwise 404, as any unknown path), and
//! every call must carry `Authorization: Bearer <token>`. The token is kept only as its SHA-256
//! and compared in constant time, so neither timing nor a memory dump of the state shows it;
//! it is never logged.

use crate::envelope::{to_answer, Answer};
use crate::jsonrpc::RpcError;
use crate::methods;
use crate::params::Params;
use crate::respond;
use crate::rest::body_object;
use crate::server::AppState;
use crate::NodeApi;
use aitbc_chain::{Address, Hash};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use std::time::Instant;
use tracing::info;

/// The configured admin token, as its SHA-256.
#[derive(Clone)]
pub(crate) struct AdminToken(Hash);

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Hash::of(token.as_bytes()))
    }

    /// Compares digests in constant time: how long it takes says nothing about how much of a
    /// guess was right (and hashing first hides the token's length too).
    fn matches(&self, given: &str) -> bool {
        let given = Hash::of(given.as_bytes());
        let expected = self.0.as_bytes();
        let diff = expected
            .iter()
            .zip(given.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    fn authorizes(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| self.matches(token.trim()))
    }
}

pub(crate) fn routes<A: NodeApi>() -> Router<AppState<A>> {
    Router::new()
        .route("/admin/mintFaucet", post(mint_faucet::<A>))
        .route("/admin/peers/add", post(add_peer::<A>))
        .route("/admin/paramSet", post(param_set::<A>))
}

/// Checks the token, then reads the body's named params.
fn admin_params<A>(
    s: &AppState<A>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    names: &'static [&'static str],
) -> Result<Params, RpcError> {
    let authorized = s.admin.as_ref().is_some_and(|t| t.authorizes(headers));
    if !authorized {
        return Err(RpcError::unauthorized());
    }
    Params::new(Some(body_object(body, s.ctx.max_body_bytes)?), names)
}

/// Records the call, logs what an operator did (never the token), and answers REST-style.
fn answer(
    metrics: &crate::RpcMetrics,
    label: &'static str,
    started: Instant,
    result: Result<Answer, RpcError>,
) -> Response {
    methods::finish(metrics, label, started, &result);
    if result.is_ok() {
        info!(component = "rpc", event = label, "admin call done");
    }
    respond::rest(result)
}

/// `{address, amount}`: a transfer from the genesis faucet account.
async fn mint_faucet<A: NodeApi>(
    State(s): State<AppState<A>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let p = admin_params(&s, &headers, body, &["address", "amount"])?;
        let address: Address = p.required("address")?;
        let amount: u64 = p.required("amount")?;
        if s.ctx.api.genesis().faucet.is_none() {
            return Err(RpcError::from(crate::ApiError {
                reason: Some("no_faucet".into()),
                ..crate::ApiError::not_found("this chain's genesis names no faucet account")
            }));
        }
        to_answer(s.ctx.api.admin_mint_faucet(address, amount).await?)
    }
    .await;
    answer(&s.ctx.metrics, "admin_mintFaucet", started, result)
}

/// `{multiaddr}`: dial a peer.
async fn add_peer<A: NodeApi>(
    State(s): State<AppState<A>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let p = admin_params(&s, &headers, body, &["multiaddr"])?;
        let multiaddr: String = p.required("multiaddr")?;
        s.ctx.api.admin_add_peer(multiaddr).await?;
        to_answer(true)
    }
    .await;
    answer(&s.ctx.metrics, "admin_addPeer", started, result)
}

/// `{key, value}`: a `ParamUpdate` tx signed with the node's authority key.
async fn param_set<A: NodeApi>(
    State(s): State<AppState<A>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let p = admin_params(&s, &headers, body, &["key", "value"])?;
        let key: String = p.required("key")?;
        let value: u64 = p.required("value")?;
        to_answer(s.ctx.api.admin_param_set(key, value).await?)
    }
    .await;
    answer(&s.ctx.metrics, "admin_paramSet", started, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_check() {
        let t = AdminToken::new("0123456789abcdef");
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcdeF"));
        assert!(!t.matches(""));
        let mut h = HeaderMap::new();
        assert!(!t.authorizes(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert!(t.authorizes(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic 0123456789abcdef"),
        );
        assert!(!t.authorizes(&h));
    }
}
