//! The `{"Response": …}` envelope. Every answer is HTTP 200 with `Content-Type:
//! application/json` exactly (the SDK ignores error bodies otherwise) and carries a RequestId.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::error_code::ApiError;

fn reply(body: Value) -> Response {
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A success: the action's fields plus `RequestId`.
pub fn success(mut fields: Map<String, Value>, request_id: &str) -> Response {
    fields.insert("RequestId".into(), Value::String(request_id.to_string()));
    reply(json!({ "Response": fields }))
}

/// An error envelope.
pub fn error(e: &ApiError, request_id: &str) -> Response {
    reply(
        json!({ "Response": { "Error": { "Code": e.code, "Message": e.message }, "RequestId": request_id } }),
    )
}
