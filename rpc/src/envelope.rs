//! What the server sends: JSON-RPC responses, batches and subscription notifications, written
//! straight to text.
//!
//! Answers are serialised once, from the typed value to text: a method's result becomes an
//! [`Answer`] (its JSON text) and the envelope around it is a small struct that copies that text
//! in verbatim. Going through a `serde_json::Value` tree instead cost, for a `getBlock` of 2,400
//! txs, some 50,000 small allocations (several MiB of heap at once) and a second pass to text.

use crate::jsonrpc::RpcError;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A method's result, already serialised to JSON text.
pub(crate) type Answer = Box<RawValue>;

/// Sent if a message cannot be serialised. Never expected: an envelope holds only an id (a
/// string, number or null), text that is already JSON, and an error object.
const UNSERIALISABLE: &str =
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"response not serialisable"}}"#;

/// Room for an envelope's own fields around the text it wraps.
const ENVELOPE_BYTES: usize = 128;

/// `value` as an answer. A value that does not serialise (a map with non-string keys, a failing
/// `Serialize`) is an internal error of the call, answered with the request's id.
pub(crate) fn to_answer<T: Serialize>(value: T) -> Result<Answer, RpcError> {
    serde_json::value::to_raw_value(&value)
        .map_err(|e| RpcError::internal(format!("answer not serialisable: {e}")))
}

/// `{"jsonrpc":"2.0","id":…,"result"|"error":…}`.
#[derive(Serialize)]
struct Response<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RpcError>,
}

/// The text of the response to the call with `id`.
pub(crate) fn response(id: &Value, result: Result<&RawValue, &RpcError>) -> String {
    let size = result.map_or(0, |r| r.get().len());
    write(
        &Response {
            jsonrpc: "2.0",
            id,
            result: result.ok(),
            error: result.err(),
        },
        size,
    )
}

/// The text of an error response with a null id (for errors found before any call was read).
pub(crate) fn error_text(error: RpcError) -> String {
    response(&Value::Null, Err(&error))
}

/// A batch's answer: its responses, each already text, as one JSON array.
pub(crate) fn batch(responses: &[String]) -> String {
    let size = responses.iter().map(|r| r.len() + 1).sum::<usize>() + 1;
    let mut text = String::with_capacity(size);
    text.push('[');
    for (i, r) in responses.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(r);
    }
    text.push(']');
    text
}

/// `{"jsonrpc":"2.0","method":"subscription","params":{"subscription":id,"result"|"error":…}}`.
#[derive(Serialize)]
struct Notification<'a> {
    jsonrpc: &'static str,
    method: &'static str,
    params: NotificationParams<'a>,
}

#[derive(Serialize)]
struct NotificationParams<'a> {
    subscription: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RpcError>,
}

/// The text of a WebSocket push to `subscription`: an event, or an error about the
/// subscription.
pub(crate) fn notification(subscription: &str, payload: Result<&RawValue, &RpcError>) -> String {
    let size = payload.map_or(0, |r| r.get().len()) + subscription.len();
    write(
        &Notification {
            jsonrpc: "2.0",
            method: "subscription",
            params: NotificationParams {
                subscription,
                result: payload.ok(),
                error: payload.err(),
            },
        },
        size,
    )
}

/// `message` as text, into a buffer sized for the `size` bytes it wraps plus its own fields (a
/// big answer is then copied once, not regrown through doublings).
fn write<T: Serialize>(message: &T, size: usize) -> String {
    let mut bytes = Vec::with_capacity(size + ENVELOPE_BYTES);
    match serde_json::to_writer(&mut bytes, message) {
        // serde_json writes UTF-8 only, so this check does not fail either.
        Ok(()) => String::from_utf8(bytes).unwrap_or_else(|_| UNSERIALISABLE.to_string()),
        Err(_) => UNSERIALISABLE.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BlockInfo;
    use aitbc_chain::block::{Block, CommitCertificate, CommitSig, Header};
    use aitbc_chain::tx::HashedTx;
    use aitbc_chain::{Address, Hash, SecretKey, Tx, TxKind};
    use serde_json::json;
    use std::collections::BTreeMap;

    /// A `getBlock` answer with `n` transfers and a commit certificate.
    fn big_block(n: usize) -> BlockInfo {
        let keys: Vec<SecretKey> = (0..4u8).map(|i| SecretKey::from_seed([i; 32])).collect();
        let txs = (0..n)
            .map(|i| {
                let to = Address::of(&keys[(i + 1) % 4].public());
                let kind = TxKind::Transfer { to, amount: 1 };
                HashedTx::new(Tx::signed("ait-test", kind, &keys[i % 4], i as u64, 10))
            })
            .collect();
        let h = Hash::of(b"parent");
        let header = Header {
            chain_id: "ait-test".into(),
            height: 7,
            view: 0,
            timestamp_ms: 1_700_000_000_000,
            parent_hash: h,
            proposer: Address::of(&keys[0].public()),
            tx_root: h,
            state_root: h,
            validators_hash: h,
            next_validators_hash: h,
            last_commit_hash: h,
            evidence_hash: h,
        };
        let hash = header.hash();
        let commit = CommitCertificate {
            height: 7,
            view: 0,
            block_hash: hash,
            signatures: keys
                .iter()
                .map(|k| CommitSig {
                    validator: k.public(),
                    sig: k.sign_digest(&hash),
                })
                .collect(),
        };
        BlockInfo {
            hash,
            block: std::sync::Arc::new(Block {
                header,
                txs,
                last_commit: None,
            }),
            commit: Some(commit),
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn a_big_answer_round_trips_through_the_envelope() {
        let info = big_block(300);
        let answer = to_answer(&info).expect("serialisable");
        let text = response(&json!("req-1"), Ok(&answer));
        let v = parse(&text);
        let obj = v.as_object().expect("an object");
        assert_eq!(obj.len(), 3, "{obj:?}");
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], "req-1");
        assert_eq!(v["result"], serde_json::to_value(&info).expect("json"));
        let back: BlockInfo = serde_json::from_value(v["result"].clone()).expect("a BlockInfo");
        assert_eq!(back, info);
    }

    #[test]
    fn errors_carry_the_id_and_no_result() {
        let e = RpcError::invalid_params("param \"x\": bad");
        let v = parse(&response(&json!(42), Err(&e)));
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": 42, "error": {"code": -32602, "message": "param \"x\": bad"}})
        );
        let v = parse(&error_text(RpcError::parse_error("eof")));
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], -32700);
        assert!(v.get("result").is_none());
    }

    #[test]
    fn an_unserialisable_answer_is_an_internal_error() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1);
        let e = to_answer(&m).expect_err("non-string keys");
        assert_eq!(e.code, crate::codes::INTERNAL_ERROR);
        assert!(
            e.message.starts_with("answer not serialisable"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_null_result_is_kept() {
        let answer = to_answer(()).expect("unit");
        let v = parse(&response(&json!(1), Ok(&answer)));
        assert_eq!(v, json!({"jsonrpc": "2.0", "id": 1, "result": null}));
    }

    #[test]
    fn batches_are_arrays_in_order() {
        let one = to_answer(1).expect("1");
        let parts = [
            response(&json!(1), Ok(&one)),
            response(&json!("b"), Err(&RpcError::internal("boom"))),
        ];
        let v = parse(&batch(&parts));
        assert_eq!(
            v,
            json!([
                {"jsonrpc": "2.0", "id": 1, "result": 1},
                {"jsonrpc": "2.0", "id": "b", "error": {"code": -32603, "message": "boom"}}
            ])
        );
        assert_eq!(batch(&parts[..1]), format!("[{}]", parts[0]));
    }

    #[test]
    fn notifications_carry_the_subscription() {
        let event = to_answer(json!({"type": "newTransaction", "hash": "0x00"})).expect("json");
        let v = parse(&notification("sub-1", Ok(&event)));
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "method": "subscription",
                   "params": {"subscription": "sub-1", "result": {"type": "newTransaction", "hash": "0x00"}}})
        );
        let e = RpcError::new(crate::codes::UNAVAILABLE, "fell behind");
        let v = parse(&notification("sub-1", Err(&e)));
        assert_eq!(v["params"]["error"]["code"], -32002);
        assert!(v["params"].get("result").is_none());
    }
}
