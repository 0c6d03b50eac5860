//! The cluster layer's one error type. Serializable: followers receive it from the leader.

use serde::{Deserialize, Serialize};

use super::types::NodeId;

/// Why a write, read or membership change through the cluster failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClusterError {
    #[error("no leader is known after waiting {0} ms (is a quorum of nodes up?)")]
    NoLeader(u64),
    #[error("the write did not commit within {0} ms; it may or may not be applied (retry with the same request id)")]
    WriteTimeout(u64),
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the leader changed twice while the request was in flight")]
    LeaderChanged,
    #[error("could not confirm a read index with a quorum: {0}")]
    ReadIndex(String),
    #[error("the read index was not applied locally within {0} ms")]
    ReadTimeout(u64),
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
    #[error("the Raft node has stopped: {0}")]
    Stopped(String),
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error("the cluster is already initialized")]
    AlreadyInitialized,
    #[error("invalid request: {0}")]
    BadRequest(String),
}

impl ClusterError {
    /// Whether retrying the same request (same request id) later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ClusterError::BadRequest(_)
                | ClusterError::AlreadyInitialized
                | ClusterError::Membership(_)
        )
    }
}
