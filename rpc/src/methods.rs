//! The method table: each JSON-RPC method name, its parameters, and the [`NodeApi`] call that
//! answers it. HTTP, WebSocket and the REST aliases all come through here, so a method behaves
//! the same on every route.

use crate::api::{BlockHashesInfo, BlockRef, NodeApi, Wait};
use crate::envelope::{to_answer, Answer};
use crate::jsonrpc::{codes, RpcError};
use crate::metrics::RpcMetrics;
use crate::params::Params;
use crate::subscriptions::Subscriptions;
use aitbc_chain::{Address, Hash, Tx, TxKind};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

/// Every JSON-RPC method, as clients spell it.
pub(crate) const METHODS: &[&str] = &[
    "sendTx",
    "sendRawTx",
    "submitReceipt",
    "getTx",
    "getBlock",
    "getHead",
    "getHeader",
    "getCommit",
    "getBalance",
    "getAccountProof",
    "estimateFee",
    "getValidators",
    "getPeers",
    "getMempool",
    "getSupply",
    "getGenesis",
    "consensusState",
    "status",
    "syncStatus",
    "subscribe",
    "unsubscribe",
];

/// Metric labels of the routes that are not JSON-RPC methods.
pub(crate) const ROUTE_LABELS: &[&str] = &[
    "health",
    "metrics",
    "admin_mintFaucet",
    "admin_addPeer",
    "admin_paramSet",
];

/// The `method` metric label for `name`: the name itself when it is one we serve, else
/// `"unknown"`, so the label set stays bounded whatever clients send.
pub(crate) fn metric_label(name: &str) -> &'static str {
    METHODS
        .iter()
        .chain(ROUTE_LABELS)
        .find(|m| **m == name)
        .copied()
        .unwrap_or("unknown")
}

/// What a call needs besides its parameters. Cheap to clone (shared handles).
pub(crate) struct Ctx<A> {
    pub api: Arc<A>,
    pub metrics: RpcMetrics,
    /// Also the bound on decoding a `sendRawTx`: the node checks the chain's `max_tx_bytes`
    /// itself, which a `ParamUpdate` can change, so the server only keeps decoding bounded.
    pub max_body_bytes: usize,
    pub max_batch: usize,
    /// The WebSocket connection's subscriptions; `None` over HTTP, where `subscribe` is not
    /// offered.
    pub session: Option<Arc<Subscriptions>>,
}

impl<A> Clone for Ctx<A> {
    fn clone(&self) -> Self {
        Ctx {
            api: Arc::clone(&self.api),
            metrics: self.metrics.clone(),
            max_body_bytes: self.max_body_bytes,
            max_batch: self.max_batch,
            session: self.session.clone(),
        }
    }
}

/// Records a finished call: the request counter, the latency histogram, a debug line, and a
/// warning for internal errors (the node failed, not the client).
pub(crate) fn finish<T>(
    metrics: &RpcMetrics,
    label: &'static str,
    started: Instant,
    result: &Result<T, RpcError>,
) {
    let took = started.elapsed();
    let code = result.as_ref().err().map(|e| e.code);
    metrics.observe(label, code.map_or(Ok(()), Err), took);
    let latency_ms = took.as_secs_f64() * 1e3;
    debug!(
        component = "rpc",
        method = label,
        latency_ms,
        code,
        "rpc call"
    );
    if let Err(e) = result {
        if e.code == codes::INTERNAL_ERROR {
            warn!(component = "rpc", method = label, error = %e.message, "rpc internal error");
        }
    }
}

/// [`call`] with metrics and logging.
pub(crate) async fn call_observed<A: NodeApi>(
    ctx: &Ctx<A>,
    method: &str,
    params: Option<Value>,
) -> Result<Answer, RpcError> {
    let started = Instant::now();
    let result = call(ctx, method, params).await;
    finish(&ctx.metrics, metric_label(method), started, &result);
    result
}

fn found<T>(value: Option<T>, what: impl FnOnce() -> String) -> Result<T, RpcError> {
    value.ok_or_else(|| crate::ApiError::not_found(format!("{} not found", what())).into())
}

/// Largest `limit` of `getMempool`.
pub(crate) const MAX_MEMPOOL_LIMIT: u64 = 1_000;
const DEFAULT_MEMPOOL_LIMIT: u64 = 100;

/// Runs one method. Unknown names answer -32601; bad parameters -32602 naming the parameter.
/// The answer comes back already serialised (see [`crate::envelope`]), so a big block is never
/// held as a `Value` tree.
pub(crate) async fn call<A: NodeApi>(
    ctx: &Ctx<A>,
    method: &str,
    raw: Option<Value>,
) -> Result<Answer, RpcError> {
    let api = &*ctx.api;
    match method {
        "sendTx" => {
            let p = Params::new(raw, &["tx", "wait"])?;
            let tx: Tx = p.required("tx")?;
            to_answer(api.send_tx(tx, wait(&p)?).await?)
        }
        "sendRawTx" => {
            let p = Params::new(raw, &["tx", "wait"])?;
            let tx = decode_raw_tx(p.required("tx")?, ctx.max_body_bytes)?;
            to_answer(api.send_tx(tx, wait(&p)?).await?)
        }
        "submitReceipt" => {
            let p = Params::new(raw, &["tx", "wait"])?;
            let tx: Tx = p.required("tx")?;
            if !matches!(tx.kind, TxKind::ReceiptClaim { .. }) {
                return Err(RpcError::invalid_params(format!(
                    "param \"tx\": submitReceipt takes a receipt_claim tx, got {}",
                    tx.kind.name()
                )));
            }
            to_answer(api.send_tx(tx, wait(&p)?).await?)
        }
        "getTx" => {
            let p = Params::new(raw, &["hash"])?;
            let hash: Hash = p.required("hash")?;
            to_answer(found(api.get_tx(hash)?, || format!("tx {hash}"))?)
        }
        "getBlock" => {
            let (at, txs) = block_query(raw)?;
            let what = || match at {
                BlockRef::Height(h) => format!("block at height {h}"),
                BlockRef::Hash(h) => format!("block {h}"),
            };
            let info = found(api.get_block(at)?, what)?;
            match txs {
                TxView::Full => to_answer(info),
                TxView::Hashes => to_answer(BlockHashesInfo::from(info)),
            }
        }
        "getHead" => {
            Params::new(raw, &[])?;
            to_answer(found(api.get_header(None)?, || "head header".into())?)
        }
        "getHeader" => {
            let p = Params::new(raw, &["height"])?;
            let height: Option<u64> = p.optional("height")?;
            let what = || match height {
                Some(h) => format!("header at height {h}"),
                None => "head header".into(),
            };
            to_answer(found(api.get_header(height)?, what)?)
        }
        "getCommit" => {
            let p = Params::new(raw, &["height"])?;
            let height: u64 = p.required("height")?;
            to_answer(found(api.get_commit(height)?, || {
                format!("commit certificate for height {height}")
            })?)
        }
        "getBalance" => {
            let p = Params::new(raw, &["address"])?;
            let address: Address = p.required("address")?;
            to_answer(api.get_account(address).await?)
        }
        "getAccountProof" => {
            let p = Params::new(raw, &["address"])?;
            let address: Address = p.required("address")?;
            to_answer(api.get_account_proof(address)?)
        }
        "estimateFee" => to_answer(api.estimate_fee(fee_bytes(raw)?)?),
        "getValidators" => {
            Params::new(raw, &[])?;
            to_answer(api.validators()?)
        }
        "getPeers" => {
            Params::new(raw, &[])?;
            to_answer(api.peers().await?)
        }
        "getMempool" => {
            let p = Params::new(raw, &["limit"])?;
            let limit: u64 = p.optional("limit")?.unwrap_or(DEFAULT_MEMPOOL_LIMIT);
            if limit > MAX_MEMPOOL_LIMIT {
                return Err(RpcError::invalid_params(format!(
                    "param \"limit\": at most {MAX_MEMPOOL_LIMIT}, got {limit}"
                )));
            }
            // Bounded by MAX_MEMPOOL_LIMIT just above, so the cast cannot truncate.
            to_answer(api.mempool(limit as usize)?)
        }
        "getSupply" => {
            Params::new(raw, &[])?;
            to_answer(api.supply()?)
        }
        "getGenesis" => {
            Params::new(raw, &[])?;
            to_answer(api.genesis())
        }
        "consensusState" => {
            Params::new(raw, &[])?;
            to_answer(api.consensus_state()?)
        }
        "status" => {
            Params::new(raw, &[])?;
            to_answer(api.status()?)
        }
        "syncStatus" => {
            Params::new(raw, &[])?;
            to_answer(api.sync_status()?)
        }
        "subscribe" | "unsubscribe" => {
            let Some(session) = &ctx.session else {
                return Err(RpcError::new(
                    codes::METHOD_NOT_FOUND,
                    format!("method {method:?} is offered on the WebSocket at /ws only"),
                ));
            };
            if method == "subscribe" {
                let p = Params::new(raw, &["topic"])?;
                to_answer(session.subscribe(p.required("topic")?)?)
            } else {
                let p = Params::new(raw, &["subscription"])?;
                to_answer(session.unsubscribe(p.required("subscription")?))
            }
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn wait(p: &Params) -> Result<Wait, RpcError> {
    Ok(p.optional("wait")?.unwrap_or_default())
}

/// How `getBlock` gives the block's txs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TxView {
    #[default]
    Full,
    Hashes,
}

/// `getBlock`'s params: the block (see [`block_ref`]) and `txs`: `"full"` (the default) or
/// `"hashes"`.
fn block_query(raw: Option<Value>) -> Result<(BlockRef, TxView), RpcError> {
    let p = Params::new(raw, &["height", "hash", "txs"])?;
    Ok((block_ref(&p)?, p.optional("txs")?.unwrap_or_default()))
}

/// `{height}` or `{hash}`, or one positional value: a number is a height, a string a hash.
fn block_ref(p: &Params) -> Result<BlockRef, RpcError> {
    if let Some(v) = p.single_positional() {
        return match v {
            Value::Number(_) => Ok(BlockRef::Height(p.required("height")?)),
            Value::String(_) => Hash::deserialize(v)
                .map(BlockRef::Hash)
                .map_err(|e| RpcError::invalid_params(format!("param \"hash\": {e}"))),
            _ => Err(RpcError::invalid_params(
                "param \"height\" or \"hash\": expected a height (number) or a 0x block hash",
            )),
        };
    }
    match (p.optional::<u64>("height")?, p.optional::<Hash>("hash")?) {
        (Some(h), None) => Ok(BlockRef::Height(h)),
        (None, Some(h)) => Ok(BlockRef::Hash(h)),
        (None, None) => Err(RpcError::invalid_params(
            "missing param \"height\" or \"hash\"",
        )),
        (Some(_), Some(_)) => Err(RpcError::invalid_params(
            "give param \"height\" or \"hash\", not both",
        )),
    }
}

/// The encoded size `estimateFee` prices: of `{tx}`, or `{bytes}` given outright (a single
/// positional number is taken as bytes).
fn fee_bytes(raw: Option<Value>) -> Result<u64, RpcError> {
    let p = Params::new(raw, &["tx", "bytes"])?;
    if let Some(v @ Value::Number(_)) = p.single_positional() {
        return u64::deserialize(v)
            .map_err(|e| RpcError::invalid_params(format!("param \"bytes\": {e}")));
    }
    match (p.optional::<Tx>("tx")?, p.optional::<u64>("bytes")?) {
        (Some(tx), None) => Ok(tx.encoded_len() as u64),
        (None, Some(bytes)) => Ok(bytes),
        (None, None) => Err(RpcError::invalid_params(
            "missing param \"tx\" or \"bytes\"",
        )),
        (Some(_), Some(_)) => Err(RpcError::invalid_params(
            "give param \"tx\" or \"bytes\", not both",
        )),
    }
}

/// Decodes `sendRawTx`'s `0x` hex of a tx's canonical bytes, bounded by `max` bytes.
fn decode_raw_tx(hex_tx: &str, max: usize) -> Result<Tx, RpcError> {
    let digits = hex_tx.strip_prefix("0x").ok_or_else(|| {
        RpcError::invalid_params(
            "param \"tx\": expected 0x-prefixed hex of the tx's canonical bytes",
        )
    })?;
    if digits.len() / 2 > max {
        return Err(RpcError::invalid_params(format!(
            "param \"tx\": {} bytes, over the limit of {max}",
            digits.len() / 2
        )));
    }
    let bytes = hex::decode(digits)
        .map_err(|e| RpcError::invalid_params(format!("param \"tx\": invalid hex: {e}")))?;
    Tx::decode(&bytes, max).map_err(|e| RpcError::invalid_params(format!("param \"tx\": {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitbc_chain::SecretKey;
    use serde_json::json;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(metric_label("getHead"), "getHead");
        assert_eq!(metric_label("health"), "health");
        assert_eq!(metric_label("drop table"), "unknown");
        assert_eq!(metric_label(""), "unknown");
    }

    #[test]
    fn block_refs() {
        let h = Hash::of(b"x");
        let at = |raw| block_query(Some(raw)).map(|(at, _)| at);
        assert_eq!(at(json!([7])), Ok(BlockRef::Height(7)));
        assert_eq!(at(json!([h.to_string()])), Ok(BlockRef::Hash(h)));
        assert_eq!(at(json!({"hash": h.to_string()})), Ok(BlockRef::Hash(h)));
        assert_eq!(at(json!({"height": 3})), Ok(BlockRef::Height(3)));
        assert_eq!(
            block_query(Some(json!({"height": 3}))).map(|(_, v)| v),
            Ok(TxView::Full)
        );
        assert_eq!(
            block_query(Some(json!({"height": 3, "txs": "hashes"}))),
            Ok((BlockRef::Height(3), TxView::Hashes))
        );
        assert_eq!(
            block_query(Some(json!({"hash": h.to_string(), "txs": "full"}))),
            Ok((BlockRef::Hash(h), TxView::Full))
        );
        for bad in [
            json!({}),
            json!({"height": 1, "hash": h.to_string()}),
            json!({"height": 1, "txs": "some"}),
            json!({"height": 1, "txs": true}),
            json!([true]),
            json!(["0x12"]),
            json!([-1]),
        ] {
            let e = block_query(Some(bad.clone())).expect_err("bad");
            assert_eq!(e.code, -32602, "{bad}");
        }
    }

    #[test]
    fn raw_tx_decoding_is_bounded_and_named() {
        let tx = Tx::signed(
            "ait-test",
            TxKind::Stake { amount: 1 },
            &SecretKey::from_seed([1; 32]),
            1,
            10,
        );
        let hex_tx = format!("0x{}", hex::encode(tx.encode()));
        assert_eq!(decode_raw_tx(&hex_tx, 1 << 16), Ok(tx.clone()));
        for (input, needle) in [
            (hex_tx.trim_start_matches("0x").to_string(), "0x-prefixed"),
            ("0xzz".to_string(), "invalid hex"),
            (format!("{hex_tx}00"), "trailing"),
            ("0x0102".to_string(), "malformed"),
        ] {
            let e = decode_raw_tx(&input, 1 << 16).expect_err(needle);
            assert!(e.message.contains(needle), "{}", e.message);
            assert!(e.message.contains("\"tx\""), "{}", e.message);
        }
        let e = decode_raw_tx(&hex_tx, 16).expect_err("too big");
        assert!(e.message.contains("over the limit"), "{}", e.message);
    }

    #[test]
    fn fee_bytes_from_tx_or_count() {
        let tx = Tx::signed(
            "ait-test",
            TxKind::Stake { amount: 1 },
            &SecretKey::from_seed([1; 32]),
            1,
            10,
        );
        let len = tx.encoded_len() as u64;
        assert_eq!(fee_bytes(Some(json!({"tx": tx}))), Ok(len));
        assert_eq!(fee_bytes(Some(json!({"bytes": 10}))), Ok(10));
        assert_eq!(fee_bytes(Some(json!([250]))), Ok(250));
        assert!(fee_bytes(None).is_err());
        assert!(fee_bytes(Some(json!({"bytes": 1, "tx": tx}))).is_err());
    }
}
