//! Everything before a Tencent action runs, in phases: the cheap header checks, the TC3
//! signature (credential looked up and unwrapped by the core), the request's scope (read gate,
//! region), and the parameters.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Map, Value};

use super::error_code::ApiError;
use super::params::Params;
use super::{query, tc3, Request, VERSION};
use crate::config::Consistency;
use crate::kms::{Caller, Kms, RequestInfo};
use crate::wire::CONSISTENCY_HEADER;

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Authenticates a request and parses its parameters.
pub async fn request<'a>(
    kms: &'a Kms,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    source: Option<std::net::SocketAddr>,
) -> Result<Request<'a>, ApiError> {
    check_action_and_version(headers)?;
    let (auth, timestamp) = authorization(kms, headers)?;
    let consistency = consistency(kms, headers)?;
    // The SecretId is looked up before the body is read: a client without a credential gets its
    // refusal without the node reading (up to MAX_BODY of) anything it sends.
    let credential = kms.credential(&auth.secret_id, consistency).await?;
    // The body is read only after the cheap header checks, and within a deadline, so neither an
    // unsigned request nor a slow sender ties up a node for long.
    let body_timeout = kms.node().config().limits.body_timeout_ms;
    let body = tokio::time::timeout(Duration::from_millis(body_timeout), read_body(body))
        .await
        .map_err(|_| {
            ApiError::new(
                "InvalidParameter",
                format!("the request body did not arrive within {body_timeout} ms"),
            )
        })??;
    let query = uri.query().unwrap_or("");
    let caller = verify(credential, method, query, headers, &body, &auth, timestamp)?;
    // Rates are charged to the authenticated caller before anything else costs the node (the
    // read gate, the parameters): an unauthenticated client cannot spend a victim's tokens.
    let action = header_str(headers, "x-tc-action").unwrap_or_default();
    kms.admit(&caller, super::actions::class_of(&action))?;
    let region = header_str(headers, "x-tc-region");
    let request = RequestInfo {
        policy_action: format!("{}:{action}", service_of(&action).0),
        source,
    };
    let scope = if action == "DescribeClusterStatus" {
        // The cluster view answers from this node's own state (it is most needed on a node
        // that has lost its quorum; kms::cluster).
        kms.open_local_scope(caller, request, region).await?
    } else {
        kms.open_scope(caller, request, region, consistency).await?
    };
    let params = parameters(method, query, &body)?;
    Ok(Request { kms, scope, params })
}

/// The SecretId an `Authorization` header names, verified or not (for the audit record of a
/// request refused before its caller was known). Bounded: at most 128 characters are kept.
pub fn claimed_secret_id(headers: &HeaderMap) -> Option<String> {
    let authz = header_str(headers, "authorization")?;
    let auth = tc3::parse_authorization(&authz).ok()?;
    Some(auth.secret_id.chars().take(128).collect())
}

/// The service (TC3 credential scope) and API version of an action: KMS 2019-01-18, except the
/// audit query, which is CloudAudit's (2019-03-19), so its own SDK client calls it unchanged.
pub fn service_of(action: &str) -> (&'static str, &'static str) {
    match action {
        "LookUpEvents" => ("cloudaudit", "2019-03-19"),
        _ => (tc3::SERVICE, VERSION),
    }
}

/// `X-TC-Action` is present and `X-TC-Version`, if given, is the one served for it.
fn check_action_and_version(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(action) = header_str(headers, "x-tc-action").filter(|a| !a.is_empty()) else {
        return Err(ApiError::new(
            "InvalidAction",
            "the X-TC-Action header is missing",
        ));
    };
    let (_, version) = service_of(&action);
    match header_str(headers, "x-tc-version") {
        Some(v) if v != version => Err(ApiError::new(
            "NoSuchVersion",
            format!("API version `{v}` is not served for {action}; use {version}"),
        )),
        _ => Ok(()),
    }
}

/// The parsed `Authorization` header and a timestamp within the allowed skew of this node's
/// clock.
fn authorization(kms: &Kms, headers: &HeaderMap) -> Result<(tc3::Authorization, i64), ApiError> {
    let authz = header_str(headers, "authorization").ok_or_else(|| {
        ApiError::new(
            "AuthFailure.InvalidAuthorization",
            "the Authorization header is missing",
        )
    })?;
    let auth = tc3::parse_authorization(&authz)?;
    let policy = &kms.node().config().auth;
    if let Some(missing) = policy
        .require_signed_headers
        .iter()
        .find(|h| !auth.signed_headers.contains(h))
    {
        return Err(ApiError::new(
            "AuthFailure.InvalidAuthorization",
            format!(
                "SignedHeaders must include `{missing}` on this node (auth.require-signed-headers)"
            ),
        ));
    }
    if !policy.allow_unsigned_payload
        && header_str(headers, "x-tc-content-sha256").as_deref() == Some("UNSIGNED-PAYLOAD")
    {
        return Err(ApiError::new(
            "AuthFailure.InvalidAuthorization",
            "UNSIGNED-PAYLOAD is not accepted on this node (auth.allow-unsigned-payload = false): \
             sign the body",
        ));
    }
    let timestamp: i64 = header_str(headers, "x-tc-timestamp")
        .ok_or_else(|| ApiError::missing("X-TC-Timestamp"))?
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid("X-TC-Timestamp", "must be Unix seconds"))?;
    if (kms.now_secs() as i64).abs_diff(timestamp) > tc3::MAX_SKEW_SECS as u64 {
        return Err(tc3::Tc3Error::Expired.into());
    }
    Ok((auth, timestamp))
}

/// The consistency the request chose (`X-Raftkms-Consistency`), or the node's default.
fn consistency(kms: &Kms, headers: &HeaderMap) -> Result<Consistency, ApiError> {
    match header_str(headers, CONSISTENCY_HEADER).as_deref() {
        None => Ok(kms.default_consistency()),
        Some("linearizable") => Ok(Consistency::Linearizable),
        Some("stale") => Ok(Consistency::Stale),
        Some(other) => Err(ApiError::invalid(
            CONSISTENCY_HEADER,
            format!("`{other}` is not linearizable or stale"),
        )),
    }
}

/// Reads the body, keeping at most `MAX_BODY` bytes.
pub(super) async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    crate::http::body::read_bounded(body)
        .await
        .map_err(|e| match e {
            crate::http::body::BodyError::Read(_) => {
                ApiError::new("InvalidParameter", e.to_string())
            }
            crate::http::body::BodyError::TooLarge => {
                ApiError::new("RequestSizeLimitExceeded", e.to_string())
            }
        })
}

/// Checks the TC3 signature with the credential's secret key; the caller it names.
fn verify(
    (uin, principal, secret): (u64, crate::registry::iam::Principal, crate::crypto::Secret),
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    auth: &tc3::Authorization,
    timestamp: i64,
) -> Result<Caller, ApiError> {
    let header_of = |name: &str| header_str(headers, name);
    let signed = tc3::SignedRequest {
        method: method.as_str(),
        query: if *method == Method::GET { query } else { "" },
        header: &header_of,
        body,
        timestamp,
        unsigned_payload: header_str(headers, "x-tc-content-sha256").as_deref()
            == Some("UNSIGNED-PAYLOAD"),
    };
    let action = header_str(headers, "x-tc-action").unwrap_or_default();
    tc3::verify_signature_for(service_of(&action).0, auth, &signed, secret.expose())?;
    Ok(Caller {
        uin,
        credential_id: auth.secret_id.clone(),
        principal,
    })
}

/// The action's parameters: the query string (GET) or the JSON body object (POST).
fn parameters(method: &Method, query: &str, body: &[u8]) -> Result<Params, ApiError> {
    if *method == Method::GET {
        return Ok(Params(query::unflatten(query)?));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Params(Map::new()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(Params(m)),
        _ => Err(ApiError::new(
            "InvalidParameter",
            "the request body is not a JSON object",
        )),
    }
}
