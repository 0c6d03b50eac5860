//! Membership: initializing a cluster, adding a node (learner first, promoted once caught up)
//! and removing one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::ChangeMembers;

use super::leader::LeaderView;
use crate::config::PeerConfig;
use crate::raft::error::ClusterError;
use crate::raft::types::{self, NodeId};
use crate::wire::JoinRequest;

/// Membership changes of the cluster, run on the leader.
pub struct Membership {
    leader: LeaderView,
}

impl Membership {
    pub fn new(leader: LeaderView) -> Self {
        Membership { leader }
    }

    /// Makes the configured voters the first members of a new cluster.
    pub async fn initialize_voters(&self, configured: &[PeerConfig]) -> Result<(), ClusterError> {
        if configured.is_empty() {
            return Err(ClusterError::BadRequest(
                "this node's config lists no peers to initialize with".into(),
            ));
        }
        let voters: BTreeMap<NodeId, types::Node> = configured
            .iter()
            .filter(|p| p.voter)
            .map(|p| (p.id, node_of(p)))
            .collect();
        match self.leader.raft().initialize(voters).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                Err(ClusterError::AlreadyInitialized)
            }
            Err(RaftError::APIError(e)) => Err(ClusterError::Membership(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(ClusterError::Stopped(f.to_string())),
        }
    }

    /// Adds the configured learners once a leader exists, when this node is that leader. When
    /// another node leads, the learners are returned for the admin caller to add there (a node's
    /// certificate does not make it an admin, so it cannot ask the leader itself).
    pub async fn add_learners(
        &self,
        configured: &[PeerConfig],
        deadline: Instant,
        waited_ms: u64,
    ) -> Result<Vec<JoinRequest>, ClusterError> {
        let mut pending = Vec::new();
        for p in configured.iter().filter(|p| !p.voter) {
            let (leader, _) = self.leader.wait_for_leader(deadline, waited_ms).await?;
            if leader == self.leader.id() {
                self.join(p.id, node_of(p), false).await?;
                continue;
            }
            pending.push(JoinRequest {
                id: p.id,
                raft_addr: p.raft_addr.clone(),
                api_addr: p.api_addr.clone(),
                region: p.region.clone(),
                voter: false,
            });
        }
        Ok(pending)
    }

    /// Adds a node as a learner, waits until it has replicated everything the leader had when
    /// it was added (through a snapshot if the log was compacted), then (for voters) promotes it.
    pub async fn join(
        &self,
        id: NodeId,
        node: types::Node,
        voter: bool,
    ) -> Result<(), ClusterError> {
        let added = self.add_learner(id, node).await?;
        self.catch_up(id, added, voter).await
    }

    /// The first step of [`Self::join`]: adds the learner; returns the index of the change.
    pub async fn add_learner(&self, id: NodeId, node: types::Node) -> Result<u64, ClusterError> {
        let added = self
            .leader
            .raft()
            .add_learner(id, node, false)
            .await
            .map_err(membership_err)?;
        Ok(added.log_id.index)
    }

    /// The rest of [`Self::join`]: waits until learner `id` has matched index `added`, then
    /// (for voters) promotes it.
    pub async fn catch_up(&self, id: NodeId, added: u64, voter: bool) -> Result<(), ClusterError> {
        // openraft's own "blocking" add considers a learner caught up once it lags by less than
        // `replication_lag_threshold` entries, which can be before it has received anything.
        // Promotion must wait for real data, so wait until it has matched the add itself.
        self.wait_until_matched(id, added).await?;
        tracing::info!(node = id, "new node has caught up");
        if voter {
            self.leader
                .raft()
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(membership_err)?;
        }
        Ok(())
    }

    /// Waits until node `id` has replicated up to `target`, reporting progress every 5 s; fails
    /// if this node stops leading meanwhile.
    async fn wait_until_matched(&self, id: NodeId, target: u64) -> Result<(), ClusterError> {
        let mut rx = self.leader.raft().metrics();
        let mut last_report = Instant::now();
        loop {
            let matched = {
                let m = rx.borrow_and_update();
                if m.current_leader != Some(self.leader.id()) {
                    return Err(ClusterError::NotLeader {
                        leader: m.current_leader,
                    });
                }
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned())
                    .flatten()
                    .map(|l| l.index)
            };
            if matched.is_some_and(|i| i >= target) {
                return Ok(());
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                tracing::info!(node = id, matched = ?matched, target, "waiting for the new node to catch up");
                last_report = Instant::now();
            }
            // Wake on every metrics change; re-check at least every second.
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
    }

    /// Removes a voter or learner from the cluster.
    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterError> {
        let is_voter = {
            let m = self.leader.raft().metrics();
            let m = m.borrow();
            let is_voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id);
            is_voter
        };
        let ids = BTreeSet::from([id]);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        self.leader
            .raft()
            .change_membership(change, false)
            .await
            .map_err(membership_err)?;
        Ok(())
    }
}

fn node_of(p: &PeerConfig) -> types::Node {
    types::Node {
        raft_addr: p.raft_addr.clone(),
        api_addr: p.api_addr.clone(),
        region: p.region.clone(),
    }
}

/// Maps openraft's membership errors by their type: a change sent to a non-leader is
/// `NotLeader` (retryable elsewhere), a refused change is `Membership`.
fn membership_err(e: RaftError<NodeId, ClientWriteError<NodeId, types::Node>>) -> ClusterError {
    match e {
        RaftError::Fatal(f) => ClusterError::Stopped(f.to_string()),
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ClusterError::Membership(e.to_string())
        }
    }
}
