//! A JSON-RPC client for the load generator: batches, typed answers, one kept-alive connection.
//!
//! The node's own [`aitbc_node::client::rpc::RpcClient`] sends one call per request and returns
//! untyped JSON, which is right for a command line tool but not for 10,000 tx/s: the node's
//! per-IP rate limit counts HTTP requests, so calls must travel in batches, and a 5 MB block
//! should be parsed once into its typed form rather than through a `Value`. Answers come from a
//! node, i.e. outside input: bodies are read under a size limit and a timeout, and nothing in
//! them is trusted to have the shape it should.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Largest answer read. A full 1 MiB block as JSON (hex doubles the bytes) fits with room.
const MAX_ANSWER_BYTES: u64 = 32 << 20;

/// Why a call (or a whole batch) did not succeed, as a short stable `reason` for the report:
/// the node's `data.reason` when it gives one (`mempool_full`, `rate_limited`, …), otherwise a
/// name for the failure (`transport`, `bad_answer`, `invalid_params`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    pub message: String,
}

impl Refusal {
    fn new(reason: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    fn from_error(e: &ErrorObject) -> Refusal {
        let reason = e
            .data
            .as_ref()
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str)
            // Reasons become JSON keys and table cells: keep them short and printable.
            .filter(|r| r.len() <= 40 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .map(str::to_string)
            .unwrap_or_else(|| code_name(e.code));
        Refusal {
            reason,
            message: e.message.chars().take(200).collect(),
        }
    }

    /// No usable answer arrived (connection failed, garbage, a call skipped in a batch answer):
    /// the call may or may not have been applied. Any other refusal is the node's answer, and
    /// the call was not applied.
    pub fn is_transport(&self) -> bool {
        matches!(
            self.reason.as_str(),
            "transport" | "bad_answer" | "no_answer"
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Refusal {}

fn code_name(code: i64) -> String {
    match code {
        -32700 => "parse_error".into(),
        -32600 => "invalid_request".into(),
        -32601 => "method_not_found".into(),
        -32602 => "invalid_params".into(),
        -32603 => "internal_error".into(),
        -32005 => "rate_limited".into(),
        c => format!("error_{}", c.unsigned_abs()),
    }
}

#[derive(Debug, Deserialize)]
struct ErrorObject {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

/// One JSON-RPC response; `T` is the result's type.
#[derive(Debug, Deserialize)]
struct Response<T> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

fn none<T>() -> Option<T> {
    None
}

/// A batch answer is an array; a batch refused as a whole (rate limit, body too large) is one
/// error object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BatchBody<T> {
    Many(Vec<Response<T>>),
    One(Response<IgnoredAny>),
}

/// One node's JSON-RPC endpoint over one kept-alive HTTP connection (per thread: `Conn` is
/// used by one thread at a time).
pub struct Conn {
    url: String,
    agent: ureq::Agent,
    next_id: u64,
}

impl Conn {
    /// A connection to `url` (`http://127.0.0.1:port`), `timeout` for each whole request.
    pub fn new(url: &str, timeout: Duration) -> Conn {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // JSON-RPC errors (and the rate limiter's 429) carry their reason in the body.
            .http_status_as_error(false)
            // The devnet is on 127.0.0.1: an HTTP_PROXY in the environment must not apply.
            .proxy(None)
            .build();
        Conn {
            url: url.to_string(),
            agent: config.into(),
            next_id: 1,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn post(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| Refusal::new("transport", e.to_string()))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| Refusal::new("transport", e.to_string()))
    }

    /// GETs `path` (e.g. `/metrics`) as text.
    pub fn get_text(&self, path: &str) -> Result<String, Refusal> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(|e| Refusal::new("transport", e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| Refusal::new("transport", e.to_string()))?;
        if status != 200 {
            return Err(Refusal::new(
                "bad_answer",
                format!("HTTP {status} for {path}"),
            ));
        }
        Ok(text)
    }

    /// Calls `method` with `params` and parses its result as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, method: &str, params: Value) -> Result<T, Refusal> {
        let id = self.next_id;
        self.next_id += 1;
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let bytes = self.post(body.to_string().as_bytes())?;
        let response: Response<T> = serde_json::from_slice(&bytes).map_err(|e| {
            Refusal::new(
                "bad_answer",
                format!("{method} answer is not a JSON-RPC response: {e}"),
            )
        })?;
        if let Some(e) = &response.error {
            return Err(Refusal::from_error(e));
        }
        if response.id != Some(Value::from(id)) {
            return Err(Refusal::new(
                "bad_answer",
                format!("{method} answer is not for id {id}"),
            ));
        }
        response
            .result
            .ok_or_else(|| Refusal::new("bad_answer", format!("{method} answer has no result")))
    }

    /// Sends `calls` (each a `(method, params JSON text)`) as one batch and returns one result
    /// per call, in order, parsed as `T` (`IgnoredAny` when only success matters). `Err` when
    /// the batch as a whole failed (not sent, no readable answer, or refused as a whole): then
    /// no call can be assumed applied or not.
    pub fn batch<T: DeserializeOwned>(
        &mut self,
        calls: &[(&str, &str)],
    ) -> Result<Vec<Result<T, Refusal>>, Refusal> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.next_id;
        self.next_id += calls.len() as u64;
        let body = batch_body(first, calls);
        let bytes = self.post(body.as_bytes())?;
        parse_batch(first, calls.len(), &bytes)
    }
}

/// `[{"jsonrpc":"2.0","id":first,"method":…,"params":…}, …]`, built as text: the params are
/// already JSON, and this runs inside the measured window for every transaction.
pub fn batch_body(first: u64, calls: &[(&str, &str)]) -> String {
    let mut body =
        String::with_capacity(calls.iter().map(|(_, p)| p.len() + 64).sum::<usize>() + 2);
    body.push('[');
    for (i, (method, params)) in calls.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"{method}","params":{params}}}"#,
            first + i as u64
        ));
    }
    body.push(']');
    body
}

/// Matches a batch answer to calls `first..first + n` by id (a server may answer in any order).
pub fn parse_batch<T: DeserializeOwned>(
    first: u64,
    n: usize,
    bytes: &[u8],
) -> Result<Vec<Result<T, Refusal>>, Refusal> {
    let body: BatchBody<T> = serde_json::from_slice(bytes).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
            .escape_debug()
            .collect();
        Refusal::new(
            "bad_answer",
            format!("batch answer is not JSON-RPC ({e}): {shown}"),
        )
    })?;
    let answers = match body {
        BatchBody::Many(answers) => answers,
        BatchBody::One(one) => {
            return Err(match &one.error {
                Some(e) => Refusal::from_error(e),
                None => Refusal::new("bad_answer", "a batch was answered with one result"),
            })
        }
    };
    let mut out: Vec<Option<Result<T, Refusal>>> = (0..n).map(|_| None).collect();
    for a in answers {
        let slot =
            a.id.as_ref()
                .and_then(Value::as_u64)
                .and_then(|id| id.checked_sub(first))
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| out.get_mut(i));
        // Answers with an unknown id (or a null one) cannot be attributed and are dropped; the
        // calls they belonged to end up as `no_answer` below.
        if let Some(slot) = slot {
            *slot = Some(match (&a.error, a.result) {
                (Some(e), _) => Err(Refusal::from_error(e)),
                (None, Some(result)) => Ok(result),
                (None, None) => Err(Refusal::new("bad_answer", "neither result nor error")),
            });
        }
    }
    Ok(out
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Err(Refusal::new(
                    "no_answer",
                    "the batch answer skipped this call",
                ))
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_body_is_a_json_rpc_batch() {
        let body = batch_body(7, &[("sendRawTx", r#"{"tx":"0x01"}"#), ("getHead", "{}")]);
        let v: Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(v[0]["id"], 7);
        assert_eq!(v[0]["method"], "sendRawTx");
        assert_eq!(v[0]["params"]["tx"], "0x01");
        assert_eq!(v[1]["id"], 8);
        assert_eq!(v[1]["jsonrpc"], "2.0");
    }

    #[test]
    fn batch_answers_are_matched_by_id() {
        let answer = br#"[
            {"jsonrpc":"2.0","id":11,"error":{"code":-32000,"message":"mempool is full","data":{"reason":"mempool_full"}}},
            {"jsonrpc":"2.0","id":10,"result":{"hash":"0x00","status":"pending"}},
            {"jsonrpc":"2.0","id":99,"result":1},
            {"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"bad"}}
        ]"#;
        let out = parse_batch::<Value>(10, 3, answer).expect("parsed");
        assert_eq!(out[0].as_ref().expect("ok")["status"], "pending");
        let e = out[1].as_ref().expect_err("refused");
        assert_eq!(e.reason, "mempool_full");
        assert!(!e.is_transport());
        let e = out[2].as_ref().expect_err("unanswered");
        assert_eq!(e.reason, "no_answer");
        assert!(e.is_transport());
    }

    #[test]
    fn a_batch_refused_as_a_whole_or_garbage_is_an_error() {
        let limited = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"too many requests","data":{"reason":"rate_limited"}}}"#;
        assert_eq!(
            parse_batch::<IgnoredAny>(1, 2, limited)
                .expect_err("whole")
                .reason,
            "rate_limited"
        );
        // No data.reason: the code is named.
        let bare =
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"batch too long"}}"#;
        assert_eq!(
            parse_batch::<IgnoredAny>(1, 2, bare)
                .expect_err("whole")
                .reason,
            "invalid_request"
        );
        let e = parse_batch::<IgnoredAny>(1, 2, b"\x1b[2J<html>").expect_err("garbage");
        assert_eq!(e.reason, "bad_answer");
        assert!(!e.message.contains('\x1b'), "escaped: {}", e.message);
        // A hostile reason is not echoed as a report key.
        let odd = br#"[{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"x","data":{"reason":"a b\nc"}}}]"#;
        let out = parse_batch::<IgnoredAny>(1, 1, odd).expect("parsed");
        assert_eq!(out[0].as_ref().expect_err("refused").reason, "error_32000");
    }
}

/// The part of a `status` answer the benches read.
#[derive(Deserialize)]
pub(crate) struct StatusAnswer {
    pub chain_id: String,
}

/// The part of a `getHead` answer the benches read.
#[derive(Deserialize)]
pub(crate) struct HeadAnswer {
    pub header: HeadHeader,
}

#[derive(Deserialize)]
pub(crate) struct HeadHeader {
    pub height: u64,
}
