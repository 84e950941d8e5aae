//! HTTP answers: JSON bodies, and the HTTP status that fits each error for the REST and admin
//! routes (JSON-RPC answers carry their errors in the body instead).

use crate::envelope::{error_text, Answer};
use crate::jsonrpc::{codes, RpcError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `body` as JSON with `status`.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, JSON)], bytes).into_response(),
        Err(e) => text_json(
            StatusCode::INTERNAL_SERVER_ERROR,
            error_text(RpcError::internal(format!("answer not serialisable: {e}"))),
        ),
    }
}

/// Already-serialised JSON with `status`.
pub(crate) fn text_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, JSON)], body).into_response()
}

/// The HTTP status of an error on a REST or admin route.
pub(crate) fn status_of(e: &RpcError) -> StatusCode {
    match (e.code, e.reason()) {
        (_, Some("body_too_large")) => StatusCode::PAYLOAD_TOO_LARGE,
        (codes::REJECTED, Some("mempool_full")) => StatusCode::SERVICE_UNAVAILABLE,
        (codes::PARSE_ERROR | codes::INVALID_REQUEST | codes::INVALID_PARAMS, _) => {
            StatusCode::BAD_REQUEST
        }
        (codes::METHOD_NOT_FOUND | codes::NOT_FOUND, _) => StatusCode::NOT_FOUND,
        (codes::UNAVAILABLE, _) => StatusCode::SERVICE_UNAVAILABLE,
        (codes::UNAUTHORIZED, _) => StatusCode::UNAUTHORIZED,
        (codes::RATE_LIMITED, _) => StatusCode::TOO_MANY_REQUESTS,
        // Other application errors (-32000 to -32099: a refused tx, …) are about the request.
        (-32099..=-32000, _) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A REST answer: the plain result with 200 (its text as is, no copy), or the error object with
/// its status.
pub(crate) fn rest(result: Result<Answer, RpcError>) -> Response {
    match result {
        Ok(answer) => text_json(StatusCode::OK, Box::<str>::from(answer).into()),
        Err(e) => json(status_of(&e), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;

    #[test]
    fn statuses_fit_the_error() {
        let cases: [(RpcError, StatusCode); 9] = [
            (RpcError::body_too_large(1), StatusCode::PAYLOAD_TOO_LARGE),
            (RpcError::invalid_params("x"), StatusCode::BAD_REQUEST),
            (RpcError::parse_error("x"), StatusCode::BAD_REQUEST),
            (ApiError::not_found("x").into(), StatusCode::NOT_FOUND),
            (
                ApiError::rejected("bad_nonce", "x").into(),
                StatusCode::BAD_REQUEST,
            ),
            (
                ApiError::rejected("mempool_full", "x").into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ApiError::unavailable("light", "x").into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (RpcError::rate_limited(1), StatusCode::TOO_MANY_REQUESTS),
            (
                ApiError::internal("x").into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(status_of(&e), status, "{e:?}");
        }
    }
}
