//! The internal listener: Raft RPC, write forwarding, read-index, and the admin endpoints the
//! `raftkms cluster` commands use. Every route requires the cluster secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::ClusterError;
use super::network::{PeerAuth, CLUSTER_HEADER};
use super::types::typ::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use super::types::{self, NodeId};
use crate::codec;
use crate::config::Consistency;
use crate::node::{ReadPosition, RunningNode};
use crate::registry::{Command, Envelope, Outcome, RequestId};

type Node = Arc<RunningNode>;

/// Header that picks a read's consistency (`linearizable` or `stale`).
pub const CONSISTENCY_HEADER: &str = "x-raftkms-consistency";
/// Header carrying a caller-chosen idempotency id (a UUID) for writes.
pub const REQUEST_ID_HEADER: &str = "x-raftkms-request-id";

/// Calls a binary internal endpoint on a peer.
pub async fn call_internal<Req: Serialize, Resp: DeserializeOwned>(
    client: &reqwest::Client,
    auth: &PeerAuth,
    addr: &str,
    path: &str,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, ClusterError> {
    let body =
        codec::encode("internal request", req).map_err(|e| ClusterError::Forward(e.to_string()))?;
    let resp = auth
        .apply(client.post(format!("http://{addr}{path}")))
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| ClusterError::Forward(format!("{addr}: {e}")))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClusterError::Forward(format!("{addr}: {e}")))?;
    if !status.is_success() {
        return Err(ClusterError::Forward(format!(
            "{addr} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    codec::decode("internal reply", &bytes).map_err(|e| ClusterError::Forward(e.to_string()))
}

/// The internal router.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/raft/append", post(raft_append))
        .route("/raft/vote", post(raft_vote))
        .route("/raft/snapshot", post(raft_snapshot))
        .route("/internal/write", post(internal_write))
        .route("/internal/read-index", post(internal_read_index))
        .route("/admin/init", post(admin_init))
        .route("/admin/join", post(admin_join))
        .route("/admin/remove", post(admin_remove))
        .route("/admin/status", get(admin_status))
        .route("/admin/digest", get(admin_digest))
        .route("/admin/records", post(admin_put_many))
        .route(
            "/admin/accounts",
            post(admin_create_account).get(admin_list_accounts),
        )
        .route(
            "/admin/credentials",
            post(admin_create_credential).get(admin_list_credentials),
        )
        .route(
            "/admin/credentials/{secret_id}",
            axum::routing::delete(admin_revoke_credential),
        )
        .route(
            "/admin/records/{name}",
            put(admin_put).get(admin_get).delete(admin_delete),
        )
        .layer(middleware::from_fn_with_state(node.clone(), authenticate))
        .layer(DefaultBodyLimit::max(256 << 20))
        .with_state(node)
}

async fn authenticate(State(node): State<Node>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cluster = req
        .headers()
        .get(CLUSTER_HEADER)
        .and_then(|v| v.to_str().ok());
    match (presented, cluster) {
        (Some(secret), Some(cluster))
            if cluster == node.auth.cluster_id && node.auth.secret_matches(secret) =>
        {
            next.run(req).await
        }
        (Some(_), Some(cluster)) if cluster != node.auth.cluster_id => (
            StatusCode::UNAUTHORIZED,
            format!("request is for cluster `{cluster}`, this node belongs to another cluster"),
        )
            .into_response(),
        _ => (StatusCode::UNAUTHORIZED, "missing or wrong cluster secret").into_response(),
    }
}

fn binary<T: Serialize>(value: &T) -> Response {
    match codec::encode("internal reply", value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

// The error is the ready-made HTTP reply; its size does not matter on this cold path.
#[allow(clippy::result_large_err)]
fn decode_body<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, Response> {
    codec::decode(what, body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

async fn raft_append(State(node): State<Node>, headers: HeaderMap, body: Bytes) -> Response {
    let req: AppendEntriesRequest = match decode_body("append entries", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // The leader's own freshness: a leader that lost its quorum still feeds its learners, and
    // their contact with it says nothing about how current their state is.
    let quorum_age = headers
        .get(crate::raft::network::QUORUM_AGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let result = node.raft.append_entries(req).await;
    if matches!(&result, Ok(openraft::raft::AppendEntriesResponse::Success)) {
        // No header (an older leader binary, or none yet this term): plain contact.
        node.note_leader_contact(quorum_age.unwrap_or(0));
    }
    binary(&result)
}

async fn raft_vote(State(node): State<Node>, body: Bytes) -> Response {
    let req: VoteRequest = match decode_body("vote", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // Before openraft may grant it: a leader's own vote does not honour the lease its followers
    // keep, so from here on this node's read lease must not be used (see `ReadLease`).
    node.fence_read_lease(req.vote.leader_id().get_term());
    binary(&node.raft.vote(req).await)
}

async fn raft_snapshot(State(node): State<Node>, body: Bytes) -> Response {
    let req: InstallSnapshotRequest = match crate::raft::network::decode_snapshot_chunk(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    binary(&node.raft.install_snapshot(req).await)
}

async fn internal_write(State(node): State<Node>, body: Bytes) -> Response {
    let mut env: Envelope = match decode_body("forwarded write", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // Time in the registry is the leader's: a forwarding node whose clock is behind must not
    // shorten a deletion window or a token's life (found by jepsen's deletion + clock-far run).
    env.issued_at_ms = crate::node::now_ms();
    let deadline = Instant::now() + Duration::from_millis(node.config.timing.write_timeout_ms);
    let result: Result<Outcome, ClusterError> = match node.leader() {
        Some((l, _)) if l == node.id => node.propose_local(env, deadline).await,
        other => Err(ClusterError::NotLeader {
            leader: other.map(|(l, _)| l),
        }),
    };
    binary(&result)
}

async fn internal_read_index(State(node): State<Node>) -> Response {
    binary(&node.serve_read_index().await)
}

// ---------------------------------------------------------------- admin (JSON)

/// JSON error body of the admin endpoints.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminError {
    pub error: String,
    pub retryable: bool,
}

fn admin_error(e: ClusterError) -> Response {
    let status = match e {
        ClusterError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ClusterError::AlreadyInitialized | ClusterError::Membership(_) => StatusCode::CONFLICT,
        ClusterError::WriteTimeout(_) | ClusterError::ReadTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        Json(AdminError {
            retryable: e.is_retryable(),
            error: e.to_string(),
        }),
    )
        .into_response()
}

async fn admin_init(State(node): State<Node>) -> Response {
    match node.initialize().await {
        Ok(()) => Json(serde_json::json!({"initialized": true})).into_response(),
        Err(e) => admin_error(e),
    }
}

/// Body of `POST /admin/join`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: NodeId,
    pub raft_addr: String,
    pub api_addr: String,
    pub region: String,
    #[serde(default = "yes")]
    pub voter: bool,
}

fn yes() -> bool {
    true
}

/// Body of `POST /admin/remove`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoveRequest {
    pub id: NodeId,
}

/// Runs a membership change on the leader, proxying the JSON request there if needed.
async fn on_leader<T: Serialize>(node: &Node, path: &str, body: &T) -> Option<Response> {
    let (leader, info) = node.leader()?;
    if leader == node.id {
        return None;
    }
    let res = node
        .auth
        .apply(node.client.post(format!("http://{}{path}", info.raft_addr)))
        .timeout(Duration::from_secs(120))
        .json(body)
        .send()
        .await;
    Some(match res {
        Ok(r) => {
            let status = r.status();
            let bytes = r.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(e) => admin_error(ClusterError::Forward(e.to_string())),
    })
}

async fn admin_join(State(node): State<Node>, Json(req): Json<JoinRequest>) -> Response {
    if req.id == 0 {
        return admin_error(ClusterError::BadRequest("id must be greater than 0".into()));
    }
    if let Some(resp) = on_leader(&node, "/admin/join", &req).await {
        return resp;
    }
    let info = types::Node {
        raft_addr: req.raft_addr,
        api_addr: req.api_addr,
        region: req.region,
    };
    tracing::info!(id = req.id, node = %info, voter = req.voter, "adding node: learner first, then catch up");
    match node.join(req.id, info, req.voter).await {
        Ok(()) => Json(status_of(&node)).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn admin_remove(State(node): State<Node>, Json(req): Json<RemoveRequest>) -> Response {
    if let Some(resp) = on_leader(&node, "/admin/remove", &req).await {
        return resp;
    }
    match node.remove(req.id).await {
        Ok(()) => Json(status_of(&node)).into_response(),
        Err(e) => admin_error(e),
    }
}

/// One node's view of the cluster, as `GET /admin/status` returns it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub region: String,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub nodes: BTreeMap<NodeId, types::Node>,
    pub ready: bool,
    pub millis_since_quorum_ack: Option<u64>,
}

pub fn status_of(node: &RunningNode) -> NodeStatus {
    let m = node.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    NodeStatus {
        id: node.id,
        region: node.config.region.clone(),
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        last_log_index: m.last_log_index,
        commit_index: node.committed.get(),
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        nodes: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
        ready: node.is_ready(),
        millis_since_quorum_ack: m.millis_since_quorum_ack,
    }
}

async fn admin_status(State(node): State<Node>) -> Response {
    Json(status_of(&node)).into_response()
}

/// Applied position and state digest, for convergence checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DigestReply {
    pub applied_index: Option<u64>,
    pub digest: String,
    pub records: usize,
}

async fn admin_digest(State(node): State<Node>) -> Response {
    let state = node.state.read();
    match state.registry.digest() {
        Ok(digest) => Json(DigestReply {
            applied_index: state.last_applied.map(|l| l.index),
            digest,
            records: state.registry.records().len(),
        })
        .into_response(),
        Err(e) => admin_error(ClusterError::Stopped(e.to_string())),
    }
}

fn consistency_of(
    node: &RunningNode,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
) -> Result<Consistency, ClusterError> {
    let chosen = headers
        .get(CONSISTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("consistency").cloned());
    match chosen.as_deref() {
        None => Ok(node.config.default_consistency),
        Some("linearizable") => Ok(Consistency::Linearizable),
        Some("stale") => Ok(Consistency::Stale),
        Some(other) => Err(ClusterError::BadRequest(format!(
            "consistency `{other}` is not linearizable or stale"
        ))),
    }
}

fn request_id(headers: &HeaderMap) -> Result<Option<RequestId>, ClusterError> {
    match headers.get(REQUEST_ID_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(RequestId::parse)
            .map(Some)
            .ok_or_else(|| ClusterError::BadRequest("x-raftkms-request-id must be a UUID".into())),
    }
}

/// Reply to a record write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteReply {
    pub outcome: Outcome,
}

async fn propose(node: &Node, headers: &HeaderMap, command: Command) -> Response {
    let id = match request_id(headers) {
        Ok(id) => id,
        Err(e) => return admin_error(e),
    };
    match node.propose(node.envelope(id, command)).await {
        Ok(outcome) => Json(WriteReply { outcome }).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn admin_put(
    State(node): State<Node>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = crate::registry::record::validate(&name, Some(&body)) {
        return admin_error(ClusterError::BadRequest(e.to_string()));
    }
    propose(
        &node,
        &headers,
        Command::PutRecord {
            name,
            value: body.to_vec(),
        },
    )
    .await
}

/// Body of `POST /admin/records`: many UTF-8 records in one command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PutManyRequest {
    pub records: BTreeMap<String, String>,
}

async fn admin_put_many(
    State(node): State<Node>,
    headers: HeaderMap,
    Json(req): Json<PutManyRequest>,
) -> Response {
    let records: Vec<(String, Vec<u8>)> = req
        .records
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (name, value) in &records {
        if let Err(e) = crate::registry::record::validate(name, Some(value)) {
            return admin_error(ClusterError::BadRequest(format!("{name}: {e}")));
        }
    }
    propose(&node, &headers, Command::PutRecords { records }).await
}

async fn admin_delete(
    State(node): State<Node>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    propose(&node, &headers, Command::DeleteRecord { name }).await
}

/// Reply to a record read: the value (UTF-8, lossy) and where it was read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadReply {
    pub name: String,
    pub value: Option<String>,
    pub position: ReadPosition,
}

async fn admin_get(
    State(node): State<Node>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let consistency = match consistency_of(&node, &headers, &query) {
        Ok(c) => c,
        Err(e) => return admin_error(e),
    };
    let position = match node.read_barrier(consistency).await {
        Ok(p) => p,
        Err(e) => return admin_error(e),
    };
    let value = node
        .state
        .read()
        .registry
        .records()
        .get(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    Json(ReadReply {
        name,
        value,
        position,
    })
    .into_response()
}

// ---------------------------------------------------------------- accounts and credentials

/// Body of `POST /admin/accounts`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateAccountRequest {
    pub name: String,
}

/// Body of `POST /admin/credentials`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateCredentialRequest {
    pub uin: u64,
}

/// A new credential: the only time the secret key is shown.
#[derive(Clone, Serialize, Deserialize)]
pub struct NewCredential {
    pub uin: u64,
    pub secret_id: String,
    pub secret_key: String,
}

impl std::fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("uin", &self.uin)
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

/// A credential as listed (no secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CredentialInfo {
    pub uin: u64,
    pub secret_id: String,
    pub created_at: u64,
}

fn random_alnum(n: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, n)
}

fn outcome_result(o: Outcome) -> Result<(), ClusterError> {
    match o {
        Outcome::Applied { .. } => Ok(()),
        Outcome::Rejected(e) => Err(ClusterError::BadRequest(e.to_string())),
        Outcome::NoCommand => Err(ClusterError::BadRequest("no outcome".into())),
    }
}

async fn admin_create_account(
    State(node): State<Node>,
    Json(req): Json<CreateAccountRequest>,
) -> Response {
    use rand::Rng;
    if req.name.is_empty() || req.name.len() > 128 {
        return admin_error(ClusterError::BadRequest(
            "name must be 1 to 128 bytes".into(),
        ));
    }
    let mut rng = rand::rngs::OsRng;
    let account = crate::registry::account::Account {
        uin: rng.gen_range(100_000_000_000..1_000_000_000_000),
        app_id: rng.gen_range(1_250_000_000..1_260_000_000),
        name: req.name,
        created_at: crate::node::now_ms() / 1000,
    };
    let env = node.envelope(
        None,
        Command::CreateAccount {
            account: account.clone(),
        },
    );
    match node.propose(env).await.and_then(outcome_result) {
        Ok(()) => Json(account).into_response(),
        Err(e) => admin_error(e),
    }
}

async fn admin_list_accounts(State(node): State<Node>) -> Response {
    if let Err(e) = node.read_barrier(Consistency::Linearizable).await {
        return admin_error(e);
    }
    let accounts: Vec<_> = node
        .state
        .read()
        .registry
        .accounts()
        .accounts()
        .cloned()
        .collect();
    Json(accounts).into_response()
}

async fn admin_create_credential(
    State(node): State<Node>,
    Json(req): Json<CreateCredentialRequest>,
) -> Response {
    if let Err(e) = node.ensure_root_key().await {
        return admin_error(e);
    }
    if let Err(e) = node.read_barrier(Consistency::Linearizable).await {
        return admin_error(e);
    }
    let root = match node.root_key() {
        Ok(r) => r,
        Err(e) => return admin_error(ClusterError::Stopped(e.to_string())),
    };
    let secret_id = format!("AKID{}", random_alnum(32));
    let secret_key = zeroize::Zeroizing::new(random_alnum(32));
    let aad = crate::registry::account::credential_aad(&secret_id, req.uin);
    let wrapped = match root.wrap(&aad, secret_key.as_bytes()) {
        Ok(w) => w,
        Err(e) => return admin_error(ClusterError::Stopped(e.to_string())),
    };
    let credential = crate::registry::account::Credential {
        secret_id: secret_id.clone(),
        uin: req.uin,
        wrapped_secret_key: wrapped,
        created_at: crate::node::now_ms() / 1000,
    };
    match node
        .propose(node.envelope(None, Command::CreateCredential { credential }))
        .await
        .and_then(outcome_result)
    {
        Ok(()) => Json(NewCredential {
            uin: req.uin,
            secret_id,
            secret_key: secret_key.to_string(),
        })
        .into_response(),
        Err(e) => admin_error(e),
    }
}

async fn admin_list_credentials(State(node): State<Node>) -> Response {
    if let Err(e) = node.read_barrier(Consistency::Linearizable).await {
        return admin_error(e);
    }
    let list: Vec<CredentialInfo> = node
        .state
        .read()
        .registry
        .accounts()
        .credentials()
        .map(|c| CredentialInfo {
            uin: c.uin,
            secret_id: c.secret_id.clone(),
            created_at: c.created_at,
        })
        .collect();
    Json(list).into_response()
}

async fn admin_revoke_credential(
    State(node): State<Node>,
    Path(secret_id): Path<String>,
) -> Response {
    let env = node.envelope(None, Command::RevokeCredential { secret_id });
    match node.propose(env).await.and_then(outcome_result) {
        Ok(()) => Json(serde_json::json!({"revoked": true})).into_response(),
        Err(e) => admin_error(e),
    }
}
