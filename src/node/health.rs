//! Health and readiness of one node, and its view of the cluster for `GET /admin/status`.

use std::sync::Arc;

use super::contact::LeaderContact;
use super::keyring::Keyring;
use super::leader::LeaderView;
use crate::config::Consistency;
use crate::metrics::Metrics;
use crate::raft::log_store::CommitMarker;
use crate::raft::state_machine::AppliedState;
use crate::raft::types::RaftMetrics;
use crate::wire::NodeStatus;

/// Readiness inputs of one node.
pub struct Health {
    pub(super) leader: LeaderView,
    pub(super) contact: Arc<LeaderContact>,
    pub(super) state: AppliedState,
    pub(super) committed: Arc<CommitMarker>,
    pub(super) metrics: Arc<Metrics>,
    /// The commit index persisted when the node started: it is not ready before applying it.
    pub(super) initial_commit: Option<u64>,
    pub(super) default_consistency: Consistency,
    pub(super) election_max_ms: u64,
    pub(super) region: String,
}

impl Health {
    /// Whether the node can serve its default consistency: it knows a leader it has heard from
    /// recently (for linearizable service: within three maximum election timeouts; a leader cut
    /// off from its quorum stops being ready), has applied what was committed when it started,
    /// and can open the root key.
    pub fn is_ready(&self, keyring: &Keyring) -> bool {
        let bound = 3 * self.election_max_ms;
        let in_contact = self.default_consistency == Consistency::Stale
            || self.contact.millis_since().is_some_and(|ms| ms <= bound);
        let applied_enough = match self.initial_commit {
            None => true,
            Some(c) => self.state.applied_index().is_some_and(|a| a >= c),
        };
        self.leader.leader().is_some() && in_contact && applied_enough && keyring.can_open_root()
    }

    /// Milliseconds since this node last heard from a leader with a quorum (`None` = never).
    pub fn millis_since_leader_contact(&self) -> Option<u64> {
        self.contact.millis_since()
    }

    /// This node's view of the cluster.
    pub fn status(&self, keyring: &Keyring) -> NodeStatus {
        let m = self.leader.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        NodeStatus {
            id: self.leader.id(),
            region: self.region.clone(),
            state: format!("{:?}", m.state),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            commit_index: self.committed.get(),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
            ready: self.is_ready(keyring),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }

    /// Brings the Prometheus gauges in step with openraft's metrics.
    pub fn observe(&self, m: &RaftMetrics) {
        let metrics = &self.metrics;
        metrics.term.set(m.current_term as i64);
        metrics.leader_id.set(m.current_leader.unwrap_or(0) as i64);
        metrics
            .is_leader
            .set(i64::from(m.current_leader == Some(m.id)));
        metrics
            .applied_index
            .set(m.last_applied.map(|l| l.index as i64).unwrap_or(-1));
        metrics
            .last_log_index
            .set(m.last_log_index.map(|i| i as i64).unwrap_or(-1));
        metrics
            .commit_index
            .set(self.committed.get().map(|i| i as i64).unwrap_or(-1));
    }

    /// Renders the metrics after bringing the Raft gauges up to date.
    pub fn render_metrics(&self) -> String {
        {
            let m = self.leader.raft().metrics();
            let m = m.borrow();
            self.observe(&m);
        }
        self.metrics.render()
    }
}
