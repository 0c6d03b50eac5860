//! Client side of the admin endpoints, used by `raftkms cluster …`, `raftkms dev` and tests.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crypto::SecretString;
use crate::raft::types::NodeId;
use crate::transport::{http_client, PeerAuth};
use crate::wire::{
    AdminError, CreateAccountRequest, CreateCredentialRequest, CredentialInfo, DigestReply,
    JoinRequest, NewCredential, NodeStatus, PutManyRequest, ReadReply, RemoveRequest, WriteReply,
    CONSISTENCY_HEADER, REQUEST_ID_HEADER,
};

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {addr}: {message}")]
    Transport { addr: String, message: String },
    #[error("{addr} refused the request ({status}): {message}")]
    Refused {
        addr: String,
        status: u16,
        message: String,
        retryable: bool,
    },
    #[error("unexpected reply from {addr}: {message}")]
    Decode { addr: String, message: String },
}

/// Talks to one node's internal listener.
#[derive(Clone, Debug)]
pub struct AdminClient {
    client: reqwest::Client,
    auth: PeerAuth,
    pub addr: String,
    timeout: Duration,
}

impl AdminClient {
    pub fn new(
        addr: impl Into<String>,
        cluster_id: impl Into<String>,
        secret: impl Into<SecretString>,
    ) -> Self {
        AdminClient {
            // Idle pooled connections are dropped after 1 s, below any node's keep-alive timeout.
            client: http_client(Duration::from_secs(2), Duration::from_secs(1)),
            auth: PeerAuth::new(cluster_id.into(), secret.into()),
            addr: addr.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same credentials, aimed at another node.
    pub fn at(&self, addr: impl Into<String>) -> Self {
        AdminClient {
            addr: addr.into(),
            ..self.clone()
        }
    }

    /// Sets the per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            addr: self.addr.clone(),
            message: e.to_string(),
        };
        let resp = self
            .auth
            .apply(req)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let (message, retryable) = match serde_json::from_slice::<AdminError>(&bytes) {
                Ok(e) => (e.error, e.retryable),
                Err(_) => (String::from_utf8_lossy(&bytes).trim().to_string(), false),
            };
            return Err(ClientError::Refused {
                addr: self.addr.clone(),
                status: status.as_u16(),
                message,
                retryable,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            addr: self.addr.clone(),
            message: e.to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn post_json<B: Serialize>(&self, path: &str, body: &B) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).json(body)
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.send(self.client.get(self.url("/admin/status"))).await
    }

    pub async fn init(&self) -> Result<serde_json::Value, ClientError> {
        self.send(self.client.post(self.url("/admin/init"))).await
    }

    pub async fn join(&self, req: &JoinRequest) -> Result<NodeStatus, ClientError> {
        self.send(self.post_json("/admin/join", req)).await
    }

    pub async fn remove(&self, id: NodeId) -> Result<NodeStatus, ClientError> {
        self.send(self.post_json("/admin/remove", &RemoveRequest { id }))
            .await
    }

    pub async fn create_account(
        &self,
        name: &str,
    ) -> Result<crate::registry::account::Account, ClientError> {
        self.send(self.post_json(
            "/admin/accounts",
            &CreateAccountRequest {
                name: name.to_string(),
            },
        ))
        .await
    }

    pub async fn accounts(&self) -> Result<Vec<crate::registry::account::Account>, ClientError> {
        self.send(self.client.get(self.url("/admin/accounts")))
            .await
    }

    pub async fn create_credential(&self, uin: u64) -> Result<NewCredential, ClientError> {
        self.send(self.post_json("/admin/credentials", &CreateCredentialRequest { uin }))
            .await
    }

    pub async fn credentials(&self) -> Result<Vec<CredentialInfo>, ClientError> {
        self.send(self.client.get(self.url("/admin/credentials")))
            .await
    }

    pub async fn revoke_credential(
        &self,
        secret_id: &str,
    ) -> Result<serde_json::Value, ClientError> {
        self.send(
            self.client
                .delete(self.url(&format!("/admin/credentials/{secret_id}"))),
        )
        .await
    }

    pub async fn digest(&self) -> Result<DigestReply, ClientError> {
        self.send(self.client.get(self.url("/admin/digest"))).await
    }

    /// Writes one record; `request_id` (a UUID) makes retries idempotent.
    pub async fn put_record(
        &self,
        name: &str,
        value: &str,
        request_id: Option<&str>,
    ) -> Result<WriteReply, ClientError> {
        let mut req = self
            .client
            .put(self.url(&format!("/admin/records/{name}")))
            .body(value.to_string());
        if let Some(id) = request_id {
            req = req.header(REQUEST_ID_HEADER, id);
        }
        self.send(req).await
    }

    /// Writes many records in one replicated command.
    pub async fn put_records(
        &self,
        records: std::collections::BTreeMap<String, String>,
    ) -> Result<WriteReply, ClientError> {
        self.send(self.post_json("/admin/records", &PutManyRequest { records }))
            .await
    }

    pub async fn delete_record(&self, name: &str) -> Result<WriteReply, ClientError> {
        self.send(
            self.client
                .delete(self.url(&format!("/admin/records/{name}"))),
        )
        .await
    }

    /// Reads a record with `consistency` = "linearizable" or "stale".
    pub async fn get_record(
        &self,
        name: &str,
        consistency: &str,
    ) -> Result<ReadReply, ClientError> {
        let req = self
            .client
            .get(self.url(&format!("/admin/records/{name}")))
            .header(CONSISTENCY_HEADER, consistency);
        self.send(req).await
    }
}

/// One row of `raftkms cluster status`.
#[derive(Debug, Serialize)]
pub struct StatusRow {
    pub id: NodeId,
    pub role: &'static str,
    pub region: String,
    pub raft_addr: String,
    pub api_addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole cluster as seen from one node plus each member's own report.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub nodes: Vec<StatusRow>,
}

/// Asks `client`'s node for the membership, then every member for its own status.
pub async fn cluster_status(client: &AdminClient) -> Result<ClusterStatus, ClientError> {
    let first = client.status().await?;
    let quick = client.clone().with_timeout(Duration::from_secs(2));
    let mut rows = Vec::new();
    for (id, node) in &first.nodes {
        let role = if first.voters.contains(id) {
            "voter"
        } else {
            "learner"
        };
        let (status, error) = match quick.at(node.raft_addr.clone()).status().await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        rows.push(StatusRow {
            id: *id,
            role,
            region: node.region.clone(),
            raft_addr: node.raft_addr.clone(),
            api_addr: node.api_addr.clone(),
            status,
            error,
        });
    }
    Ok(ClusterStatus {
        leader: first.leader,
        term: first.term,
        nodes: rows,
    })
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The human table for `raftkms cluster status`.
pub fn render_status(s: &ClusterStatus) -> String {
    let mut out = format!(
        "leader: {}   term: {}   members: {}\n",
        s.leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into()),
        s.term,
        s.nodes.len()
    );
    out.push_str(&format!(
        "{:<4} {:<8} {:<14} {:<22} {:<22} {:<10} {:>8} {:>8} {:>8} {:<5}\n",
        "ID", "ROLE", "REGION", "RAFT", "API", "STATE", "LAST", "COMMIT", "APPLIED", "READY"
    ));
    for r in &s.nodes {
        match &r.status {
            Some(st) => out.push_str(&format!(
                "{:<4} {:<8} {:<14} {:<22} {:<22} {:<10} {:>8} {:>8} {:>8} {:<5}\n",
                r.id,
                r.role,
                r.region,
                r.raft_addr,
                r.api_addr,
                st.state,
                opt(st.last_log_index),
                opt(st.commit_index),
                opt(st.applied_index),
                if st.ready { "yes" } else { "no" }
            )),
            None => out.push_str(&format!(
                "{:<4} {:<8} {:<14} {:<22} {:<22} unreachable: {}\n",
                r.id,
                r.role,
                r.region,
                r.raft_addr,
                r.api_addr,
                r.error.as_deref().unwrap_or("")
            )),
        }
    }
    out
}
