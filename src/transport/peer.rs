//! How a node talks to its peers outside openraft's own RPCs: the cluster secret it presents,
//! the pooled HTTP client, and binary calls to a peer's internal endpoints (forwarded writes,
//! read indexes) and JSON calls to its admin endpoints.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::crypto::SecretString;
use crate::raft::error::ClusterError;

/// Header carrying the cluster id on internal requests.
pub const CLUSTER_HEADER: &str = "x-raftkms-cluster";

/// Header on appends: milliseconds since a quorum last acknowledged the sending leader. A
/// follower dates its leader contact back by this much, so a learner fed by a leader that is
/// itself cut off from its quorum does not report fresh contact on its stale answers.
pub const QUORUM_AGE_HEADER: &str = "x-raftkms-quorum-age-ms";

/// Paths of the internal listener's binary endpoints, shared by client and server.
pub mod paths {
    pub const RAFT_APPEND: &str = "/raft/append";
    pub const RAFT_VOTE: &str = "/raft/vote";
    pub const RAFT_SNAPSHOT: &str = "/raft/snapshot";
    pub const FORWARD_WRITE: &str = "/internal/write";
    pub const READ_INDEX: &str = "/internal/read-index";
}

/// How a node authenticates to its peers.
#[derive(Clone, Debug)]
pub struct PeerAuth {
    pub cluster_id: String,
    secret: Arc<SecretString>,
}

impl PeerAuth {
    pub fn new(cluster_id: String, secret: SecretString) -> Self {
        PeerAuth {
            cluster_id,
            secret: Arc::new(secret),
        }
    }

    /// Adds the secret and cluster id to a request.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(self.secret.expose())
            .header(CLUSTER_HEADER, &self.cluster_id)
    }

    /// Constant-time check of a presented secret.
    pub fn secret_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        let a = presented.as_bytes();
        let b = self.secret.expose().as_bytes();
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

/// Builds the pooled HTTP client used for every internal call. `idle` must stay below the
/// peers' keep-alive idle timeout (their `header-read-timeout-ms`), so a pooled connection is
/// never reused at the moment the server closes it.
pub fn http_client(connect_timeout: Duration, idle: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(8)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The pooled client and credentials of one node, for calls to its peers.
#[derive(Clone, Debug)]
pub struct Peers {
    pub client: reqwest::Client,
    pub auth: PeerAuth,
}

/// A JSON answer of a peer's admin endpoint, passed through as it came.
pub struct JsonReply {
    pub status: u16,
    pub body: bytes::Bytes,
}

impl Peers {
    /// Posts to a peer's internal listener with the cluster credentials; the answer's status and
    /// body. `body` puts the request body on the request.
    async fn post(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
        body: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), ClusterError> {
        let request = self
            .auth
            .apply(self.client.post(format!("http://{addr}{path}")))
            .timeout(timeout);
        let resp = body(request)
            .send()
            .await
            .map_err(|e| ClusterError::Forward(format!("{addr}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClusterError::Forward(format!("{addr}: {e}")))?;
        Ok((status, bytes))
    }

    /// Calls a binary internal endpoint on a peer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        let body = codec::encode("internal request", req)
            .map_err(|e| ClusterError::Codec(e.to_string()))?;
        let (status, bytes) = self.post(addr, path, timeout, |r| r.body(body)).await?;
        if !status.is_success() {
            return Err(ClusterError::Forward(format!(
                "{addr} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        // A reply this binary cannot read (another version's format) is not a transport failure:
        // retrying will not help.
        codec::decode("internal reply", &bytes)
            .map_err(|e| ClusterError::Codec(format!("{addr}: {e}")))
    }

    /// Posts a JSON body to a peer's admin endpoint and returns its answer unchanged.
    pub async fn post_json<T: Serialize>(
        &self,
        addr: &str,
        path: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<JsonReply, ClusterError> {
        let (status, body) = self.post(addr, path, timeout, |r| r.json(body)).await?;
        Ok(JsonReply {
            status: status.as_u16(),
            body,
        })
    }
}
