//! The admin endpoints (JSON): cluster init, join, remove, status and digest; plain records;
//! accounts and credentials. Membership changes run on the leader: another node answers `421`
//! with the leader's address and the admin client asks there (a node does not proxy admin
//! calls: its certificate does not make it an admin).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::Internal;
use crate::config::Consistency;
use crate::raft::error::ClusterError;
use crate::raft::types;
use crate::registry::account::Account;
use crate::registry::{Command, Outcome, RequestId};
use crate::wire::{
    AdminError, CreateAccountRequest, CreateCredentialRequest, CredentialInfo, DigestReply,
    FinalizeRequest, InitReply, JoinRequest, NewCredential, PutManyRequest, ReadReply,
    RemoveRequest, WriteReply, BACKUP_INDEX_HEADER, CONSISTENCY_HEADER, REQUEST_ID_HEADER,
};

pub(super) fn admin_error(e: ClusterError) -> Response {
    let status = match e {
        ClusterError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ClusterError::AlreadyInitialized
        | ClusterError::Membership(_)
        | ClusterError::FeatureNotEnabled { .. }
        | ClusterError::Upgrade(_) => StatusCode::CONFLICT,
        ClusterError::WriteTimeout(_) | ClusterError::ReadTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        ClusterError::Seal(_) | ClusterError::Digest(_) | ClusterError::Codec(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    tracing::debug!(error = %e, %status, "admin request refused");
    (
        status,
        Json(AdminError {
            retryable: e.is_retryable(),
            error: e.to_string(),
            leader: None,
        }),
    )
        .into_response()
}

pub(super) fn json_or_error<T: Serialize>(result: Result<T, ClusterError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => admin_error(e),
    }
}

pub(super) async fn init(State(s): State<Internal>) -> Response {
    json_or_error(
        s.node
            .initialize()
            .await
            .map(|(pending_learners, level)| InitReply {
                initialized: true,
                pending_learners,
                feature_level: Some(level),
            }),
    )
}

/// A membership change runs on the leader: from another node, `421` with the leader's address
/// (the admin client sends it there); with no leader known, a retryable `503`.
fn on_leader(s: &Internal) -> Option<Response> {
    let Some((leader, info)) = s.node.leader() else {
        return Some(admin_error(ClusterError::NotLeader { leader: None }));
    };
    if leader == s.node.id() {
        return None;
    }
    Some(
        (
            StatusCode::MISDIRECTED_REQUEST,
            Json(AdminError {
                error: format!("node {leader} leads; membership changes and upgrades run there"),
                retryable: true,
                leader: Some(info.raft_addr),
            }),
        )
            .into_response(),
    )
}

pub(super) async fn join(State(s): State<Internal>, Json(req): Json<JoinRequest>) -> Response {
    if req.id == 0 {
        return admin_error(ClusterError::BadRequest("id must be greater than 0".into()));
    }
    if let Some(resp) = on_leader(&s) {
        return resp;
    }
    let info = types::Node {
        raft_addr: req.raft_addr,
        api_addr: req.api_addr,
        region: req.region,
    };
    tracing::info!(id = req.id, node = %info, voter = req.voter, "adding node: learner first, then catch up");
    let joined = s.node.join(req.id, info, req.voter).await;
    json_or_error(joined.map(|()| s.node.status()))
}

/// `GET /admin/upgrade`: the cluster's feature level and each member's build (on the leader).
pub(super) async fn upgrade_status(State(s): State<Internal>) -> Response {
    if let Some(resp) = on_leader(&s) {
        return resp;
    }
    json_or_error(s.node.upgrade_status())
}

/// `POST /admin/upgrade/finalize`: raises the feature level once every member knows it.
pub(super) async fn upgrade_finalize(
    State(s): State<Internal>,
    Json(req): Json<FinalizeRequest>,
) -> Response {
    if let Some(resp) = on_leader(&s) {
        return resp;
    }
    json_or_error(s.node.finalize_upgrade(req.level).await)
}

pub(super) async fn remove(State(s): State<Internal>, Json(req): Json<RemoveRequest>) -> Response {
    if let Some(resp) = on_leader(&s) {
        return resp;
    }
    let removed = s.node.remove(req.id).await;
    json_or_error(removed.map(|()| s.node.status()))
}

pub(super) async fn status(State(s): State<Internal>) -> Response {
    Json(s.node.status()).into_response()
}

pub(super) async fn digest(State(s): State<Internal>) -> Response {
    let state = s.node.state().read();
    let reply = state
        .registry
        .digest()
        .map(|digest| DigestReply {
            applied_index: state.last_applied.map(|l| l.index),
            digest,
            records: state.registry.records().len(),
        })
        .map_err(|e| ClusterError::Digest(e.to_string()));
    json_or_error(reply)
}

/// A backup of the replicated state (`raftkms backup create`): the file's bytes, after a
/// linearizable read barrier on this node (any node serves it), with its position in headers.
pub(super) async fn backup(State(s): State<Internal>) -> Response {
    match s.node.backup().await {
        Ok((header, bytes)) => {
            tracing::info!(
                index = header.last_applied.index,
                bytes = bytes.len(),
                "backup served"
            );
            (
                [
                    (
                        axum::http::header::CONTENT_TYPE,
                        "application/octet-stream".to_string(),
                    ),
                    (
                        axum::http::header::HeaderName::from_static(BACKUP_INDEX_HEADER),
                        header.last_applied.index.to_string(),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => admin_error(e),
    }
}

fn consistency_of(
    default: Consistency,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
) -> Result<Consistency, ClusterError> {
    let chosen = headers
        .get(CONSISTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("consistency").cloned());
    match chosen.as_deref() {
        None => Ok(default),
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

/// Proposes a command with the caller's request id, if any.
async fn propose(s: &Internal, headers: &HeaderMap, command: Command) -> Response {
    let id = match request_id(headers) {
        Ok(id) => id,
        Err(e) => return admin_error(e),
    };
    let writes = s.node.writes();
    let outcome = writes.propose(writes.envelope(id, command)).await;
    json_or_error(outcome.map(|outcome| WriteReply { outcome }))
}

pub(super) async fn put(
    State(s): State<Internal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = crate::registry::record::validate(&name, Some(&body)) {
        return admin_error(ClusterError::BadRequest(e.to_string()));
    }
    let value = body.to_vec();
    propose(&s, &headers, Command::PutRecord { name, value }).await
}

pub(super) async fn put_many(
    State(s): State<Internal>,
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
    propose(&s, &headers, Command::PutRecords { records }).await
}

pub(super) async fn delete_record(
    State(s): State<Internal>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    propose(&s, &headers, Command::DeleteRecord { name }).await
}

pub(super) async fn get(
    State(s): State<Internal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let read = async {
        let consistency = consistency_of(s.node.config().default_consistency, &headers, &query)?;
        let position = s.node.reads().read_barrier(consistency).await?;
        let value = s
            .node
            .state()
            .read()
            .registry
            .records()
            .get(&name)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        Ok(ReadReply {
            name: name.clone(),
            value,
            position,
        })
    };
    json_or_error(read.await)
}

fn outcome_result(o: Outcome) -> Result<(), ClusterError> {
    match o {
        Outcome::Applied { .. } => Ok(()),
        Outcome::Rejected(e) => Err(ClusterError::BadRequest(e.to_string())),
        Outcome::NoCommand | Outcome::Batch(_) => {
            Err(ClusterError::BadRequest("no outcome".into()))
        }
    }
}

/// Proposes a command stamped by this node and expects it applied.
pub(super) async fn apply(s: &Internal, command: Command) -> Result<(), ClusterError> {
    let writes = s.node.writes();
    writes
        .propose(writes.envelope(None, command))
        .await
        .and_then(outcome_result)
}

pub(super) async fn create_account(
    State(s): State<Internal>,
    Json(req): Json<CreateAccountRequest>,
) -> Response {
    use rand::Rng;
    if req.name.is_empty() || req.name.len() > 128 {
        return admin_error(ClusterError::BadRequest(
            "name must be 1 to 128 bytes".into(),
        ));
    }
    let mut rng = rand::rngs::OsRng;
    let account = Account {
        uin: rng.gen_range(100_000_000_000..1_000_000_000_000),
        app_id: rng.gen_range(1_250_000_000..1_260_000_000),
        name: req.name,
        created_at: s.node.clock().wall_secs(),
    };
    let command = Command::CreateAccount {
        account: account.clone(),
    };
    json_or_error(apply(&s, command).await.map(|()| account))
}

/// Answers with `f` of the registry once a linearizable read has passed the read gate.
pub(super) async fn read_linearizable<T: Serialize>(
    s: &Internal,
    f: impl FnOnce(&crate::registry::Registry) -> T,
) -> Response {
    let gate = s.node.reads().read_barrier(Consistency::Linearizable).await;
    json_or_error(gate.map(|_| f(&s.node.state().read().registry)))
}

pub(super) async fn list_accounts(State(s): State<Internal>) -> Response {
    read_linearizable(&s, |r| r.accounts().accounts().cloned().collect::<Vec<_>>()).await
}

pub(super) async fn create_credential(
    State(s): State<Internal>,
    Json(req): Json<CreateCredentialRequest>,
) -> Response {
    json_or_error(
        issue_credential(&s, req.uin, |credential| Command::CreateCredential {
            credential,
        })
        .await,
    )
}

/// Makes a credential of account `uin` (its secret key wrapped by the root key, installed first
/// if need be) and proposes the command `command` builds around it: the only time the secret key
/// is shown.
pub(super) async fn issue_credential(
    s: &Internal,
    uin: u64,
    command: impl FnOnce(crate::registry::account::Credential) -> Command,
) -> Result<NewCredential, ClusterError> {
    s.node.keyring().ensure_root_key(s.node.writes()).await?;
    s.node
        .reads()
        .read_barrier(Consistency::Linearizable)
        .await?;
    let (credential, secret_key) = s
        .node
        .keyring()
        .new_credential(uin)
        .map_err(|e| ClusterError::Seal(e.to_string()))?;
    let secret_id = credential.secret_id.clone();
    apply(s, command(credential)).await?;
    Ok(NewCredential {
        uin,
        secret_id,
        secret_key,
    })
}

pub(super) async fn list_credentials(State(s): State<Internal>) -> Response {
    read_linearizable(&s, |r| {
        r.accounts()
            .credentials()
            .map(|c| CredentialInfo {
                uin: c.uin,
                secret_id: c.secret_id.clone(),
                created_at: c.created_at,
                principal: r.iam().principal(&c.secret_id).to_string(),
            })
            .collect::<Vec<_>>()
    })
    .await
}

pub(super) async fn revoke_credential(
    State(s): State<Internal>,
    Path(secret_id): Path<String>,
) -> Response {
    let revoked = apply(&s, Command::RevokeCredential { secret_id }).await;
    json_or_error(revoked.map(|()| serde_json::json!({"revoked": true})))
}
