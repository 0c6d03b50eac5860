//! Client side of the admin endpoints, used by `raftkms cluster …`, `raftkms dev` and tests.
//! The credential is an admin certificate (mutual TLS) or, against a plaintext test cluster, the
//! admin token; never the peers' credential.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crypto::SecretString;
use crate::raft::types::NodeId;
use crate::registry::iam::{Identity, IdentityKind};
use crate::tls::reload::CertStore;
use crate::tls::TlsError;
use crate::transport::http_client;
use crate::transport::peer::{error_chain, CLUSTER_HEADER};
use crate::wire::paths;
use crate::wire::{
    AdminError, AttachRequest, AuditCheckpointInfo, CreateAccountRequest, CreateCredentialRequest,
    CreateIdentityRequest, CredentialInfo, DigestReply, InitReply, JoinRequest, NewCredential,
    NodeStatus, PolicyInfo, PolicyRequest, PutManyRequest, ReadReply, RemoveRequest,
    RetireRootKeyRequest, RootKeyStatus, RotateRootKeyRequest, WriteReply, CONSISTENCY_HEADER,
    REQUEST_ID_HEADER,
};

/// How many times a call follows a `421` to the leader.
const MAX_REDIRECTS: usize = 3;

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
    #[error("cannot write what {addr} sent: {message}")]
    Write { addr: String, message: String },
}

/// How long a backup download may take in all (a large registry is hundreds of MB).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// What an admin presents.
#[derive(Clone, Debug)]
enum Credential {
    /// Plaintext test clusters: `Authorization: Bearer <admin-token>`.
    Token(Arc<SecretString>),
    /// Mutual TLS: the admin certificate is the credential.
    Certificate,
}

/// Talks to one node's internal listener.
#[derive(Clone, Debug)]
pub struct AdminClient {
    client: reqwest::Client,
    credential: Credential,
    cluster_id: String,
    pub addr: String,
    timeout: Duration,
}

/// Idle pooled connections are dropped after 1 s, below any node's keep-alive timeout.
const IDLE: Duration = Duration::from_secs(1);
const CONNECT: Duration = Duration::from_secs(2);

impl AdminClient {
    /// A client of a plaintext (`insecure-plaintext`) cluster, with its admin token.
    pub fn new(
        addr: impl Into<String>,
        cluster_id: impl Into<String>,
        admin_token: impl Into<SecretString>,
    ) -> Self {
        AdminClient {
            client: http_client(CONNECT, IDLE, None).unwrap_or_else(|_| reqwest::Client::new()),
            credential: Credential::Token(Arc::new(admin_token.into())),
            cluster_id: cluster_id.into(),
            addr: addr.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// A client of a TLS cluster: presents the admin certificate `cert_file`/`key_file` (`raftkms
    /// cert admin`) and accepts only nodes of `cluster_id` whose certificates chain to `ca_file`.
    pub fn with_certificate(
        addr: impl Into<String>,
        cluster_id: impl Into<String>,
        cert_file: &Path,
        key_file: &Path,
        ca_file: &Path,
    ) -> Result<Self, TlsError> {
        let cluster_id = cluster_id.into();
        let cert = CertStore::open(cert_file, key_file)?;
        let roots = crate::tls::config::roots(ca_file)?;
        let tls = crate::tls::config::internal_client(Some(cert), roots, &cluster_id, None)?;
        let client = http_client(CONNECT, IDLE, Some(tls))
            .map_err(|e| TlsError::Config(format!("cannot build the admin client: {e}")))?;
        Ok(AdminClient {
            client,
            credential: Credential::Certificate,
            cluster_id,
            addr: addr.into(),
            timeout: Duration::from_secs(30),
        })
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

    fn url(&self, addr: &str, path: &str) -> String {
        let scheme = match self.credential {
            Credential::Token(_) => "http",
            Credential::Certificate => "https",
        };
        format!("{scheme}://{addr}{path}")
    }

    /// Sends `method path` (with what `build` adds) to this client's node; a `421` naming the
    /// leader sends it again there.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut addr = self.addr.clone();
        for _ in 0..=MAX_REDIRECTS {
            match self.send_once(&addr, method.clone(), path, &build).await? {
                Ok(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                        addr,
                        message: e.to_string(),
                    })
                }
                Err(leader) => addr = leader,
            }
        }
        Err(ClientError::Refused {
            addr,
            status: 421,
            message: format!("sent to the leader {MAX_REDIRECTS} times without reaching it"),
            retryable: true,
        })
    }

    /// One attempt: the answer's body, or the leader's address to try instead.
    async fn send_once(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        build: &impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Result<bytes::Bytes, String>, ClientError> {
        let transport = |e: reqwest::Error| ClientError::Transport {
            addr: addr.to_string(),
            message: error_chain(&e),
        };
        let mut req = self
            .client
            .request(method, self.url(addr, path))
            .header(CLUSTER_HEADER, &self.cluster_id)
            .timeout(self.timeout);
        if let Credential::Token(t) = &self.credential {
            req = req.bearer_auth(t.expose());
        }
        let resp = build(req).send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(Ok(bytes));
        }
        let (message, retryable, leader) = match serde_json::from_slice::<AdminError>(&bytes) {
            Ok(e) => (e.error, e.retryable, e.leader),
            Err(_) => (
                String::from_utf8_lossy(&bytes).trim().to_string(),
                false,
                None,
            ),
        };
        match leader {
            Some(leader) if status == reqwest::StatusCode::MISDIRECTED_REQUEST => Ok(Err(leader)),
            _ => Err(ClientError::Refused {
                addr: addr.to_string(),
                status: status.as_u16(),
                message,
                retryable,
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, |r| r).await
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, |r| r.json(body)).await
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.get("/admin/status").await
    }

    /// Initializes the cluster through this node, then adds the configured learners the node
    /// could not add itself (another node leads) through the leader.
    pub async fn init(&self) -> Result<InitReply, ClientError> {
        let reply: InitReply = self.call(Method::POST, "/admin/init", |r| r).await?;
        for learner in &reply.pending_learners {
            let long = self
                .clone()
                .with_timeout(self.timeout.max(Duration::from_secs(300)));
            long.join(learner).await?;
        }
        Ok(reply)
    }

    /// Adds a node (run on the leader, wherever this client points).
    pub async fn join(&self, req: &JoinRequest) -> Result<NodeStatus, ClientError> {
        self.post_json("/admin/join", req).await
    }

    pub async fn remove(&self, id: NodeId) -> Result<NodeStatus, ClientError> {
        self.post_json("/admin/remove", &RemoveRequest { id }).await
    }

    pub async fn create_account(
        &self,
        name: &str,
    ) -> Result<crate::registry::account::Account, ClientError> {
        self.post_json(
            "/admin/accounts",
            &CreateAccountRequest {
                name: name.to_string(),
            },
        )
        .await
    }

    pub async fn accounts(&self) -> Result<Vec<crate::registry::account::Account>, ClientError> {
        self.get("/admin/accounts").await
    }

    pub async fn create_credential(&self, uin: u64) -> Result<NewCredential, ClientError> {
        self.post_json("/admin/credentials", &CreateCredentialRequest { uin })
            .await
    }

    pub async fn credentials(&self) -> Result<Vec<CredentialInfo>, ClientError> {
        self.get("/admin/credentials").await
    }

    pub async fn revoke_credential(
        &self,
        secret_id: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/admin/credentials/{secret_id}");
        self.call(Method::DELETE, &path, |r| r).await
    }

    /// Creates a sub-user or role of an account.
    pub async fn create_identity(
        &self,
        uin: u64,
        req: &CreateIdentityRequest,
    ) -> Result<Identity, ClientError> {
        self.post_json(&format!("/admin/accounts/{uin}/identities"), req)
            .await
    }

    /// The sub-users and roles of an account.
    pub async fn identities(&self, uin: u64) -> Result<Vec<Identity>, ClientError> {
        self.get(&format!("/admin/accounts/{uin}/identities")).await
    }

    /// Deletes a sub-user or role and revokes its credentials.
    pub async fn delete_identity(
        &self,
        uin: u64,
        kind: IdentityKind,
        name: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/admin/accounts/{uin}/{}s/{name}", kind.as_str());
        self.call(Method::DELETE, &path, |r| r).await
    }

    /// A new credential that speaks for a sub-user or role.
    pub async fn create_identity_credential(
        &self,
        uin: u64,
        kind: IdentityKind,
        name: &str,
    ) -> Result<NewCredential, ClientError> {
        let path = format!(
            "/admin/accounts/{uin}/{}s/{name}/credentials",
            kind.as_str()
        );
        self.call(Method::POST, &path, |r| r).await
    }

    /// Creates (`replace` false) or replaces a policy from its CAM document.
    pub async fn put_policy(
        &self,
        uin: u64,
        req: &PolicyRequest,
        replace: bool,
    ) -> Result<PolicyInfo, ClientError> {
        if replace {
            let path = format!("/admin/accounts/{uin}/policies/{}", req.name);
            self.call(Method::PUT, &path, |r| r.json(req)).await
        } else {
            self.post_json(&format!("/admin/accounts/{uin}/policies"), req)
                .await
        }
    }

    /// The policies of an account, with whom each is attached to.
    pub async fn policies(&self, uin: u64) -> Result<Vec<PolicyInfo>, ClientError> {
        self.get(&format!("/admin/accounts/{uin}/policies")).await
    }

    /// Deletes a policy (detaching it from everyone).
    pub async fn delete_policy(
        &self,
        uin: u64,
        name: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/admin/accounts/{uin}/policies/{name}");
        self.call(Method::DELETE, &path, |r| r).await
    }

    /// Attaches (or detaches) a policy to (from) a sub-user or role.
    pub async fn attach_policy(
        &self,
        uin: u64,
        req: &AttachRequest,
    ) -> Result<serde_json::Value, ClientError> {
        self.post_json(&format!("/admin/accounts/{uin}/attachments"), req)
            .await
    }

    /// The cluster's feature level and each member's release (answered by the leader).
    pub async fn upgrade_status(&self) -> Result<crate::wire::UpgradeStatus, ClientError> {
        self.get(paths::UPGRADE).await
    }

    /// Raises the cluster's feature level (`level`, or the highest the leader's build knows);
    /// refused unless every member runs a build that knows it.
    pub async fn finalize_upgrade(
        &self,
        level: Option<u32>,
    ) -> Result<crate::wire::FinalizeReply, ClientError> {
        self.post_json(
            paths::UPGRADE_FINALIZE,
            &crate::wire::FinalizeRequest { level },
        )
        .await
    }

    /// The root-key versions and what each still protects.
    pub async fn root_key_status(&self) -> Result<RootKeyStatus, ClientError> {
        self.get(paths::ROOT_KEY).await
    }

    /// Installs the next root-key version (the leader then re-wraps every stored value). With
    /// `version` (the current one + 1), a retried call does not rotate twice.
    pub async fn rotate_root_key(
        &self,
        version: Option<u32>,
    ) -> Result<RootKeyStatus, ClientError> {
        self.post_json(paths::ROOT_KEY_ROTATE, &RotateRootKeyRequest { version })
            .await
    }

    /// Retires an older root-key version that no stored value uses any more.
    pub async fn retire_root_key(&self, version: u32) -> Result<RootKeyStatus, ClientError> {
        self.post_json(paths::ROOT_KEY_RETIRE, &RetireRootKeyRequest { version })
            .await
    }

    /// Every node's retained audit checkpoints.
    pub async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpointInfo>, ClientError> {
        self.get("/admin/audit/checkpoints").await
    }

    /// Downloads a backup of the replicated state (`GET /admin/backup`; any node serves one):
    /// each chunk goes to `sink` as it arrives, and `progress` learns the bytes received so far.
    /// Returns the last log index the backup holds (the server's header; the file itself says
    /// it too, and `raft::backup::decode` checks it).
    pub async fn backup(
        &self,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Option<u64>, ClientError> {
        let addr = self.addr.clone();
        let transport = |e: reqwest::Error| ClientError::Transport {
            addr: addr.clone(),
            message: error_chain(&e),
        };
        let mut req = self
            .client
            .get(self.url(&addr, paths::BACKUP))
            .header(CLUSTER_HEADER, &self.cluster_id)
            .timeout(BACKUP_TIMEOUT.max(self.timeout));
        if let Credential::Token(t) = &self.credential {
            req = req.bearer_auth(t.expose());
        }
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(transport)?;
            let (message, retryable) = match serde_json::from_slice::<AdminError>(&bytes) {
                Ok(e) => (e.error, e.retryable),
                Err(_) => (String::from_utf8_lossy(&bytes).trim().to_string(), false),
            };
            return Err(ClientError::Refused {
                addr,
                status: status.as_u16(),
                message,
                retryable,
            });
        }
        let index = resp
            .headers()
            .get(crate::wire::BACKUP_INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let mut received = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            sink(&chunk).map_err(|e| ClientError::Write {
                addr: addr.clone(),
                message: e.to_string(),
            })?;
            received += chunk.len() as u64;
            progress(received);
        }
        Ok(index)
    }

    pub async fn digest(&self) -> Result<DigestReply, ClientError> {
        self.get("/admin/digest").await
    }

    /// Writes one record; `request_id` (a UUID) makes retries idempotent.
    pub async fn put_record(
        &self,
        name: &str,
        value: &str,
        request_id: Option<&str>,
    ) -> Result<WriteReply, ClientError> {
        let path = format!("/admin/records/{name}");
        self.call(Method::PUT, &path, |r| {
            let r = r.body(value.to_string());
            match request_id {
                Some(id) => r.header(REQUEST_ID_HEADER, id),
                None => r,
            }
        })
        .await
    }

    /// Writes many records in one replicated command.
    pub async fn put_records(
        &self,
        records: std::collections::BTreeMap<String, String>,
    ) -> Result<WriteReply, ClientError> {
        self.post_json("/admin/records", &PutManyRequest { records })
            .await
    }

    pub async fn delete_record(&self, name: &str) -> Result<WriteReply, ClientError> {
        self.delete_record_with_id(name, None).await
    }

    /// Deletes one record; `request_id` (a UUID) makes retries idempotent.
    pub async fn delete_record_with_id(
        &self,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<WriteReply, ClientError> {
        let path = format!("/admin/records/{name}");
        self.call(Method::DELETE, &path, |r| match request_id {
            Some(id) => r.header(REQUEST_ID_HEADER, id),
            None => r,
        })
        .await
    }

    /// Reads a record with `consistency` = "linearizable" or "stale".
    pub async fn get_record(
        &self,
        name: &str,
        consistency: &str,
    ) -> Result<ReadReply, ClientError> {
        let path = format!("/admin/records/{name}");
        self.call(Method::GET, &path, |r| {
            r.header(CONSISTENCY_HEADER, consistency)
        })
        .await
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
