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
    // Appended variants (bincode numbers variants in order; a forwarded write's error travels
    // between nodes, so the order above never changes).
    #[error("this node cannot seal or open the cluster root key: {0}")]
    Seal(String),
    #[error("cannot compute the state digest: {0}")]
    Digest(String),
    #[error("cannot encode or decode a message: {0}")]
    Codec(String),
    #[error("cannot take a backup: {0}")]
    Backup(String),
    #[error("this operation needs cluster feature level {needed}, the cluster is at {current}: finish the rolling upgrade first (`raftkms cluster upgrade finalize`, docs/operations.md)")]
    FeatureNotEnabled { needed: u32, current: u32 },
    #[error("the upgrade cannot be finalized: {0}")]
    Upgrade(String),
}

impl ClusterError {
    /// Whether retrying the same request (same request id) later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ClusterError::BadRequest(_)
                | ClusterError::AlreadyInitialized
                | ClusterError::Membership(_)
                | ClusterError::Seal(_)
                | ClusterError::Digest(_)
                | ClusterError::Codec(_)
                | ClusterError::FeatureNotEnabled { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_unseal_key_is_not_retryable_but_a_lost_leader_is() {
        assert!(!ClusterError::Seal("wrong unseal key".into()).is_retryable());
        assert!(!ClusterError::Digest("x".into()).is_retryable());
        assert!(ClusterError::NoLeader(100).is_retryable());
        assert!(ClusterError::Stopped("core ended".into()).is_retryable());
    }

    #[test]
    fn variant_numbers_are_stable_on_the_wire() {
        // A forwarded write's error crosses nodes of different versions: the first variants keep
        // their bincode numbers (appending is the only allowed change).
        let bytes = crate::codec::encode("t", &ClusterError::BadRequest("x".into())).unwrap();
        let back: ClusterError = crate::codec::decode("t", &bytes).unwrap();
        assert_eq!(back, ClusterError::BadRequest("x".into()));
        assert_eq!(bytes[1], 10, "BadRequest is variant 10");
    }
}
