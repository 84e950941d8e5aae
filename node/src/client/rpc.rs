//! A minimal blocking JSON-RPC 2.0 client over plain HTTP, for the `tx` and `query` commands.
//!
//! Blocking and TLS-free on purpose: a command line tool makes a handful of sequential calls,
//! so an async runtime would be dead weight, and the RPC binds 127.0.0.1 by default (SPEC §7);
//! a remote node is reached through a tunnel or a TLS-terminating proxy. Every answer is read
//! with a byte limit and under a timeout, since the node at `--rpc` is outside input.

use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default time for one call, connect included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on an answer's body. Generous for a full 1 MiB block shown as JSON (hex doubles
/// the bytes, and field names add more), small enough that a bad node cannot exhaust memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// How much of a non-JSON-RPC body an error message quotes.
const QUOTE_BYTES: usize = 200;

/// Why a call failed. A [`RpcError::Rpc`] means the node understood the call and refused it;
/// the other two mean no usable answer arrived, and say nothing about whether it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The node could not be reached or the answer not read: bad URL, connection refused,
    /// timeout, I/O error.
    #[error("cannot reach {url}: {detail}")]
    Transport { url: String, detail: String },
    /// An answer arrived but is not a JSON-RPC response to this call: not JSON, over the size
    /// limit, an HTTP error page, a wrong id.
    #[error("bad answer from {url}: {detail}")]
    InvalidResponse { url: String, detail: String },
    /// A JSON-RPC error object: `code`, `message` and `data.reason` (SPEC §7 names them, e.g.
    /// `bad_nonce`, `fee_too_low`).
    #[error("{}", RpcFault { code: *code, message, reason: reason.as_deref() })]
    Rpc {
        code: i64,
        message: String,
        reason: Option<String>,
        /// The whole `data` member, when present.
        data: Option<Value>,
    },
}

/// Display of a JSON-RPC error: `JSON-RPC error -32000 (fee_too_low): fee too low`.
struct RpcFault<'a> {
    code: i64,
    message: &'a str,
    reason: Option<&'a str>,
}

impl fmt::Display for RpcFault<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON-RPC error {}", self.code)?;
        if let Some(r) = self.reason {
            write!(f, " ({r})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A JSON-RPC client bound to one endpoint URL.
pub struct RpcClient {
    url: String,
    agent: ureq::Agent,
    max_response_bytes: u64,
    next_id: AtomicU64,
}

impl fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcClient").field("url", &self.url).finish()
    }
}

impl RpcClient {
    /// A client for `url` (`http://host:port[/path]`) with [`DEFAULT_TIMEOUT`]. Refuses other
    /// schemes up front: this build has no TLS, and failing at the first call would hide why.
    pub fn new(url: &str) -> Result<RpcClient, RpcError> {
        RpcClient::with_timeout(url, DEFAULT_TIMEOUT)
    }

    /// As [`RpcClient::new`], with `timeout` for each whole call (connect, send, answer).
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<RpcClient, RpcError> {
        let bad = |detail: &str| RpcError::Transport {
            url: url.to_string(),
            detail: detail.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported (this build has no TLS)"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("the URL has no host"));
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // JSON-RPC errors may come with a 4xx/5xx status; the body says what went wrong.
            .http_status_as_error(false);
        // ureq honours HTTP_PROXY and friends, which is right for a remote node but sends
        // even 127.0.0.1 through the proxy unless NO_PROXY lists it: never what a local
        // node's client wants.
        if is_loopback(rest) {
            config = config.proxy(None);
        }
        let config = config.build();
        Ok(RpcClient {
            url: url.to_string(),
            agent: config.into(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            next_id: AtomicU64::new(1),
        })
    }

    /// Caps the answer body at `bytes` (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn with_max_response_bytes(mut self, bytes: u64) -> RpcClient {
        self.max_response_bytes = bytes;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `method` with `params` and returns its `result`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let body = serde_json::to_vec(&request).map_err(|e| self.invalid(e.to_string()))?;
        let mut response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(&body[..])
            .map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => {
                    self.invalid(format!("answer is larger than {limit} bytes"))
                }
                other => self.transport(other),
            })?;
        self.parse_response(status, id, &bytes)
    }

    fn parse_response(&self, status: u16, id: u64, bytes: &[u8]) -> Result<Value, RpcError> {
        let not_rpc = |what: &str| {
            self.invalid(format!(
                "HTTP {status}, {what}: {}",
                quote(bytes, QUOTE_BYTES)
            ))
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|_| not_rpc("not a JSON document"))?;
        let Some(obj) = value.as_object() else {
            return Err(not_rpc("not a JSON-RPC response object"));
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(not_rpc("not a JSON-RPC 2.0 response"));
        }
        if let Some(err) = obj.get("error") {
            // An error may carry a null id (the server could not read ours); it is still the
            // answer to the one request this connection sent.
            return Err(self.rpc_error(err));
        }
        if obj.get("id") != Some(&json!(id)) {
            return Err(not_rpc(&format!("answer is not for request id {id}")));
        }
        match obj.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(not_rpc("neither result nor error")),
        }
    }

    fn rpc_error(&self, err: &Value) -> RpcError {
        let code = err.get("code").and_then(Value::as_i64);
        let message = err.get("message").and_then(Value::as_str);
        let (Some(code), Some(message)) = (code, message) else {
            return self.invalid(format!(
                "malformed JSON-RPC error object: {}",
                quote(err.to_string().as_bytes(), QUOTE_BYTES)
            ));
        };
        let data = err.get("data").filter(|d| !d.is_null()).cloned();
        let reason = data
            .as_ref()
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str)
            .map(str::to_string);
        RpcError::Rpc {
            code,
            message: message.to_string(),
            reason,
            data,
        }
    }

    fn transport(&self, e: ureq::Error) -> RpcError {
        RpcError::Transport {
            url: self.url.clone(),
            detail: e.to_string(),
        }
    }

    fn invalid(&self, detail: String) -> RpcError {
        RpcError::InvalidResponse {
            url: self.url.clone(),
            detail,
        }
    }
}

/// Whether the host of `rest` (the URL after `http://`) is this machine.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The start of an untrusted body for an error message, with control characters escaped so a
/// hostile answer cannot rewrite the terminal.
fn quote(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut s: String = String::from_utf8_lossy(shown).escape_debug().collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::test_server::{Reply, TestServer};

    #[test]
    fn returns_result_of_canned_answer() {
        let server = TestServer::start(vec![Reply::result(json!({"balance": 5, "nonce": 2}))]);
        let client = RpcClient::new(&server.url()).expect("client");
        let got = client
            .call("getBalance", json!({"address": "ait1x"}))
            .expect("call");
        assert_eq!(got, json!({"balance": 5, "nonce": 2}));
        let requests = server.finish();
        assert_eq!(requests.len(), 1);
        let req = &requests[0];
        assert_eq!(req["jsonrpc"], "2.0");
        assert_eq!(req["method"], "getBalance");
        assert_eq!(req["params"], json!({"address": "ait1x"}));
        assert!(req["id"].is_u64());
    }

    #[test]
    fn json_rpc_error_keeps_code_message_and_reason() {
        for status in [200, 400, 500] {
            let server = TestServer::start(vec![Reply::error(
                status,
                -32000,
                "nonce must be 3",
                Some(json!({"reason": "bad_nonce", "expected": 3})),
            )]);
            let client = RpcClient::new(&server.url()).expect("client");
            let err = client.call("sendTx", json!({})).expect_err("error answer");
            server.finish();
            let RpcError::Rpc {
                code,
                message,
                reason,
                data,
            } = &err
            else {
                panic!("HTTP {status}: expected an Rpc error, got {err:?}");
            };
            assert_eq!(*code, -32000);
            assert_eq!(message, "nonce must be 3");
            assert_eq!(reason.as_deref(), Some("bad_nonce"));
            assert_eq!(data.as_ref().map(|d| d["expected"].clone()), Some(json!(3)));
            assert_eq!(
                err.to_string(),
                "JSON-RPC error -32000 (bad_nonce): nonce must be 3"
            );
        }
        // A standard error without data.
        let server = TestServer::start(vec![Reply::error(200, -32601, "no such method", None)]);
        let client = RpcClient::new(&server.url()).expect("client");
        let err = client.call("nope", json!({})).expect_err("error answer");
        server.finish();
        assert_eq!(err.to_string(), "JSON-RPC error -32601: no such method");
    }

    #[test]
    fn oversized_answer_is_a_clear_error() {
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":"{}"}}"#,
            "a".repeat(8 * 1024)
        );
        let server = TestServer::start(vec![Reply::raw(200, big.into_bytes())]);
        let client = RpcClient::new(&server.url())
            .expect("client")
            .with_max_response_bytes(1024);
        let err = client.call("getBlock", json!({})).expect_err("too big");
        server.finish();
        assert!(matches!(err, RpcError::InvalidResponse { .. }), "{err:?}");
        assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
    }

    #[test]
    fn garbage_answers_are_clear_errors() {
        let cases: [(u16, &[u8], &str); 7] = [
            (200, b"\x1b[2Jnot json at all", "not a JSON document"),
            (
                502,
                b"<html>Bad Gateway</html>",
                "HTTP 502, not a JSON document",
            ),
            (200, b"[1,2,3]", "not a JSON-RPC response object"),
            (
                200,
                br#"{"id":1,"result":1}"#,
                "not a JSON-RPC 2.0 response",
            ),
            (
                200,
                br#"{"jsonrpc":"2.0","id":99,"result":1}"#,
                "not for request id 1",
            ),
            (
                200,
                br#"{"jsonrpc":"2.0","id":1}"#,
                "neither result nor error",
            ),
            (
                200,
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#,
                "malformed JSON-RPC error object",
            ),
        ];
        for (status, body, expected) in cases {
            let server = TestServer::start(vec![Reply::raw(status, body.to_vec())]);
            let client = RpcClient::new(&server.url()).expect("client");
            let err = client.call("getHead", json!({})).expect_err("garbage");
            server.finish();
            assert!(matches!(err, RpcError::InvalidResponse { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains(expected), "{msg}");
            assert!(!msg.contains('\x1b'), "control characters must be escaped");
        }
    }

    #[test]
    fn unreachable_node_and_bad_urls_are_transport_errors() {
        // A port that was just free: nothing listens on it any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let client = RpcClient::new(&format!("http://127.0.0.1:{port}")).expect("client");
        let err = client.call("status", json!({})).expect_err("refused");
        assert!(matches!(err, RpcError::Transport { .. }), "{err:?}");

        for url in [
            "https://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://",
            "http:///x",
        ] {
            let err = RpcClient::new(url).expect_err(url);
            assert!(matches!(err, RpcError::Transport { .. }), "{url}: {err:?}");
        }
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for rest in [
            "127.0.0.1:8080",
            "127.1.2.3",
            "localhost:8080/rpc",
            "LOCALHOST",
            "[::1]:8080",
            "user@127.0.0.1:1",
        ] {
            assert!(is_loopback(rest), "{rest}");
        }
        for rest in [
            "10.0.0.1:8080",
            "node.example:8080",
            "[::2]:1",
            "127.0.0.1.example",
        ] {
            assert!(!is_loopback(rest), "{rest}");
        }
    }

    #[test]
    fn silent_node_times_out() {
        let server = TestServer::start(vec![Reply::Silent]);
        let client =
            RpcClient::with_timeout(&server.url(), Duration::from_millis(200)).expect("client");
        let err = client.call("status", json!({})).expect_err("timeout");
        assert!(matches!(err, RpcError::Transport { .. }), "{err:?}");
        assert!(err.to_string().contains("timeout"), "{err}");
        server.finish();
    }
}
