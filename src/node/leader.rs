//! Who leads, as this node sees it: shared by the write path, the read path, membership and
//! health.

use std::time::Instant;

use crate::raft::error::ClusterError;
use crate::raft::types::{self, NodeId, Raft};

/// This node's id and its handle on the Raft core, for leader questions.
#[derive(Clone)]
pub struct LeaderView {
    id: NodeId,
    raft: Raft,
}

impl LeaderView {
    pub fn new(id: NodeId, raft: Raft) -> Self {
        LeaderView { id, raft }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft core.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The leader this node currently knows, with its address.
    pub fn leader(&self) -> Option<(NodeId, types::Node)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Whether this node is the leader it knows of.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The current term, if this node leads in it (read from one snapshot of the metrics).
    pub fn term_if_leader(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.current_leader == Some(self.id)).then_some(m.current_term)
    }

    /// Waits (until `deadline`) until some leader is known; `waited_ms` names the bound in the
    /// error.
    pub async fn wait_for_leader(
        &self,
        deadline: Instant,
        waited_ms: u64,
    ) -> Result<(NodeId, types::Node), ClusterError> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(ClusterError::NoLeader(waited_ms));
            }
        }
    }
}
