//! The client-facing listener: the Tencent Cloud KMS API (`POST /` with TC3 signatures, and the
//! query-string form on `GET /`), plus health, readiness and metrics.

pub mod actions;
pub mod envelope;
pub mod error_code;
pub mod params;
pub mod tc3;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{Map, Value};

use crate::config::Consistency;
use crate::node::{now_ms, RunningNode};
use crate::raft::service::CONSISTENCY_HEADER;
use crate::registry::account::credential_aad;
use error_code::ApiError;
use params::Params;

type Node = Arc<RunningNode>;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send its request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The only API version served.
pub const VERSION: &str = "2019-01-18";

/// The API router of one node.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/", get(api).post(api))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: a leader is known and everything committed before start is applied.
async fn readyz(State(node): State<Node>) -> Response {
    if node.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no known leader, no recent contact with a leader or quorum, or still catching up\n",
        )
            .into_response()
    }
}

async fn metrics(State(node): State<Node>) -> Response {
    {
        let m = node.raft.metrics();
        let m = m.borrow();
        node.metrics.observe_raft(&m, node.committed.get());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        node.metrics.render(),
    )
        .into_response()
}

/// One authenticated request: who, where, how consistent, and its parameters.
pub struct Ctx {
    pub node: Node,
    pub uin: u64,
    pub region: String,
    pub consistency: Consistency,
    pub params: Params,
    /// Whether the read gate already ran for this request (linearizable requests pass it once,
    /// during authentication).
    pub gated: bool,
}

async fn api(
    State(node): State<Node>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let action = headers
        .get("x-tc-action")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut stale = false;
    let result = match handle(node.clone(), &method, &uri, &headers, body).await {
        Ok(ctx) => {
            stale = ctx.consistency == Consistency::Stale;
            actions::dispatch(&action, ctx).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(fields) if stale => {
            // A stale answer says how far behind it may be.
            let mut resp = envelope::success(fields, &request_id);
            let h = resp.headers_mut();
            h.insert(
                CONSISTENCY_HEADER,
                axum::http::HeaderValue::from_static("stale"),
            );
            for (name, value) in [
                ("x-raftkms-applied-index", node.state.applied_index()),
                ("x-raftkms-commit-index", node.committed.get()),
                (
                    "x-raftkms-leader-contact-ms",
                    node.millis_since_leader_contact(),
                ),
            ] {
                if let Some(v) =
                    value.and_then(|v| axum::http::HeaderValue::from_str(&v.to_string()).ok())
                {
                    h.insert(name, v);
                }
            }
            resp
        }
        Ok(fields) => envelope::success(fields, &request_id),
        Err(e) => {
            tracing::debug!(action = %action, code = e.code, request_id = %request_id, "request refused");
            envelope::error(&e, &request_id)
        }
    }
}

/// Reads the body, keeping at most `MAX_BODY` bytes. An oversized body is still read (up to
/// `DRAIN_LIMIT`) so the client, which is still sending, receives the error envelope instead of
/// a broken connection.
async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    use futures::StreamExt;
    const DRAIN_LIMIT: usize = 16 << 20;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                "InvalidParameter",
                format!("cannot read the request body: {e}"),
            )
        })?;
        total += chunk.len();
        if total <= MAX_BODY {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_BODY {
        return Err(ApiError::new(
            "RequestSizeLimitExceeded",
            format!("the request body exceeds {MAX_BODY} bytes"),
        ));
    }
    Ok(kept.into())
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Everything before the action itself: size limit, version, signature, region, parameters.
async fn handle(
    node: Node,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Ctx, ApiError> {
    if header_str(headers, "x-tc-action").is_none_or(|a| a.is_empty()) {
        return Err(ApiError::new(
            "InvalidAction",
            "the X-TC-Action header is missing",
        ));
    }
    if let Some(v) = header_str(headers, "x-tc-version") {
        if v != VERSION {
            return Err(ApiError::new(
                "NoSuchVersion",
                format!("API version `{v}` is not served; use {VERSION}"),
            ));
        }
    }

    // Authentication (TC3-HMAC-SHA256).
    let authz = header_str(headers, "authorization").ok_or_else(|| {
        ApiError::new(
            "AuthFailure.InvalidAuthorization",
            "the Authorization header is missing",
        )
    })?;
    let auth = tc3::parse_authorization(&authz)?;
    let timestamp: i64 = header_str(headers, "x-tc-timestamp")
        .ok_or_else(|| ApiError::missing("X-TC-Timestamp"))?
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("X-TC-Timestamp", "must be Unix seconds"))?;
    if ((now_ms() / 1000) as i64).abs_diff(timestamp) > tc3::MAX_SKEW_SECS as u64 {
        return Err(tc3::Tc3Error::Expired.into());
    }
    let consistency = match header_str(headers, CONSISTENCY_HEADER).as_deref() {
        None => node.config.default_consistency,
        Some("linearizable") => Consistency::Linearizable,
        Some("stale") => Consistency::Stale,
        Some(other) => {
            return Err(ApiError::invalid(
                CONSISTENCY_HEADER,
                format!("`{other}` is not linearizable or stale"),
            ))
        }
    };
    // The body is read only after the cheap header checks, and within a deadline, so neither an
    // unsigned request nor a slow sender ties up a node for long.
    let body = tokio::time::timeout(BODY_TIMEOUT, read_body(body))
        .await
        .map_err(|_| {
            ApiError::new(
                "InvalidParameter",
                "the request body did not arrive within 30 s",
            )
        })??;
    let lookup = |node: &RunningNode| {
        node.state
            .read()
            .registry
            .accounts()
            .credential(&auth.secret_id)
            .cloned()
    };
    let credential = match lookup(&node) {
        Some(c) => c,
        None => {
            // Perhaps created a moment ago through another node: catch up, then look again.
            node.read_barrier(consistency).await?;
            lookup(&node).ok_or_else(|| {
                ApiError::new(
                    "AuthFailure.SecretIdNotFound",
                    format!("SecretId {} does not exist", auth.secret_id),
                )
            })?
        }
    };
    let secret = node.root_key()?.unwrap(
        &credential_aad(&credential.secret_id, credential.uin),
        &credential.wrapped_secret_key,
    )?;
    let query = uri.query().unwrap_or("");
    {
        // Scoped: the borrowed header lookup is not Send and must not live across an await.
        let header_of = |name: &str| header_str(headers, name);
        let signed = tc3::SignedRequest {
            method: method.as_str(),
            query: if *method == Method::GET { query } else { "" },
            header: &header_of,
            body: &body,
            timestamp,
            unsigned_payload: header_str(headers, "x-tc-content-sha256").as_deref()
                == Some("UNSIGNED-PAYLOAD"),
        };
        tc3::verify_signature(&auth, &signed, secret.expose())?;
    }
    drop(secret);

    // Linearizable requests pass the read gate now, before anything is read or proposed, and the
    // credential is checked again against the caught-up state: a credential whose revocation was
    // acknowledged anywhere is refused here even if this node had not applied it yet. (Stale
    // requests are answered from local state by definition, revocations included.)
    let gated = consistency == Consistency::Linearizable;
    if gated {
        node.read_barrier(consistency).await?;
        if lookup(&node).is_none_or(|c| c.uin != credential.uin) {
            return Err(ApiError::new(
                "AuthFailure.SecretIdNotFound",
                format!("SecretId {} does not exist", auth.secret_id),
            ));
        }
    }

    let region = header_str(headers, "x-tc-region")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| node.config.region.clone());
    if !node.config.served_regions().contains(&region) {
        return Err(ApiError::new(
            "UnsupportedRegion",
            format!("region `{region}` is not served by this cluster"),
        ));
    }

    let params = if *method == Method::GET {
        Params(unflatten(query)?)
    } else if body.iter().all(u8::is_ascii_whitespace) {
        Params(Map::new())
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => Params(m),
            _ => {
                return Err(ApiError::new(
                    "InvalidParameter",
                    "the request body is not a JSON object",
                ))
            }
        }
    };
    Ok(Ctx {
        node,
        uin: credential.uin,
        region,
        consistency,
        params,
        gated,
    })
}

/// Limits of the query-string form: nesting (`Tags.0.TagKey` is 3 deep), list indices (the API's
/// lists hold at most 200 items) and the number of parameters.
const MAX_QUERY_DEPTH: usize = 4;
const MAX_QUERY_INDEX: usize = 200;
const MAX_QUERY_PARAMS: usize = 1000;

/// Turns a flattened query string (`KeyIds.0=a&Tags.0.TagKey=k`) into JSON. Bounded: a deep,
/// sparse or huge query is refused instead of being allowed to exhaust memory or stack.
fn unflatten(query: &str) -> Result<Map<String, Value>, ApiError> {
    fn too_complex() -> ApiError {
        ApiError::new(
            "InvalidParameter",
            "the query string is nested too deeply, too sparse, or too long",
        )
    }
    fn insert(target: &mut Value, path: &[&str], value: String) -> Result<(), ApiError> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(());
        };
        if let Ok(i) = first.parse::<usize>() {
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            if let Value::Array(items) = target {
                // Indices arrive in order (0, 1, 2, …): never more than one past the end.
                if i > MAX_QUERY_INDEX || i > items.len() {
                    return Err(too_complex());
                }
                if i == items.len() {
                    items.push(Value::Null);
                }
                if rest.is_empty() {
                    items[i] = Value::String(value);
                } else {
                    insert(&mut items[i], rest, value)?;
                }
            }
        } else {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(m) = target {
                if rest.is_empty() {
                    m.insert(first.to_string(), Value::String(value));
                } else {
                    insert(
                        m.entry(first.to_string()).or_insert(Value::Null),
                        rest,
                        value,
                    )?;
                }
            }
        }
        Ok(())
    }
    let mut root = Value::Object(Map::new());
    for (n, (k, v)) in form_urlencoded::parse(query.as_bytes()).enumerate() {
        let path: Vec<&str> = k.split('.').collect();
        if n >= MAX_QUERY_PARAMS || path.len() > MAX_QUERY_DEPTH {
            return Err(too_complex());
        }
        insert(&mut root, &path, v.into_owned())?;
    }
    match root {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_unflatten_into_json() {
        let m = unflatten("KeyId=k-1&Plaintext=aGVsbG8%3D&KeyIds.0=a&KeyIds.1=b&Tags.0.TagKey=env&Tags.0.TagValue=dev")
            .unwrap();
        assert_eq!(
            Value::Object(m),
            serde_json::json!({
                "KeyId": "k-1", "Plaintext": "aGVsbG8=", "KeyIds": ["a", "b"],
                "Tags": [{"TagKey": "env", "TagValue": "dev"}]
            })
        );
    }

    #[test]
    fn hostile_query_strings_are_refused_not_expanded() {
        for q in [
            "KeyIds.18446744073709551615=x".to_string(),
            "KeyIds.100000000=x".to_string(),
            "KeyIds.1=x".to_string(),
            "a.a.a.a.a=x".to_string(),
            format!("{}=x", vec!["a"; 20_000].join(".")),
            (0..1001)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join("&"),
        ] {
            let e = unflatten(&q).unwrap_err();
            assert_eq!(e.code, "InvalidParameter", "{}", &q[..q.len().min(40)]);
        }
    }
}
