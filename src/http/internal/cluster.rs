//! Requests between nodes of the cluster: a follower's forwarded write, and a follower's request
//! for a read index.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{binary, decode_body, Internal};
use crate::raft::error::ClusterError;
use crate::registry::{Command, Envelope};
use crate::tls::PeerIdentity;

pub(super) async fn forwarded_write(
    State(s): State<Internal>,
    sender: Option<Extension<PeerIdentity>>,
    body: Bytes,
) -> Response {
    let env: Envelope = match decode_body("forwarded write", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // A node checkpoints only its own audit trail: under mutual TLS, a checkpoint forwarded by
    // another node than the one it names is refused (it could otherwise fence that node's
    // checkpoints for good with a huge sequence number).
    if let (
        Command::AuditCheckpoint { checkpoint },
        Some(Extension(PeerIdentity::Node { node_id, .. })),
    ) = (&env.command, &sender)
    {
        if checkpoint.node_id != *node_id {
            return (
                StatusCode::FORBIDDEN,
                format!(
                    "node {node_id} may not checkpoint node {}'s audit trail",
                    checkpoint.node_id
                ),
            )
                .into_response();
        }
    }
    binary(&s.node.writes().accept_forwarded(env).await)
}

pub(super) async fn read_index(State(s): State<Internal>) -> Response {
    binary(&s.node.reads().serve_read_index().await)
}

/// A follower's request for a read lease (its node id in the body; under mutual TLS it must be
/// the certificate's).
pub(super) async fn lease(
    State(s): State<Internal>,
    sender: Option<Extension<PeerIdentity>>,
    body: Bytes,
) -> Response {
    let holder: u64 = match decode_body("lease request", &body) {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    if let Err(r) = super::sender_is(&s.node, sender.as_deref(), Some(holder)) {
        return r;
    }
    binary(&s.node.reads().serve_lease(holder).await)
}

/// A member's part of an audit query: its own trail's matching records.
pub(super) async fn audit_query(State(s): State<Internal>, body: Bytes) -> Response {
    let q: crate::kms::audit_query::AuditQuery = match decode_body("audit query", &body) {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    let answer: Result<Vec<crate::kms::audit_query::AuditRow>, ClusterError> = match s.audit {
        None => Ok(Vec::new()),
        Some(log) => match crate::kms::audit::sync_within(&log).await {
            Err(e) => Err(ClusterError::Forward(format!("its audit trail: {e}"))),
            Ok(()) => {
                let dir = log.dir().to_path_buf();
                tokio::task::spawn_blocking(move || {
                    crate::kms::audit_query::query_local(&dir, &q)
                        .map_err(|e| ClusterError::Forward(format!("its audit trail: {e}")))
                })
                .await
                .unwrap_or_else(|e| Err(ClusterError::Forward(e.to_string())))
            }
        },
    };
    binary(&answer)
}

/// This member's own status and API totals (the console's cluster view, `Kms::cluster_status`).
pub(super) async fn node_status(State(s): State<Internal>) -> Response {
    binary(&crate::kms::cluster::member_status(&s.node))
}
