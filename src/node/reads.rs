//! The read path of a node: the read gate (linearizable or stale), read indexes from the
//! leader's read lease or a confirmation round, and the leader's service of its followers'
//! read-index requests (docs/architecture.md §6).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::RaftError;

use super::leader::LeaderView;
use crate::config::Consistency;
use crate::metrics::Metrics;
use crate::raft::error::ClusterError;
use crate::raft::log_store::CommitMarker;
use crate::raft::read_gate::Coalescer;
use crate::raft::read_lease::ReadLease;
use crate::raft::state_machine::AppliedState;
use crate::raft::types::Raft;
use crate::transport::peer::paths;
use crate::transport::Peers;
use crate::wire::ReadPosition;

type RoundFuture = Pin<Box<dyn Future<Output = Result<u64, ClusterError>> + Send>>;

/// The read gate of one node.
pub struct Reads {
    leader: LeaderView,
    state: AppliedState,
    committed: Arc<CommitMarker>,
    peers: Peers,
    metrics: Arc<Metrics>,
    /// Rounds this node runs or asks its leader for (per leader lane).
    gate: Coalescer,
    /// Rounds this node runs as leader for its followers.
    leader_gate: Coalescer,
    /// The read lease this node holds as leader, if any.
    lease: Arc<ReadLease>,
    read_timeout_ms: u64,
}

impl Reads {
    pub fn new(
        leader: LeaderView,
        state: AppliedState,
        committed: Arc<CommitMarker>,
        peers: Peers,
        metrics: Arc<Metrics>,
        read_lease: Duration,
        read_timeout_ms: u64,
    ) -> Self {
        Reads {
            leader,
            state,
            committed,
            peers,
            metrics,
            gate: Coalescer::default(),
            leader_gate: Coalescer::default(),
            lease: Arc::new(ReadLease::new(read_lease)),
            read_timeout_ms,
        }
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    /// Where a read served now would stand.
    pub fn position(&self, consistency: Consistency) -> ReadPosition {
        ReadPosition {
            consistency,
            applied_index: self.state.applied_index(),
            known_commit_index: self.known_commit_index(),
        }
    }

    /// The highest commit index this node knows of.
    pub fn known_commit_index(&self) -> Option<u64> {
        self.committed.get()
    }

    /// The read gate. Linearizable: a quorum-confirmed read index, then wait until applied.
    /// Stale: serve local state at once.
    pub async fn read_barrier(
        &self,
        consistency: Consistency,
    ) -> Result<ReadPosition, ClusterError> {
        #[cfg(feature = "planted-bugs")]
        if consistency == Consistency::Linearizable
            && std::env::var("RAFTKMS_PLANT")
                .is_ok_and(|v| v == "follower-serves-without-read-gate")
            && !self.leader.is_leader()
        {
            // PLANTED BUG (jepsen/README.md): a follower answers "linearizable" reads from
            // whatever it has applied, without a read index.
            return Ok(self.position(consistency));
        }
        if consistency == Consistency::Linearizable {
            let started = Instant::now();
            // During an election no node knows a leader for a moment: wait for one (bounded by
            // the read timeout) instead of failing a read that would succeed a few ms later.
            if self.leader.leader().is_none() {
                self.leader
                    .wait_for_leader(started + self.read_timeout(), self.read_timeout_ms)
                    .await
                    .map_err(|_| ClusterError::ReadIndex("no leader is known".into()))?;
            }
            let index = self.read_index().await?;
            let wait = self.read_timeout().saturating_sub(started.elapsed());
            if self.state.applied_index().is_none_or(|a| a < index) {
                self.leader
                    .raft()
                    .wait(Some(wait))
                    .applied_index_at_least(Some(index), "read gate")
                    .await
                    .map_err(|_| ClusterError::ReadTimeout(self.read_timeout_ms))?;
            }
            self.metrics.read_gate_waits.inc();
            self.metrics
                .read_gate_seconds
                .observe(started.elapsed().as_secs_f64());
        } else {
            self.metrics.stale_reads.inc();
        }
        Ok(self.position(consistency))
    }

    /// Voids every read lease of a term below `term`: called before a vote request reaches
    /// openraft, which may grant it.
    pub fn fence_read_lease(&self, term: u64) {
        self.lease.fence(term);
    }

    /// A read index from this node's read lease, if it leads and the lease runs.
    fn leased_read_index(&self) -> Option<u64> {
        // Leadership and term from one snapshot of the metrics.
        let term = self.leader.term_if_leader()?;
        let committed = self.committed.get().unwrap_or(0);
        let index = self.lease.read_index(Instant::now(), term, committed)?;
        self.metrics.read_gate_leased.inc();
        Some(index)
    }

    /// A confirmation round on the leader that, when it succeeds, renews the read lease.
    fn leader_round(&self) -> impl Fn() -> RoundFuture + Send + Sync + 'static {
        let raft = self.leader.raft().clone();
        let timeout = self.read_timeout();
        let lease = self.lease.clone();
        move || {
            let (raft, lease) = (raft.clone(), lease.clone());
            Box::pin(async move {
                let from = Instant::now();
                let term = raft.metrics().borrow().current_term;
                let index = leader_read_index(&raft, timeout).await?;
                lease.renew(term, from, index);
                Ok(index)
            })
        }
    }

    /// A read index valid for reads that began before this call: from this node if it leads,
    /// otherwise from the leader. Concurrent callers share one confirmation round.
    async fn read_index(&self) -> Result<u64, ClusterError> {
        if let Some(index) = self.leased_read_index() {
            return Ok(index);
        }
        let peers = self.peers.clone();
        let id = self.leader.id();
        let timeout = self.read_timeout();
        let metrics = self.metrics.clone();
        let round = self.leader_round();
        let view = self.leader.clone();
        let lane = view.leader().map(|(l, _)| l).unwrap_or(0);
        self.gate
            .read_index(lane, move || {
                let (peers, metrics) = (peers.clone(), metrics.clone());
                let leader = view.leader();
                let own_round = round();
                async move {
                    metrics.read_gate_rounds.inc();
                    match leader {
                        Some((l, _)) if l == id => own_round.await,
                        Some((leader_id, node)) => {
                            peers
                                .call::<(), Result<u64, ClusterError>>(
                                    leader_id,
                                    &node.raft_addr,
                                    paths::READ_INDEX,
                                    &(),
                                    timeout,
                                )
                                .await?
                        }
                        None => Err(ClusterError::ReadIndex("no leader is known".into())),
                    }
                }
            })
            .await
    }

    /// Serves a follower's read-index request; only valid on the leader.
    pub async fn serve_read_index(&self) -> Result<u64, ClusterError> {
        if let Some(index) = self.leased_read_index() {
            return Ok(index);
        }
        self.leader_gate.read_index(0, self.leader_round()).await
    }
}

async fn leader_read_index(raft: &Raft, timeout: Duration) -> Result<u64, ClusterError> {
    match tokio::time::timeout(timeout, raft.get_read_log_id()).await {
        Err(_) => Err(ClusterError::ReadIndex(
            "no quorum confirmed leadership in time".into(),
        )),
        Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index).unwrap_or(0)),
        Ok(Err(RaftError::APIError(e))) => match e {
            openraft::error::CheckIsLeaderError::ForwardToLeader(f) => {
                Err(ClusterError::NotLeader {
                    leader: f.leader_id,
                })
            }
            other => Err(ClusterError::ReadIndex(other.to_string())),
        },
        Ok(Err(RaftError::Fatal(f))) => Err(ClusterError::Stopped(f.to_string())),
    }
}
