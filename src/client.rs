//! A small Tencent Cloud KMS API client that signs requests with TC3-HMAC-SHA256, used by tests,
//! the fault-injection harness and benchmarks (the reference clients are the Python SDK and
//! tccli; this one exists so Rust code can drive a cluster without them).

use std::time::Duration;

use serde_json::Value;

use crate::crypto::SecretString;
use crate::http::tencent::tc3::{self, Authorization, SignedRequest};

/// An error envelope (`Response.Error`) or a transport failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    #[error("{code}: {message}")]
    Api {
        code: String,
        message: String,
        request_id: String,
    },
    #[error("transport: {0}")]
    Transport(String),
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl KmsError {
    /// The Tencent error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            KmsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A client for one endpoint: `host:port` or `http://host:port` (plain HTTP), or
/// `https://host:port` with [`KmsClient::with_ca`] (TLS, trusting that CA).
#[derive(Clone, Debug)]
pub struct KmsClient {
    http: reqwest::Client,
    /// `http` or `https`.
    scheme: &'static str,
    endpoint: String,
    region: String,
    secret_id: String,
    secret_key: std::sync::Arc<SecretString>,
    /// Added to the local clock when stamping requests (for servers under a faked clock).
    pub clock_offset_secs: i64,
    /// Sent as `X-Raftkms-Consistency` when set.
    pub consistency: Option<String>,
    /// Also sign `x-tc-action` and `x-tc-region` (the Tencent SDK signs only
    /// `content-type;host`).
    pub sign_action_headers: bool,
}

/// The HTTP client settings of every API client (this one and the benchmark drivers of the
/// peers, which must be driven exactly alike): keep-alive pool, TCP_NODELAY, 30 s timeout.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The scheme an endpoint names (`https://` or else `http`) and the endpoint without it.
fn split_scheme(endpoint: &str) -> (&'static str, String) {
    match endpoint.strip_prefix("https://") {
        Some(rest) => ("https", rest.trim_end_matches('/').to_string()),
        None => (
            "http",
            endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
        ),
    }
}

/// [`http_client`] speaking TLS to servers whose certificate chains to the CA in `ca_file`.
pub fn https_client(ca_file: &std::path::Path) -> Result<reqwest::Client, KmsError> {
    let roots =
        crate::tls::config::roots(ca_file).map_err(|e| KmsError::Transport(e.to_string()))?;
    let tls =
        crate::tls::config::api_client(roots).map_err(|e| KmsError::Transport(e.to_string()))?;
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| KmsError::Transport(e.to_string()))
}

impl KmsClient {
    pub fn new(endpoint: &str, region: &str, secret_id: &str, secret_key: &str) -> Self {
        let http = http_client();
        let (scheme, endpoint) = split_scheme(endpoint);
        KmsClient {
            http,
            scheme,
            endpoint,
            region: region.to_string(),
            secret_id: secret_id.to_string(),
            secret_key: std::sync::Arc::new(SecretString::from(secret_key)),
            clock_offset_secs: 0,
            consistency: None,
            sign_action_headers: false,
        }
    }

    /// Speaks TLS (every endpoint becomes `https://`) trusting the CA in `ca_file`.
    pub fn with_ca(self, ca_file: &std::path::Path) -> Result<Self, KmsError> {
        Ok(KmsClient {
            http: https_client(ca_file)?,
            scheme: "https",
            ..self
        })
    }

    /// The same credentials against another endpoint (sharing the connection pool and TLS
    /// settings; a scheme on `endpoint` is dropped).
    pub fn at(&self, endpoint: &str) -> Self {
        KmsClient {
            endpoint: split_scheme(endpoint).1,
            ..self.clone()
        }
    }

    /// The same credentials and endpoint, acting in another region (`X-TC-Region`).
    pub fn in_region(&self, region: &str) -> Self {
        KmsClient {
            region: region.to_string(),
            ..self.clone()
        }
    }

    /// Calls `action` with a JSON object of parameters; returns the `Response` object.
    pub async fn call(&self, action: &str, params: Value) -> Result<Value, KmsError> {
        self.call_with_headers(action, params).await.map(|(v, _)| v)
    }

    /// As [`Self::call`], also returning the HTTP response headers (e.g. the stale-read lag).
    pub async fn call_with_headers(
        &self,
        action: &str,
        params: Value,
    ) -> Result<(Value, reqwest::header::HeaderMap), KmsError> {
        let body = serde_json::to_vec(&params).map_err(|e| KmsError::BadReply(e.to_string()))?;
        let timestamp = crate::clock::Clock::wall_secs(&crate::clock::SystemClock) as i64
            + self.clock_offset_secs;
        let authorization = self.authorization(action, &body, timestamp)?;
        let mut req = self
            .http
            .post(format!("{}://{}/", self.scheme, self.endpoint))
            .header("content-type", CONTENT_TYPE)
            .header("host", &self.endpoint)
            .header("x-tc-action", action)
            .header("x-tc-version", crate::http::tencent::VERSION)
            .header("x-tc-timestamp", timestamp.to_string())
            .header("x-tc-region", &self.region)
            .header("authorization", authorization)
            .body(body);
        if let Some(c) = &self.consistency {
            req = req.header(crate::wire::CONSISTENCY_HEADER, c);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| KmsError::Transport(e.to_string()))?;
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| KmsError::Transport(e.to_string()))?;
        Ok((response_of(&bytes)?, headers))
    }

    /// The TC3 `Authorization` header of a POST with `body` at `timestamp`, signing
    /// `content-type;host` as the Tencent SDK does.
    fn authorization(&self, action: &str, body: &[u8], timestamp: i64) -> Result<String, KmsError> {
        let date = tc3::utc_date(timestamp)
            .ok_or_else(|| KmsError::Transport("clock out of range".into()))?;
        let mut signed_headers: Vec<String> = vec!["content-type".into(), "host".into()];
        if self.sign_action_headers {
            signed_headers.extend(["x-tc-action".into(), "x-tc-region".into()]);
        }
        let mut auth = Authorization {
            secret_id: self.secret_id.clone(),
            date,
            service: tc3::SERVICE.into(),
            signed_headers,
            signature: String::new(),
        };
        let header = |name: &str| match name {
            "content-type" => Some(CONTENT_TYPE.to_string()),
            "host" => Some(self.endpoint.clone()),
            "x-tc-action" => Some(action.to_string()),
            "x-tc-region" => Some(self.region.clone()),
            _ => None,
        };
        let signed = SignedRequest {
            method: "POST",
            query: "",
            header: &header,
            body,
            timestamp,
            unsigned_payload: false,
        };
        auth.signature = tc3::signature(&auth, &signed, self.secret_key.expose().as_bytes())
            .map_err(|e| KmsError::Transport(e.to_string()))?;
        Ok(format!(
            "TC3-HMAC-SHA256 Credential={}/{}/{}/tc3_request, SignedHeaders={}, Signature={}",
            auth.secret_id,
            auth.date,
            auth.service,
            auth.signed_headers.join(";"),
            auth.signature
        ))
    }
}

/// The content type of every request (and of every answer).
const CONTENT_TYPE: &str = "application/json";

/// The `Response` object of an answer, or its `Error` as [`KmsError::Api`].
fn response_of(bytes: &[u8]) -> Result<Value, KmsError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| KmsError::BadReply(e.to_string()))?;
    let response = v
        .get("Response")
        .cloned()
        .ok_or_else(|| KmsError::BadReply("no Response".into()))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(err) = response.get("Error") {
        return Err(KmsError::Api {
            code: text(err.get("Code")),
            message: text(err.get("Message")),
            request_id: text(response.get("RequestId")),
        });
    }
    Ok(response)
}
