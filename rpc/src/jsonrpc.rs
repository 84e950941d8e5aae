//! JSON-RPC 2.0 framing: the error object, the request envelope, and the handling of one message
//! (a single call or a batch), shared by HTTP and WebSocket. Responses are written by
//! [`crate::envelope`].
//!
//! Bodies are parsed here from raw bytes rather than through axum's `Json` extractor, so that every
//! malformed input gets a JSON-RPC error object (axum would answer 400/415/422 with plain text).

use crate::api::ApiError;
use crate::envelope::{self, error_text};
use crate::methods::{self, Ctx};
use crate::NodeApi;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Error codes the server answers with. The standard ones come from the JSON-RPC 2.0 spec; the
/// application ones (-32000 and below) are the node's ([`ApiError`]) and the server's own.
pub mod codes {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a JSON-RPC request (or a batch that is empty, too long, or a body too large).
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A tx the node refused (`data.reason` names why), see [`crate::ApiError::rejected`].
    pub const REJECTED: i64 = -32000;
    /// See [`crate::ApiError::not_found`].
    pub const NOT_FOUND: i64 = -32001;
    /// See [`crate::ApiError::unavailable`].
    pub const UNAVAILABLE: i64 = -32002;
    /// An admin call without the right bearer token.
    pub const UNAUTHORIZED: i64 = -32004;
    /// The client's IP is over its request rate.
    pub const RATE_LIMITED: i64 = -32005;
}

use codes::*;

/// A JSON-RPC error object: `{code, message, data?}`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl Serialize for RpcError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            code: i64,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a Value>,
        }
        Wire {
            code: self.code,
            message: &self.message,
            data: self.data.as_ref(),
        }
        .serialize(s)
    }
}

/// Longest piece of client input echoed back in an error message.
const ECHO_MAX: usize = 64;

/// `s` cut to [`ECHO_MAX`] characters, so a hostile method name is not echoed at length.
pub(crate) fn truncated(s: &str) -> String {
    match s.char_indices().nth(ECHO_MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn reason(reason: &str) -> Option<Value> {
    let mut m = Map::new();
    m.insert("reason".into(), Value::String(reason.into()));
    Some(Value::Object(m))
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn parse_error(detail: impl std::fmt::Display) -> RpcError {
        RpcError::new(PARSE_ERROR, format!("parse error: {detail}"))
    }

    pub fn invalid_request(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_REQUEST, message)
    }

    /// The body is over `limit` bytes; REST answers it with HTTP 413 (found by `data.reason`).
    pub fn body_too_large(limit: usize) -> RpcError {
        RpcError {
            data: reason("body_too_large"),
            ..RpcError::invalid_request(format!("body too large: the limit is {limit} bytes"))
        }
    }

    pub fn method_not_found(method: &str) -> RpcError {
        RpcError::new(
            METHOD_NOT_FOUND,
            format!("method {:?} not found", truncated(method)),
        )
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(INVALID_PARAMS, message)
    }

    pub fn internal(message: impl Into<String>) -> RpcError {
        RpcError::new(INTERNAL_ERROR, message)
    }

    pub fn unauthorized() -> RpcError {
        RpcError {
            data: reason("unauthorized"),
            ..RpcError::new(
                UNAUTHORIZED,
                "admin calls need the header \"Authorization: Bearer <admin token>\"",
            )
        }
    }

    pub fn rate_limited(retry_after_secs: u64) -> RpcError {
        RpcError {
            data: reason("rate_limited"),
            ..RpcError::new(
                RATE_LIMITED,
                format!("too many requests from this address; retry in {retry_after_secs} s"),
            )
        }
    }

    /// `data.reason`, if the error carries one.
    pub fn reason(&self) -> Option<&str> {
        self.data.as_ref()?.get("reason")?.as_str()
    }
}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> RpcError {
        RpcError {
            code: e.code,
            message: e.message,
            data: e.reason.as_deref().and_then(reason),
        }
    }
}

/// The metrics `outcome` label of a call: `ok`, or one value per error kind (a fixed set, so
/// clients cannot grow it).
pub(crate) fn outcome(result: Result<(), i64>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(PARSE_ERROR) => "parse_error",
        Err(INVALID_REQUEST) => "invalid_request",
        Err(METHOD_NOT_FOUND) => "method_not_found",
        Err(INVALID_PARAMS) => "invalid_params",
        Err(INTERNAL_ERROR) => "internal_error",
        Err(REJECTED) => "rejected",
        Err(NOT_FOUND) => "not_found",
        Err(UNAVAILABLE) => "unavailable",
        Err(UNAUTHORIZED) => "unauthorized",
        Err(RATE_LIMITED) => "rate_limited",
        Err(_) => "other_error",
    }
}

/// One well-formed call. `id: None` is a notification (it gets no response).
#[derive(Debug, PartialEq)]
pub(crate) struct Request {
    pub id: Option<Value>,
    pub method: String,
    pub params: Option<Value>,
}

impl Request {
    /// Checks the envelope. On failure returns the id to answer with (null when it could not be
    /// read) and the -32600 error.
    pub fn from_value(value: Value) -> Result<Request, (Value, RpcError)> {
        let Value::Object(mut obj) = value else {
            return Err((
                Value::Null,
                RpcError::invalid_request("a call must be a JSON object"),
            ));
        };
        let id = match obj.remove("id") {
            None => None,
            Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
            Some(_) => {
                return Err((
                    Value::Null,
                    RpcError::invalid_request("\"id\" must be a string, a number or null"),
                ))
            }
        };
        let fail = |id: Option<Value>, msg: &str| {
            Err((id.unwrap_or(Value::Null), RpcError::invalid_request(msg)))
        };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return fail(id, "\"jsonrpc\" must be \"2.0\"");
        }
        let method = match obj.remove("method") {
            Some(Value::String(m)) => m,
            _ => return fail(id, "\"method\" must be a string"),
        };
        let params = match obj.remove("params") {
            None | Some(Value::Null) => None,
            Some(p @ (Value::Array(_) | Value::Object(_))) => Some(p),
            Some(_) => return fail(id, "\"params\" must be an array or an object"),
        };
        Ok(Request { id, method, params })
    }
}

/// Answers one message: a single call or a batch. `None` = nothing to send back (only
/// notifications). Batches run their calls one after another and answer in order.
pub(crate) async fn handle_message<A: NodeApi>(ctx: &Ctx<A>, body: &[u8]) -> Option<String> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            ctx.metrics.record_failure(PARSE_ERROR);
            return Some(error_text(RpcError::parse_error(e)));
        }
    };
    match value {
        Value::Array(calls) => {
            if calls.is_empty() {
                ctx.metrics.record_failure(INVALID_REQUEST);
                return Some(error_text(RpcError::invalid_request("empty batch")));
            }
            if calls.len() > ctx.max_batch {
                ctx.metrics.record_failure(INVALID_REQUEST);
                return Some(error_text(RpcError::invalid_request(format!(
                    "batch of {} calls, over the limit of {}",
                    calls.len(),
                    ctx.max_batch
                ))));
            }
            // The calls run concurrently (answers keep their order): a batch of `sendTx` then
            // reaches the node together and is admitted with one batched signature check, and
            // one slow call (a `wait: commit`) does not hold up the rest.
            let answers: Vec<String> =
                futures_util::future::join_all(calls.into_iter().map(|c| handle_call(ctx, c)))
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
            if answers.is_empty() {
                None
            } else {
                Some(envelope::batch(&answers))
            }
        }
        Value::Object(_) => handle_call(ctx, value).await,
        _ => {
            ctx.metrics.record_failure(INVALID_REQUEST);
            Some(error_text(RpcError::invalid_request(
                "a request must be a JSON object or an array of them",
            )))
        }
    }
}

/// Runs one call of a message and gives its response as text; `None` for a notification.
async fn handle_call<A: NodeApi>(ctx: &Ctx<A>, value: Value) -> Option<String> {
    let request = match Request::from_value(value) {
        Ok(r) => r,
        Err((id, error)) => {
            ctx.metrics.record_failure(error.code);
            return Some(envelope::response(&id, Err(&error)));
        }
    };
    let result = methods::call_observed(ctx, &request.method, request.params).await;
    request
        .id
        .map(|id| envelope::response(&id, result.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invalid(v: Value) -> (Value, i64) {
        let (id, e) = Request::from_value(v).expect_err("invalid");
        (id, e.code)
    }

    #[test]
    fn envelope_checks() {
        assert_eq!(invalid(json!(1)), (Value::Null, INVALID_REQUEST));
        assert_eq!(
            invalid(json!({"jsonrpc":"2.0","id":{},"method":"x"})),
            (Value::Null, INVALID_REQUEST)
        );
        assert_eq!(
            invalid(json!({"jsonrpc":"1.0","id":3,"method":"x"})),
            (json!(3), INVALID_REQUEST)
        );
        assert_eq!(
            invalid(json!({"jsonrpc":"2.0","id":"a","method":7})),
            (json!("a"), INVALID_REQUEST)
        );
        assert_eq!(
            invalid(json!({"jsonrpc":"2.0","id":1,"method":"x","params":5})),
            (json!(1), INVALID_REQUEST)
        );
        let ok = Request::from_value(json!({"jsonrpc":"2.0","method":"x","params":null}))
            .expect("valid notification");
        assert_eq!(ok.id, None);
        assert_eq!(ok.params, None);
        let with_null_id =
            Request::from_value(json!({"jsonrpc":"2.0","id":null,"method":"x","params":[1]}))
                .expect("valid");
        assert_eq!(with_null_id.id, Some(Value::Null));
    }

    #[test]
    fn api_errors_keep_code_and_reason() {
        let e: RpcError = ApiError::rejected("bad_nonce", "nonce 3 expected 2").into();
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(
            v,
            json!({"code": -32000, "message": "nonce 3 expected 2", "data": {"reason": "bad_nonce"}})
        );
        let plain: RpcError = ApiError::internal("boom").into();
        assert_eq!(
            serde_json::to_value(&plain).expect("json"),
            json!({"code": -32603, "message": "boom"})
        );
    }

    #[test]
    fn long_input_is_not_echoed_in_full() {
        let long = "é".repeat(1000);
        let e = RpcError::method_not_found(&long);
        assert!(e.message.len() < 200, "{}", e.message);
        assert_eq!(truncated("short"), "short");
    }

    #[test]
    fn outcomes_are_a_closed_set() {
        assert_eq!(outcome(Ok(())), "ok");
        assert_eq!(outcome(Err(-32001)), "not_found");
        assert_eq!(outcome(Err(-31999)), "other_error");
        assert_eq!(outcome(Err(i64::MIN)), "other_error");
    }
}
