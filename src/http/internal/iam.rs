//! The admin endpoints of identities and policies: sub-users and roles of an account, their
//! credentials, CAM-style policies and their attachments. Every change is one replicated command,
//! so it binds every node once it is acknowledged; every listing is a linearizable read.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;

use super::admin::{admin_error, apply, issue_credential, json_or_error, read_linearizable};
use super::Internal;
use crate::policy;
use crate::raft::error::ClusterError;
use crate::registry::iam::{Identity, IdentityKind, Policy};
use crate::registry::Command;
use crate::wire::{
    AttachRequest, AuditCheckpointInfo, CreateIdentityRequest, PolicyInfo, PolicyRequest,
};

/// `POST /admin/accounts/{uin}/identities`.
pub(super) async fn create_identity(
    State(s): State<Internal>,
    Path(uin): Path<u64>,
    Json(req): Json<CreateIdentityRequest>,
) -> Response {
    let identity = Identity {
        uin,
        kind: req.kind,
        name: req.name,
        service: req.service.filter(|p| !p.is_empty()),
        policies: Default::default(),
        created_at: s.node.clock().wall_secs(),
    };
    let command = Command::CreateIdentity {
        identity: identity.clone(),
    };
    json_or_error(apply(&s, command).await.map(|()| identity))
}

/// `GET /admin/accounts/{uin}/identities`.
pub(super) async fn list_identities(State(s): State<Internal>, Path(uin): Path<u64>) -> Response {
    read_linearizable(&s, |r| r.iam().identities(uin).cloned().collect::<Vec<_>>()).await
}

/// `DELETE /admin/accounts/{uin}/users/{name}`: the user and every credential bound to it.
pub(super) async fn delete_user(s: State<Internal>, path: Path<(u64, String)>) -> Response {
    delete_identity(s, path, IdentityKind::User).await
}

/// `DELETE /admin/accounts/{uin}/roles/{name}`: the role and every credential bound to it.
pub(super) async fn delete_role(s: State<Internal>, path: Path<(u64, String)>) -> Response {
    delete_identity(s, path, IdentityKind::Role).await
}

async fn delete_identity(
    State(s): State<Internal>,
    Path((uin, name)): Path<(u64, String)>,
    kind: IdentityKind,
) -> Response {
    let deleted = apply(&s, Command::DeleteIdentity { uin, kind, name }).await;
    json_or_error(deleted.map(|()| serde_json::json!({"deleted": true})))
}

/// `POST /admin/accounts/{uin}/users/{name}/credentials`.
pub(super) async fn user_credential(s: State<Internal>, path: Path<(u64, String)>) -> Response {
    create_identity_credential(s, path, IdentityKind::User).await
}

/// `POST /admin/accounts/{uin}/roles/{name}/credentials`.
pub(super) async fn role_credential(s: State<Internal>, path: Path<(u64, String)>) -> Response {
    create_identity_credential(s, path, IdentityKind::Role).await
}

/// A new SecretId/SecretKey that speaks for the identity (the only time the secret key is shown).
async fn create_identity_credential(
    State(s): State<Internal>,
    Path((uin, name)): Path<(u64, String)>,
    kind: IdentityKind,
) -> Response {
    let created = issue_credential(&s, uin, |credential| Command::CreateIdentityCredential {
        credential,
        kind,
        name,
    });
    json_or_error(created.await)
}

/// A policy parsed from its document, or the parser's precise refusal as a `400`.
fn parsed(
    s: &Internal,
    uin: u64,
    name: String,
    req: PolicyRequest,
) -> Result<Policy, ClusterError> {
    let statements = policy::parse(&req.document, uin)
        .map_err(|e| ClusterError::BadRequest(format!("policy `{name}`: {e}")))?;
    let now = s.node.clock().wall_secs();
    Ok(Policy {
        uin,
        name,
        description: req.description,
        statements,
        text: req.document,
        created_at: now,
        updated_at: now,
    })
}

/// `POST /admin/accounts/{uin}/policies`: a new policy.
pub(super) async fn create_policy(
    State(s): State<Internal>,
    Path(uin): Path<u64>,
    Json(req): Json<PolicyRequest>,
) -> Response {
    put_policy(&s, uin, req.name.clone(), req, false).await
}

/// `PUT /admin/accounts/{uin}/policies/{name}`: a new document for an existing policy (binds
/// every identity it is attached to once acknowledged).
pub(super) async fn replace_policy(
    State(s): State<Internal>,
    Path((uin, name)): Path<(u64, String)>,
    Json(req): Json<PolicyRequest>,
) -> Response {
    put_policy(&s, uin, name, req, true).await
}

async fn put_policy(
    s: &Internal,
    uin: u64,
    name: String,
    req: PolicyRequest,
    replace: bool,
) -> Response {
    let policy = match parsed(s, uin, name, req) {
        Ok(p) => p,
        Err(e) => return admin_error(e),
    };
    let info = info(&policy, Vec::new());
    json_or_error(
        apply(s, Command::PutPolicy { policy, replace })
            .await
            .map(|()| info),
    )
}

fn info(p: &Policy, attached_to: Vec<String>) -> PolicyInfo {
    PolicyInfo {
        name: p.name.clone(),
        description: p.description.clone(),
        document: p.text.clone(),
        created_at: p.created_at,
        updated_at: p.updated_at,
        attached_to,
    }
}

/// `GET /admin/accounts/{uin}/policies`.
pub(super) async fn list_policies(State(s): State<Internal>, Path(uin): Path<u64>) -> Response {
    read_linearizable(&s, |r| {
        let iam = r.iam();
        iam.policies(uin)
            .map(|p| {
                let attached = iam
                    .identities(uin)
                    .filter(|i| i.policies.contains(&p.name))
                    .map(|i| format!("{}/{}", i.kind.as_str(), i.name))
                    .collect();
                info(p, attached)
            })
            .collect::<Vec<_>>()
    })
    .await
}

/// `DELETE /admin/accounts/{uin}/policies/{name}`: detached from everyone, then deleted.
pub(super) async fn delete_policy(
    State(s): State<Internal>,
    Path((uin, name)): Path<(u64, String)>,
) -> Response {
    json_or_error(
        apply(&s, Command::DeletePolicy { uin, name })
            .await
            .map(|()| serde_json::json!({"deleted": true})),
    )
}

/// `POST /admin/accounts/{uin}/attachments`.
pub(super) async fn attach(
    State(s): State<Internal>,
    Path(uin): Path<u64>,
    Json(req): Json<AttachRequest>,
) -> Response {
    let command = Command::AttachPolicy {
        uin,
        kind: req.kind,
        name: req.name,
        policy: req.policy,
        attach: req.attach,
    };
    json_or_error(
        apply(&s, command)
            .await
            .map(|()| serde_json::json!({"attached": req.attach})),
    )
}

/// `GET /admin/audit/checkpoints`: every node's retained audit chain heads, for
/// `raftkms audit verify`.
pub(super) async fn audit_checkpoints(State(s): State<Internal>) -> Response {
    read_linearizable(&s, |r| {
        r.audit_heads()
            .all()
            .map(|c| AuditCheckpointInfo {
                node_id: c.node_id,
                seq: c.seq,
                hash: hex::encode(c.hash),
                at_ms: c.at_ms,
            })
            .collect::<Vec<_>>()
    })
    .await
}
