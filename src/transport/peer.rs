//! How a node talks to its peers outside openraft's own RPCs: how it authenticates (mutual TLS
//! with its node certificate, or the cluster secret in plaintext), the pooled HTTP clients, and
//! binary calls to a peer's internal endpoints (forwarded writes, read indexes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::RootCertStore;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::version::{PeerVersion, PeerVersions};
use crate::codec;
use crate::crypto::SecretString;
use crate::raft::error::ClusterError;
use crate::raft::types::NodeId;
use crate::tls::reload::CertStore;

/// Header carrying the cluster id on internal requests.
pub const CLUSTER_HEADER: &str = "x-raftkms-cluster";

/// Header on appends: milliseconds since a quorum last acknowledged the sending leader. A
/// follower dates its leader contact back by this much, so a learner fed by a leader that is
/// itself cut off from its quorum does not report fresh contact on its stale answers.
pub const QUORUM_AGE_HEADER: &str = "x-raftkms-quorum-age-ms";

/// Header on appends: the highest log index the sending leader declares visible (committed and in
/// the log of every follower read-lease holder it counts); a follower applies no further
/// (`raft::lease::Visibility`).
pub const VISIBLE_HEADER: &str = "x-raftkms-visible";

/// Paths of the internal listener's binary endpoints, shared by client and server.
pub mod paths {
    pub const RAFT_APPEND: &str = "/raft/append";
    /// A follower asks the leader for a read lease (`node::reads`).
    pub const LEASE: &str = "/internal/lease";
    pub const RAFT_VOTE: &str = "/raft/vote";
    pub const RAFT_SNAPSHOT: &str = "/raft/snapshot";
    pub const FORWARD_WRITE: &str = "/internal/write";
    pub const READ_INDEX: &str = "/internal/read-index";
    /// A member's part of an audit query (its own trail).
    pub const AUDIT_QUERY: &str = "/internal/audit-query";
    /// A member's own status and API totals (the console's cluster view).
    pub const NODE_STATUS: &str = "/internal/node-status";
    /// Which build a node runs (its answer's version headers; `transport::version`).
    pub const VERSION: &str = "/internal/version";
}

/// How a node's internal traffic is secured.
#[derive(Clone)]
pub enum PeerSecurity {
    /// Plaintext (`insecure-plaintext`, loopback tests): every call carries the cluster secret.
    Secret(Arc<SecretString>),
    /// Mutual TLS: this node presents its certificate, and accepts only a server whose
    /// certificate chains to the cluster CA and names the node it dialled.
    Tls {
        cert: Arc<CertStore>,
        roots: Arc<RootCertStore>,
    },
}

impl std::fmt::Debug for PeerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerSecurity::Secret(_) => f.write_str("Secret(<redacted>)"),
            PeerSecurity::Tls { cert, .. } => f.debug_struct("Tls").field("cert", cert).finish(),
        }
    }
}

/// Builds a pooled HTTP client for internal calls. `idle` must stay below the peers' keep-alive
/// idle timeout (their `header-read-timeout-ms`), so a pooled connection is never reused at the
/// moment the server closes it. `tls`: the rustls configuration (mutual TLS), or plaintext.
pub fn http_client(
    connect_timeout: Duration,
    idle: Duration,
    tls: Option<rustls::ClientConfig>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(8)
        .tcp_nodelay(true)
        // Peers are reached directly, never through an HTTP(S)_PROXY of the environment.
        .no_proxy();
    if let Some(tls) = tls {
        b = b.use_preconfigured_tls(tls).https_only(true);
    }
    b.build()
}

/// The pooled clients and credentials of one node, for calls to its peers: under mutual TLS one
/// client per peer (each accepts only that peer's node certificate), in plaintext one shared
/// client.
#[derive(Clone, Debug)]
pub struct Peers {
    pub cluster_id: String,
    security: PeerSecurity,
    connect_timeout: Duration,
    idle: Duration,
    plain: reqwest::Client,
    per_node: Arc<Mutex<HashMap<NodeId, reqwest::Client>>>,
    /// What each peer last reported about its build (`transport::version`).
    versions: Arc<PeerVersions>,
}

impl Peers {
    /// `connect_timeout` bounds each connection attempt (and TLS handshake); `idle` as in
    /// [`http_client`].
    pub fn new(
        cluster_id: String,
        security: PeerSecurity,
        connect_timeout: Duration,
        idle: Duration,
    ) -> Result<Self, ClusterError> {
        let plain = http_client(connect_timeout, idle, None)
            .map_err(|e| ClusterError::Forward(format!("cannot build the peer client: {e}")))?;
        Ok(Peers {
            cluster_id,
            security,
            connect_timeout,
            idle,
            plain,
            per_node: Arc::default(),
            versions: Arc::default(),
        })
    }

    /// Whether peers speak mutual TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.security, PeerSecurity::Tls { .. })
    }

    /// The URL of `path` on the internal listener at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{addr}{path}")
    }

    /// The client for calls to node `target`.
    pub fn client_for(&self, target: NodeId) -> Result<reqwest::Client, ClusterError> {
        let PeerSecurity::Tls { cert, roots } = &self.security else {
            return Ok(self.plain.clone());
        };
        let mut clients = self.per_node.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&target) {
            return Ok(c.clone());
        }
        let tls = crate::tls::config::internal_client(
            Some(cert.clone()),
            roots.clone(),
            &self.cluster_id,
            Some(target),
        )
        .map_err(|e| ClusterError::Forward(e.to_string()))?;
        let client = http_client(self.connect_timeout, self.idle, Some(tls))
            .map_err(|e| ClusterError::Forward(format!("cannot build the peer client: {e}")))?;
        clients.insert(target, client.clone());
        Ok(client)
    }

    /// What each peer last reported about its build.
    pub fn versions(&self) -> &PeerVersions {
        &self.versions
    }

    /// Adds this node's credentials to a request: the cluster id, and in plaintext the cluster
    /// secret (under mutual TLS the certificate is the credential); and this build's version
    /// (`transport::version`).
    pub fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = super::version::with_this_build(req.header(CLUSTER_HEADER, &self.cluster_id));
        match &self.security {
            PeerSecurity::Secret(secret) => req.bearer_auth(secret.expose()),
            PeerSecurity::Tls { .. } => req,
        }
    }

    /// Constant-time check of a presented cluster secret; always false under mutual TLS.
    pub fn secret_matches(&self, presented: &str) -> bool {
        match &self.security {
            PeerSecurity::Secret(secret) => constant_time_eq(presented, secret.expose()),
            PeerSecurity::Tls { .. } => false,
        }
    }

    /// Asks node `target` at `addr` which build it runs (a node about to join). Every later
    /// build puts its version on every internal answer, refusals included; an answer without it
    /// (the first release has no such endpoint and answers `401`) is the first release's.
    pub async fn probe_version(
        &self,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<PeerVersion, ClusterError> {
        let request = self
            .authorize(self.client_for(target)?.get(self.url(addr, paths::VERSION)))
            .timeout(timeout);
        let resp = request
            .send()
            .await
            .map_err(|e| ClusterError::Forward(format!("{addr}: {}", error_chain(&e))))?;
        let status = resp.status();
        let legacy = !resp.headers().contains_key(super::version::PROTOCOL_HEADER);
        if !status.is_success() && !legacy {
            let text = resp.text().await.unwrap_or_default();
            return Err(ClusterError::Forward(format!(
                "{addr} answered {status} when asked for its version: {text}"
            )));
        }
        let version = PeerVersion::from_headers(resp.headers())
            .map_err(|e| ClusterError::Codec(format!("{addr}: {e}")))?;
        self.versions.note(target, version.clone());
        Ok(version)
    }

    /// Calls a binary internal endpoint on node `target` at `addr`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        let body = codec::encode("internal request", req)
            .map_err(|e| ClusterError::Codec(e.to_string()))?;
        let request = self
            .authorize(self.client_for(target)?.post(self.url(addr, path)))
            .timeout(timeout)
            .body(body);
        let forward =
            |e: reqwest::Error| ClusterError::Forward(format!("{addr}: {}", error_chain(&e)));
        let resp = request.send().await.map_err(forward)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(forward)?;
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
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(presented: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// An error with its sources: reqwest's own message hides why a TLS handshake was refused (for
/// example "dialled node 2, the certificate names node 3").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
