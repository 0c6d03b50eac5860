//! Tencent's legacy KMS API (v2): `GET` or `POST /v2/index.php` with form-encoded parameters,
//! `HmacSHA1` / `HmacSHA256` signatures ([`sign`]), a Nonce accepted once per node ([`nonce`]),
//! and `{"code": 0, "message": "", "codeDesc": "Success", …}` answers ([`reply`]). Same keys,
//! credentials, policies, audit trail and consistency as API 3.0: each action runs the core
//! operation of its API 3.0 counterpart ([`actions`]).

pub mod actions;
pub mod nonce;
pub mod reply;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::Extension;
use serde_json::{Map, Value};

use super::error_code::ApiError;
use super::params::Params;
use super::Request;
use crate::kms::{Caller, Finished, Kms, RequestInfo};

/// The one path of the legacy API.
pub const PATH: &str = "/v2/index.php";

/// Parameters every legacy request may carry besides the action's own.
const COMMON: [&str; 10] = [
    "Action",
    "Nonce",
    "Timestamp",
    "SecretId",
    "Signature",
    "SignatureMethod",
    "Region",
    "RequestClient",
    "Version",
    "Token",
];

/// What the legacy listener shares across requests: the core and the replay cache.
#[derive(Clone)]
pub struct V2State {
    pub kms: Arc<Kms>,
    pub nonces: Arc<nonce::NonceCache>,
}

/// `GET /v2/index.php` and `POST /v2/index.php`. Like API 3.0, each request runs in a task of
/// its own so a client that hangs up does not cut short what it started.
pub async fn serve(
    State(state): State<V2State>,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let source = connect.map(|Extension(ConnectInfo(a))| a);
    crate::http::in_own_task(serve_request(state, source, method, uri, headers, body)).await
}

async fn serve_request(
    state: V2State,
    source: Option<std::net::SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let kms = &state.kms;
    if let Err(e) = kms.audit_gate() {
        return reply::error(&ApiError::from(e), &request_id);
    }
    let (result, scope, action, claimed) =
        match authenticate(&state, &method, &uri, &headers, body, source).await {
            Ok((name, req)) => {
                let result = actions::dispatch(&name, &req).await;
                (result, Some(req.scope), name, None)
            }
            Err(Refused {
                error,
                action,
                secret_id,
            }) => (Err(error), None, action.unwrap_or_default(), secret_id),
        };
    let named = format!("kms:{}", actions::policy_name(&action).unwrap_or(&action));
    let finished = |error_code| Finished {
        scope: scope.as_ref(),
        claimed_secret_id: claimed.as_deref(),
        dialect: "tencent-v2",
        action: &named,
        request_id: &request_id,
        error_code,
        source,
        started,
    };
    // The record's result is the `codeDesc` the client receives ("Success" when it succeeded).
    let result = crate::http::recorded(
        kms,
        result,
        |e: &ApiError| reply::v2_code(e.code).desc,
        finished,
    )
    .await;
    match result {
        Ok(fields) => reply::success(fields, &request_id),
        Err(e) => {
            match &e.detail {
                Some(d) => {
                    tracing::warn!(action, code = e.code, request_id, error = %d, "legacy request failed on this node")
                }
                None => {
                    tracing::debug!(action, code = e.code, request_id, "legacy request refused")
                }
            }
            reply::error(&e, &request_id)
        }
    }
}

/// A request refused before its action ran, with what is known of it for the audit record.
struct Refused {
    error: ApiError,
    action: Option<String>,
    secret_id: Option<String>,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused {
            error,
            action: None,
            secret_id: None,
        }
    }
}

fn v2_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// Everything before the action: the parameters, the signature, the Nonce, the rate limits and
/// the request's scope.
async fn authenticate<'a>(
    state: &'a V2State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    source: Option<std::net::SocketAddr>,
) -> Result<(String, Request<'a>), Refused> {
    let kms = &*state.kms;
    let raw = if *method == Method::POST {
        let limit = kms.node().config().limits.body_timeout_ms;
        tokio::time::timeout(
            Duration::from_millis(limit),
            super::authenticate::read_body(body),
        )
        .await
        .map_err(|_| {
            v2_error(
                "InvalidParameter",
                format!("the request body did not arrive within {limit} ms"),
            )
        })??
        .to_vec()
    } else {
        uri.query().unwrap_or("").as_bytes().to_vec()
    };
    let params = parse_form(&raw)?;
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let action = get("Action")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::missing("Action"))?
        .to_string();
    let secret_id = get("SecretId").map(|s| s.chars().take(128).collect::<String>());
    let refused = |error: ApiError| Refused {
        error,
        action: Some(action.clone()),
        secret_id: secret_id.clone(),
    };
    let Some(policy_name) = actions::policy_name(&action) else {
        return Err(refused(v2_error(
            "InvalidAction",
            format!(
                "action is not existed: `{}` is not an action of the legacy KMS API",
                action.chars().take(64).collect::<String>()
            ),
        )));
    };
    let secret_id = get("SecretId")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refused(ApiError::missing("SecretId")))?;
    let signature = get("Signature").ok_or_else(|| refused(ApiError::missing("Signature")))?;
    let nonce = get("Nonce")
        .filter(|n| !n.is_empty() && n.len() <= 64)
        .ok_or_else(|| {
            refused(ApiError::invalid(
                "Nonce",
                "must be given, 1 to 64 characters",
            ))
        })?;
    let timestamp: u64 = get("Timestamp")
        .ok_or_else(|| refused(ApiError::missing("Timestamp")))?
        .parse()
        .map_err(|_| refused(ApiError::invalid("Timestamp", "must be Unix seconds")))?;
    let sign_method = sign::Method::parse(get("SignatureMethod")).ok_or_else(|| {
        refused(ApiError::invalid(
            "SignatureMethod",
            "must be HmacSHA1 or HmacSHA256",
        ))
    })?;
    if get("Token").is_some_and(|t| !t.is_empty()) {
        return Err(refused(v2_error(
            "AuthFailure.TokenFailure",
            "temporary credentials (Token) are not supported by raftkms; sign with a permanent SecretId",
        )));
    }
    let now = kms.now_secs();
    if now.abs_diff(timestamp) > sign::MAX_SKEW_SECS {
        return Err(refused(v2_error(
            "AuthFailure.SignatureExpire",
            "the request's Timestamp is more than 5 minutes from the server's time",
        )));
    }
    if *method == Method::POST && params.iter().any(|(_, v)| v.starts_with('@')) {
        // The SDK leaves such values (file uploads) out of the signature: they would be unsigned.
        return Err(refused(ApiError::invalid(
            "parameters",
            "a POST parameter value may not start with `@` (it would not be signed)",
        )));
    }
    let consistency = kms.default_consistency();
    let (uin, principal, secret) = kms
        .credential(secret_id, consistency)
        .await
        .map_err(|e| refused(e.into()))?;
    let signed: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .cloned()
        .collect();
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let verified = signing_hosts(&host).iter().any(|h| {
        let message = sign::string_to_sign(method.as_str(), h, PATH, &signed);
        sign::verify(sign_method, secret.expose(), &message, signature)
    });
    if !verified {
        return Err(refused(v2_error(
            "AuthFailure.SignatureFailure",
            "authentication failed: the Signature does not match the request",
        )));
    }
    let caller = Caller {
        uin,
        credential_id: secret_id.to_string(),
        principal,
    };
    kms.admit(&caller, actions::class_of(&action))
        .map_err(|e| refused(e.into()))?;
    // After the rate limit: a credential cannot fill the cache faster than it may call.
    match state.nonces.accept(secret_id, nonce, timestamp, now) {
        Ok(()) => {}
        Err(nonce::Refused::Replayed) => {
            return Err(refused(v2_error(
                "AuthFailure.NonceUsed",
                "this Nonce was already used with this SecretId and Timestamp: a replayed request",
            )))
        }
        Err(nonce::Refused::Full) => {
            return Err(refused(v2_error(
                "RequestLimitExceeded",
                "this node is tracking too many recent legacy requests; retry shortly",
            )))
        }
    }
    let request = RequestInfo {
        policy_action: format!("kms:{policy_name}"),
        source,
    };
    let region = get("Region").map(str::to_string);
    let scope = kms
        .open_scope(caller, request, region, consistency)
        .await
        .map_err(|e| refused(e.into()))?;
    let own: Map<String, Value> = params
        .into_iter()
        .filter(|(k, _)| !COMMON.contains(&k.as_str()))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok((
        action,
        Request {
            kms,
            scope,
            params: Params(own),
        },
    ))
}

/// Most parameters a legacy request may carry (the richest action needs fewer than 20).
const MAX_PARAMS: usize = 64;

/// The form's parameters, decoded. Refused: more than [`MAX_PARAMS`]; a name given twice (the
/// signature covers one); a name holding `=` or `&`, or a value holding `&` (the signed string
/// joins them raw with those characters, so such a request could be reshaped without changing
/// its signature: `a=x&b=y` read as `a` = `x&b=y`).
fn parse_form(raw: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in form_urlencoded::parse(raw) {
        if out.len() == MAX_PARAMS {
            return Err(ApiError::invalid(
                "parameters",
                format!("at most {MAX_PARAMS} parameters are accepted"),
            ));
        }
        if k.contains(['=', '&']) || v.contains('&') {
            return Err(ApiError::invalid(
                &k.chars().take(64).collect::<String>(),
                "a parameter name may not hold `=` or `&`, nor a value `&` (they would not be signed unambiguously)",
            ));
        }
        if !seen.insert(k.clone()) {
            return Err(ApiError::invalid(&k, "is given more than once"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The hosts a client may have signed: the `Host` header as sent and, when it names no port,
/// the same host with `:443` (an endpoint configured as `host:443` is sent as `host`).
fn signing_hosts(host: &str) -> Vec<String> {
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port || host.is_empty() {
        vec![host.to_string()]
    } else {
        vec![host.to_string(), format!("{host}:443")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert!(parse_form(b"Action=Encrypt&keyId=a&keyId=b").is_err());
        // Values that would make the signed string ambiguous.
        assert!(parse_form(b"description=a%26b").is_err());
        assert!(parse_form(b"a%3Db=c").is_err());
        assert!(parse_form(b"plaintext=aGk%3D").is_ok());
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        assert!(parse_form(many.join("&").as_bytes()).is_err());
        assert!(parse_form(many[..MAX_PARAMS].join("&").as_bytes()).is_ok());
        let p = parse_form(b"Action=Encrypt&plaintext=aGk%3D&a+b=c+d").unwrap();
        assert_eq!(p[1], ("plaintext".into(), "aGk=".into()));
        assert_eq!(p[2], ("a b".into(), "c d".into()));
    }

    #[test]
    fn hosts_without_a_port_may_have_been_signed_with_443() {
        assert_eq!(signing_hosts("127.0.0.1:8443"), vec!["127.0.0.1:8443"]);
        assert_eq!(
            signing_hosts("kms.example.com"),
            vec!["kms.example.com", "kms.example.com:443"]
        );
    }

    #[test]
    fn every_action_has_an_api_3_name() {
        for (v2, _) in actions::ACTIONS {
            assert!(actions::policy_name(v2).is_some());
        }
        assert_eq!(
            actions::policy_name("GetKeyAttributes"),
            Some("DescribeKey")
        );
        assert_eq!(actions::policy_name("ScheduleKeyDeletion"), None);
    }
}
