//! Requests between nodes of the cluster: a follower's forwarded write, and a follower's request
//! for a read index.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;

use super::{binary, decode_body, Internal};
use crate::raft::error::ClusterError;
use crate::registry::Envelope;

pub(super) async fn forwarded_write(State(s): State<Internal>, body: Bytes) -> Response {
    let env: Envelope = match decode_body("forwarded write", &body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    binary(&s.node.writes().accept_forwarded(env).await)
}

pub(super) async fn read_index(State(s): State<Internal>) -> Response {
    binary(&s.node.reads().serve_read_index().await)
}

/// A member's part of an audit query: its own trail's matching records.
pub(super) async fn audit_query(State(s): State<Internal>, body: Bytes) -> Response {
    let q: crate::kms::audit_query::AuditQuery = match decode_body("audit query", &body) {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    let answer: Result<Vec<crate::kms::audit_query::AuditRow>, ClusterError> = match s.audit {
        None => Ok(Vec::new()),
        Some(log) => match log.sync().await {
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
