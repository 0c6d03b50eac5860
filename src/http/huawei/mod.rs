//! The Huawei Cloud KMS (DEW) dialect: `/v1.0/{project_id}/kms/<verb>` with `SDK-HMAC-SHA256`
//! signatures ([`sign`]), snake_case JSON bodies with numbers as strings, and Huawei's error
//! shapes and codes ([`error`]), over the same core, keys, policies and audit trail as the
//! Tencent dialects. The project id in the path names the account's region ([`project`]); each
//! operation's adapter is in [`actions`].

pub mod actions;
pub mod error;
pub mod params;
pub mod project;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Map, Value};

use crate::kms::{Caller, Finished, Kms, RequestInfo, Scope};
use error::HwError;
use params::Body;

/// One authenticated Huawei request, ready for its operation.
pub struct Request<'a> {
    pub kms: &'a Kms,
    pub scope: Scope,
    pub body: Body,
    /// The path after `/kms/`, split at `/` and percent-decoded (`["<key_id>", "tags"]`).
    pub path: Vec<String>,
}

/// `/v1.0/{project_id}/kms/{*rest}`, every method.
pub async fn serve(
    State(kms): State<Arc<Kms>>,
    Path((project, _rest)): Path<(String, String)>,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: HttpBody,
) -> Response {
    let source = connect.map(|Extension(ConnectInfo(a))| a);
    crate::http::in_own_task(serve_request(
        kms, project, source, method, uri, headers, body,
    ))
    .await
}

async fn serve_request(
    kms: Arc<Kms>,
    project: String,
    source: Option<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: HttpBody,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    if let Err(e) = kms.audit_gate() {
        return reply_error(&HwError::from(e), &request_id);
    }
    let path = rest_of(uri.path());
    let op = actions::route(&method, &path);
    let claimed = header(&headers, "authorization")
        .and_then(|a| sign::parse_authorization(&a).ok())
        .map(|a| a.access_key.chars().take(128).collect::<String>());
    let (result, scope) = match op.clone() {
        Err(e) => (Err(e), None),
        Ok(op) => match authenticate(
            &kms, op, &project, path, &method, &uri, &headers, body, source,
        )
        .await
        {
            Ok(req) => (actions::dispatch(op, &req).await, Some(req.scope)),
            Err(e) => (Err(e), None),
        },
    };
    let named = match op {
        Ok(op) => format!("kms:{}", op.policy_action),
        Err(_) => "kms:unknown".to_string(),
    };
    let finished = |error_code| Finished {
        scope: scope.as_ref(),
        claimed_secret_id: if scope.is_none() {
            claimed.as_deref()
        } else {
            None
        },
        dialect: "huawei",
        action: &named,
        request_id: &request_id,
        error_code,
        source,
        started,
    };
    let result = crate::http::recorded(&kms, result, |e: &HwError| e.code, finished).await;
    match result {
        Ok(v) => reply(StatusCode::OK, &Value::Object(v), &request_id),
        Err(e) => {
            match &e.detail {
                Some(d) => {
                    tracing::warn!(op = named, code = e.code, request_id, error = %d, "huawei request failed on this node")
                }
                None => tracing::debug!(
                    op = named,
                    code = e.code,
                    request_id,
                    "huawei request refused"
                ),
            }
            reply_error(&e, &request_id)
        }
    }
}

/// The segments of the path after `/kms/`, percent-decoded.
fn rest_of(path: &str) -> Vec<String> {
    let rest = path.splitn(4, '/').nth(3).unwrap_or("");
    let rest = rest.strip_prefix("kms/").unwrap_or(rest);
    rest.split('/')
        .filter(|s| !s.is_empty())
        .map(sign::percent_decode)
        .collect()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The signature, the project, rate limits, the scope, then the body.
#[allow(clippy::too_many_arguments)]
async fn authenticate<'a>(
    kms: &'a Kms,
    op: actions::Op,
    project: &str,
    path: Vec<String>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: HttpBody,
    source: Option<std::net::SocketAddr>,
) -> Result<Request<'a>, HwError> {
    let authz = header(headers, "authorization")
        .ok_or_else(|| HwError::auth("the Authorization header is missing"))?;
    let auth = sign::parse_authorization(&authz).map_err(HwError::auth)?;
    let date =
        header(headers, "x-sdk-date").ok_or_else(|| HwError::auth("X-Sdk-Date is missing"))?;
    let at = sign::parse_sdk_date(&date)
        .ok_or_else(|| HwError::auth("X-Sdk-Date is not YYYYMMDDTHHMMSSZ"))?;
    if kms.now_secs().abs_diff(at) > sign::MAX_SKEW_SECS {
        return Err(HwError::auth(
            "X-Sdk-Date is more than 15 minutes from the server's time",
        ));
    }
    if header(headers, "x-sdk-content-sha256").is_some() {
        return Err(HwError::auth(
            "an unsigned payload (X-Sdk-Content-Sha256) is not accepted: sign the body",
        ));
    }
    let consistency = kms.default_consistency();
    let (uin, principal, secret) = kms.credential(&auth.access_key, consistency).await?;
    let limit = kms.node().config().limits.body_timeout_ms;
    let bytes = tokio::time::timeout(
        Duration::from_millis(limit),
        crate::http::body::read_bounded(body),
    )
    .await
    .map_err(|_| HwError::invalid("body", format!("did not arrive within {limit} ms")))?
    .map_err(|e| {
        HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0203",
            format!("Request message too long. {e}"),
        )
    })?;
    let verified = {
        let header_of = |name: &str| header(headers, name);
        let signed = sign::SignedRequest {
            method: method.as_str(),
            raw_path: uri.path(),
            raw_query: uri.query().unwrap_or(""),
            header: &header_of,
            body: &bytes,
        };
        sign::verify(&auth, &signed, &date, secret.expose())
    };
    if !verified {
        return Err(HwError::auth("verify aksk signature fail"));
    }
    if header(headers, "x-project-id").is_some_and(|p| p != project) {
        return Err(HwError::new(
            StatusCode::FORBIDDEN,
            "KMS.0321",
            "The project id in the URL and in X-Project-Id do not match.",
        ));
    }
    let served = kms.node().config().served_regions();
    let region = project::region_of(uin, project, &served)
        .cloned()
        .ok_or_else(|| {
            HwError::new(
                StatusCode::FORBIDDEN,
                "KMS.0321",
                format!(
                    "`{}` is not a project of this account in any region this cluster serves \
                 (raftkms credential create --dialect huawei prints the account's project ids)",
                    project.chars().take(64).collect::<String>()
                ),
            )
        })?;
    let caller = Caller {
        uin,
        credential_id: auth.access_key.clone(),
        principal,
    };
    kms.admit(&caller, op.class)?;
    let body = Body::parse(&bytes)?;
    let request = RequestInfo {
        policy_action: format!("kms:{}", actions::policy_action(op, &body)),
        source,
    };
    let scope = kms
        .open_scope(caller, request, Some(region), consistency)
        .await?;
    Ok(Request {
        kms,
        scope,
        body,
        path,
    })
}

fn reply(status: StatusCode, body: &Value, request_id: &str) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = (status, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

/// An error in Huawei's shape: KMS's nested `error` object, or the gateway's flat one.
pub fn reply_error(e: &HwError, request_id: &str) -> Response {
    let body = if e.gateway {
        json!({ "error_code": e.code, "error_msg": e.message, "request_id": request_id })
    } else {
        json!({ "error": { "error_code": e.code, "error_msg": e.message } })
    };
    reply(e.status, &body, request_id)
}

/// An object from a `json!` value.
pub fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_after_kms_is_split_and_decoded() {
        assert_eq!(rest_of("/v1.0/p/kms/create-key"), vec!["create-key"]);
        assert_eq!(
            rest_of("/v1.0/p/kms/k-1/tags/a%20b%2Fc"),
            vec!["k-1", "tags", "a b/c"]
        );
        assert_eq!(rest_of("/v1.0/p/kms/k/tags/a+b"), vec!["k", "tags", "a+b"]);
        assert_eq!(rest_of("/v1.0/p/kms/k/tags/a&b"), vec!["k", "tags", "a&b"]);
    }
}
