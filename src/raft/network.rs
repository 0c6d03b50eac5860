//! Raft RPC client: append entries, vote and snapshot chunks over HTTP to a peer's internal
//! listener. One pooled `reqwest` client per node (keep-alive connections are reused); every call
//! has a timeout; every call presents the cluster secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::typ::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, RPCError, RaftError, VoteRequest, VoteResponse,
};
use super::types::{Node, NodeId, TypeConfig};
use crate::codec;

/// Header carrying the cluster id on internal requests.
pub const CLUSTER_HEADER: &str = "x-raftkms-cluster";

/// How a node authenticates to its peers.
#[derive(Clone)]
pub struct PeerAuth {
    pub cluster_id: String,
    secret: Arc<zeroize::Zeroizing<String>>,
}

impl PeerAuth {
    pub fn new(cluster_id: String, secret: String) -> Self {
        PeerAuth {
            cluster_id,
            secret: Arc::new(zeroize::Zeroizing::new(secret)),
        }
    }

    /// Adds the secret and cluster id to a request.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(self.secret.as_str())
            .header(CLUSTER_HEADER, &self.cluster_id)
    }

    /// Constant-time check of a presented secret.
    pub fn secret_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        let a = presented.as_bytes();
        let b = self.secret.as_bytes();
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("cluster_id", &self.cluster_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Builds the pooled HTTP client used for every internal call.
pub fn http_client(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(8)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Creates per-peer clients for openraft.
#[derive(Clone)]
pub struct Network {
    client: reqwest::Client,
    auth: PeerAuth,
    /// When each unreachable peer was last reported, so a down peer is logged every 10 s, not at
    /// every heartbeat.
    warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl Network {
    pub fn new(client: reqwest::Client, auth: PeerAuth) -> Self {
        Network {
            client,
            auth,
            warned: Arc::default(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            base: format!("http://{}", node.raft_addr),
            client: self.client.clone(),
            auth: self.auth.clone(),
            warned: self.warned.clone(),
        }
    }
}

/// A connection handle to one peer.
pub struct PeerClient {
    target: NodeId,
    base: String,
    client: reqwest::Client,
    auth: PeerAuth,
    warned: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl PeerClient {
    fn note_unreachable(&self, e: &reqwest::Error) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let due = warned
            .get(&self.target)
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        if due {
            warned.insert(self.target, Instant::now());
            tracing::warn!(peer = self.target, addr = %self.base, error = %e, "peer unreachable; openraft keeps retrying with backoff");
        }
    }

    fn note_reachable(&self) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.remove(&self.target).is_some() {
            tracing::info!(peer = self.target, addr = %self.base, "peer reachable again");
        }
    }

    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            codec::encode("raft rpc", req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = self
            .auth
            .apply(self.client.post(format!("{}{}", self.base, path)))
            .timeout(timeout)
            .body(body);
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Err(if e.is_connect() {
                    self.note_unreachable(&e);
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                })
            }
        };
        self.note_reachable();
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let e =
                std::io::Error::other(format!("peer {} answered {status}: {text}", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let result: Result<Resp, RaftError<E>> = codec::decode("raft rpc reply", &bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RPCError> {
        self.call("/raft/append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RPCError<InstallSnapshotError>> {
        self.call("/raft/snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RPCError> {
        self.call("/raft/vote", &rpc, option.hard_ttl()).await
    }
}
