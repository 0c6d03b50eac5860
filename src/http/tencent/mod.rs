//! The Tencent Cloud KMS API 3.0 dialect (`POST /` with TC3 signatures, and the query-string
//! form on `GET /`): authentication, parameters, the `{"Response": …}` envelope and the error
//! codes, over the dialect-neutral KMS core. Each action's adapter is in [`actions`]. The legacy
//! API (v2, `/v2/index.php`) is [`v2`], over the same core and the same parameter helpers.

pub mod actions;
mod authenticate;
mod envelope;
pub mod error_code;
pub mod params;
/// Public only so that `tests/fuzz_parsers.rs` can reach [`query::unflatten`] (untrusted input).
pub mod query;
pub mod tc3;
pub mod v2;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use axum::Extension;

use crate::config::Consistency;
use crate::kms::{Finished, Kms, Scope};
use crate::wire;
use error_code::ApiError;
use params::Params;

/// Largest accepted request body.
pub const MAX_BODY: usize = crate::http::body::MAX_BODY;
/// The only API version served.
pub const VERSION: &str = "2019-01-18";

/// One authenticated request, ready for its action.
pub struct Request<'a> {
    pub kms: &'a Kms,
    pub scope: Scope,
    pub params: Params,
}

/// `POST /` and `GET /`: authenticate, run the action, answer in the envelope. The request runs
/// in a task of its own, so a client that hangs up does not cut it short: a write it started is
/// still recorded in the audit trail (hyper drops the connection's future on a mid-request EOF).
pub async fn serve(
    State(kms): State<Arc<Kms>>,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let source = connect.map(|Extension(ConnectInfo(a))| a);
    crate::http::in_own_task(serve_request(kms, source, method, uri, headers, body)).await
}

async fn serve_request(
    kms: Arc<Kms>,
    source: Option<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let action = headers
        .get("x-tc-action")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Err(e) = kms.audit_gate() {
        // Nothing can be recorded: refused before anything runs (counted by the gate).
        let e = ApiError::from(e);
        log_refusal(&action, &request_id, &e);
        return envelope::error(&e, &request_id);
    }
    let (result, scope) =
        match authenticate::request(&kms, &method, &uri, &headers, body, source).await {
            Ok(req) => (actions::dispatch(&action, &req).await, Some(req.scope)),
            Err(e) => (Err(e), None),
        };
    let named = format!("{}:{action}", authenticate::service_of(&action).0);
    // Without a scope the record names the SecretId the request claimed (unverified).
    let claimed = scope
        .is_none()
        .then(|| authenticate::claimed_secret_id(&headers))
        .flatten();
    let finished = |error_code| Finished {
        scope: scope.as_ref(),
        claimed_secret_id: claimed.as_deref(),
        dialect: "tencent",
        action: &named,
        request_id: &request_id,
        error_code,
        source,
        started,
    };
    let result = crate::http::recorded(&kms, result, |e: &ApiError| e.code, finished).await;
    match result {
        Ok(fields) => {
            let mut resp = envelope::success(fields, &request_id);
            if scope.is_some_and(|s| s.consistency() == Consistency::Stale) {
                stale_headers(&kms, resp.headers_mut());
            }
            resp
        }
        Err(e) => {
            log_refusal(&action, &request_id, &e);
            envelope::error(&e, &request_id)
        }
    }
}

/// A stale answer says how far behind it may be.
fn stale_headers(kms: &Kms, h: &mut HeaderMap) {
    let node = kms.node();
    h.insert(wire::CONSISTENCY_HEADER, HeaderValue::from_static("stale"));
    for (name, value) in [
        (wire::APPLIED_INDEX_HEADER, node.state().applied_index()),
        (wire::COMMIT_INDEX_HEADER, node.reads().known_commit_index()),
        (
            wire::LEADER_CONTACT_HEADER,
            node.health().millis_since_leader_contact(),
        ),
    ] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v.to_string()).ok()) {
            h.insert(name, v);
        }
    }
}

/// The log line of a refused request (with the internal detail, never sent to the client).
fn log_refusal(action: &str, request_id: &str, e: &ApiError) {
    match &e.detail {
        Some(detail) => {
            tracing::warn!(action, code = e.code, request_id, error = %detail, "request failed on this node")
        }
        None => tracing::debug!(action, code = e.code, request_id, "request refused"),
    }
}
