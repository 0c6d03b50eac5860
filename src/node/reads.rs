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
use crate::raft::lease::{HolderLease, Visibility};
use crate::raft::log_store::{AppendMarker, CommitMarker};
use crate::raft::read_gate::Coalescer;
use crate::raft::read_lease::ReadLease;
use crate::raft::state_machine::AppliedState;
use crate::raft::types::NodeId;
use crate::raft::types::Raft;
use crate::transport::peer::paths;
use crate::transport::Peers;
use crate::wire::ReadPosition;

/// A follower whose log is further behind the commit index than this gets no lease.
pub const LAG_ALLOWED: u64 = 256;

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
    /// The follower read lease this node holds, if any (docs/architecture.md §6a).
    holder: Arc<HolderLease>,
    /// The apply gate and, on the leader, the leases it granted.
    visibility: Arc<Visibility>,
    /// The last index written to this node's log.
    appended: Arc<AppendMarker>,
    read_timeout_ms: u64,
}

/// The leader's answer to a lease request: the term it was granted in and the index the holder
/// must have applied before it serves a read (the leader's commit index once the lease counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseGrant {
    pub term: u64,
    pub min_applied: u64,
}

/// The parts of a node the read path uses besides its leader view.
pub struct ReadParts {
    pub state: AppliedState,
    pub committed: Arc<CommitMarker>,
    pub appended: Arc<AppendMarker>,
    pub visibility: Arc<Visibility>,
    pub peers: Peers,
    pub metrics: Arc<Metrics>,
}

impl Reads {
    /// `holder_lease`: the follower read lease this node asks for (zero: none).
    pub fn new(
        leader: LeaderView,
        parts: ReadParts,
        read_lease: Duration,
        holder_lease: Duration,
        read_timeout_ms: u64,
    ) -> Self {
        Reads {
            leader,
            state: parts.state,
            committed: parts.committed,
            peers: parts.peers,
            metrics: parts.metrics,
            gate: Coalescer::default(),
            leader_gate: Coalescer::default(),
            lease: Arc::new(ReadLease::new(read_lease)),
            holder: Arc::new(HolderLease::new(holder_lease)),
            visibility: parts.visibility,
            appended: parts.appended,
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
            if self.holder_read(started).await {
                self.metrics.read_gate_waits.inc();
                self.metrics
                    .read_gate_seconds
                    .observe(started.elapsed().as_secs_f64());
                return Ok(self.position(consistency));
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
        self.holder.fence(term);
    }

    /// A linearizable read served under this node's follower read lease, without asking the
    /// leader: the lease is in force for the current term (checked after the read began), this
    /// node has applied what the grant named, and it then applies everything in its log (every
    /// write acknowledged before the read is there: it was visible, so every counted holder had
    /// it). False when there is no lease, or it ends first: the caller asks for a read index.
    async fn holder_read(&self, started: Instant) -> bool {
        if self.holder.length().is_zero() {
            return false;
        }
        let term = {
            let m = self.leader.raft().metrics();
            let m = m.borrow();
            if m.current_leader == Some(self.leader.id()) {
                return false;
            }
            m.current_term
        };
        let Some((min_applied, until)) = self.holder.check(Instant::now(), term) else {
            return false;
        };
        let last_log = {
            let m = self.leader.raft().metrics();
            let logged = m.borrow().last_log_index.unwrap_or(0);
            logged.max(self.appended.get())
        };
        let need = min_applied.max(last_log);
        if self.state.applied_index().is_none_or(|a| a < need) {
            let left = until
                .min(started + self.read_timeout())
                .saturating_duration_since(Instant::now());
            if left.is_zero()
                || self
                    .leader
                    .raft()
                    .wait(Some(left))
                    .applied_index_at_least(Some(need), "holder read")
                    .await
                    .is_err()
            {
                return false;
            }
        }
        self.metrics.holder_reads.inc();
        true
    }

    /// The follower read lease of this node.
    pub fn holder_lease(&self) -> &HolderLease {
        &self.holder
    }

    /// Serves a follower's lease request (on the leader): refused (`None`) when follower leases
    /// are off here or the follower's log lags more than [`LAG_ALLOWED`] entries behind the
    /// commit index (writes would wait for it to catch up); otherwise granted once a quorum of
    /// every configuration accepted appends sent after the request arrived (the appends and
    /// heartbeats the leader sends anyway, one heartbeat asked for now; or, failing those, a
    /// confirmation round that starts after the request arrived), so the lease (counted by the
    /// holder from before it sent the request) ends before any other leader can be elected.
    pub async fn serve_lease(&self, holder: NodeId) -> Result<Option<LeaseGrant>, ClusterError> {
        let now = Instant::now();
        let Some(term) = self.leader.term_if_leader() else {
            return Err(ClusterError::NotLeader {
                leader: self.leader.leader().map(|(l, _)| l),
            });
        };
        if !self.visibility.enabled() || holder == self.leader.id() {
            return Ok(None);
        }
        // The follower's progress as the leader's replication knows it: a node this leader does
        // not replicate to (not a member, or not known yet) gets no lease.
        let matched = {
            let m = self.leader.raft().metrics();
            let m = m.borrow();
            m.replication
                .as_ref()
                .and_then(|r| r.get(&holder))
                .and_then(|l| l.as_ref())
                .map(|l| l.index)
        };
        let Some(matched) = matched else {
            self.metrics.lease_refusals.inc();
            return Ok(None);
        };
        // Far behind, or not yet at what its last grant asked for: writes would wait for it.
        if matched.saturating_add(LAG_ALLOWED) < self.committed.get().unwrap_or(0)
            || !self.visibility.may_renew(holder, term, matched)
        {
            self.metrics.lease_refusals.inc();
            return Ok(None);
        }
        // Counted from here (provisionally, serialized with votes): a vote decided from now on is
        // refused; one decided before raised the fence, so the grant is dated by a round, which
        // fails if openraft granted that vote.
        let voted_since = {
            let _gate = self.visibility.vote_gate.lock().await;
            self.visibility.grant(holder, term, now, 0);
            // A vote of a later term decided before the grant counted: openraft may have granted
            // it and left leadership before its metrics say so. Only a round (through openraft's
            // core, which knows) may then confirm this term.
            self.lease.fenced_above(term)
        };
        // A quorum that accepted appends sent after `now`: the acknowledgements of the appends
        // and heartbeats the leader sends anyway, or else a round that starts after `now` (never
        // the read lease: its round may predate it), whose index covers this term's first entry,
        // so everything an earlier leader committed.
        let acked = if voted_since {
            None
        } else {
            // An idle leader sends a heartbeat only every `heartbeat-ms`, often longer than the
            // holder's request may wait: ask for one now (openraft sends it at once on an idle
            // replication stream, and drops it for an append that is already waiting).
            let _ = self.leader.raft().trigger().heartbeat().await;
            self.quorum_accepted_since(term, now).await
        };
        let round = match acked {
            Some(applied) => {
                self.metrics.lease_grants_from_acks.inc();
                applied
            }
            None => self.leader_gate.read_index(0, self.leader_round()).await?,
        };
        if self.leader.term_if_leader() != Some(term) {
            return Err(ClusterError::NotLeader {
                leader: self.leader.leader().map(|(l, _)| l),
            });
        }
        // Read once the grant counts: every entry the leader let be applied without counting
        // this holder was committed before that.
        let min_applied = round.max(self.committed.get().unwrap_or(0));
        self.visibility.grant(holder, term, now, min_applied);
        self.metrics.lease_grants.inc();
        Ok(Some(LeaseGrant { term, min_applied }))
    }

    /// Whether, while this node still leads in `term`, a quorum of every configuration accepts
    /// appends it sent at or after `since` (raft/acks.rs), soon enough: waits up to an eighth of
    /// the counted lease (half the holder's request timeout), then gives up (`None`: the caller
    /// runs a confirmation round). Only once this term's first entry and the membership the
    /// quorum is counted against are applied here: the applied index returned then covers
    /// everything an earlier leader committed, and the membership in the metrics is committed,
    /// so openraft's own is at most one change ahead (a joint configuration that has it as one
    /// half, or the next one, which a majority of it must first commit).
    async fn quorum_accepted_since(&self, term: u64, since: Instant) -> Option<u64> {
        let deadline = since + self.visibility.counted() / 8;
        let metrics = self.leader.raft().metrics();
        loop {
            let next = self.visibility.acks.next_note();
            let (accepted, applied) = {
                let m = metrics.borrow();
                let applied = m.last_applied?;
                let membership_at = m.membership_config.log_id().map_or(0, |l| l.index);
                if m.current_term != term
                    || m.current_leader != Some(self.leader.id())
                    || applied.leader_id.term != term
                    || membership_at > applied.index
                {
                    return None;
                }
                let configs = m.membership_config.membership().get_joint_config();
                let accepted = self.visibility.acks.quorum_since(
                    self.leader.id(),
                    term,
                    configs,
                    Instant::now(),
                );
                (accepted, applied.index)
            };
            if accepted.is_some_and(|t| t >= since) {
                return Some(applied);
            }
            tokio::select! {
                _ = next => {}
                _ = tokio::time::sleep_until(deadline.into()) => return None,
            }
        }
    }

    /// A follower's lease renewal: asks the leader, and records the grant (counted from before
    /// the request was sent) or drops the lease on a refusal.
    pub async fn renew_holder_lease(&self) {
        let length = self.holder.length();
        if length.is_zero() {
            return;
        }
        let Some((leader, node)) = self.leader.leader() else {
            return;
        };
        if leader == self.leader.id() {
            self.holder.release();
            return;
        }
        let sent = Instant::now();
        let answer = self
            .peers
            .call::<NodeId, Result<Option<LeaseGrant>, ClusterError>>(
                leader,
                &node.raft_addr,
                paths::LEASE,
                &self.leader.id(),
                length / 2,
            )
            .await;
        match answer {
            Ok(Ok(Some(g))) => {
                let term = self.leader.raft().metrics().borrow().current_term;
                if term == g.term {
                    self.holder.granted(g.term, sent, g.min_applied);
                }
            }
            Ok(Ok(None)) | Ok(Err(_)) => self.holder.refused(sent),
            // Unanswered: the lease runs out by itself.
            Err(_) => {}
        }
    }

    /// A read index from this node's read lease, if it leads and the lease runs. In the lease's
    /// last third it also starts a round in the background, which renews the lease (from the
    /// round's start, as any round does) before it runs out.
    fn leased_read_index(&self) -> Option<u64> {
        // Leadership and term from one snapshot of the metrics.
        let term = self.leader.term_if_leader()?;
        let committed = self.committed.get().unwrap_or(0);
        let now = Instant::now();
        let index = self.lease.read_index(now, term, committed)?;
        self.metrics.read_gate_leased.inc();
        if self.lease.start_early_renewal(now, term) {
            let (gate, round, lease) = (
                self.leader_gate.clone(),
                self.leader_round(),
                self.lease.clone(),
            );
            tokio::spawn(async move {
                let _ = gate.read_index(0, round).await;
                lease.renewal_done();
            });
        }
        Some(index)
    }

    /// A confirmation round on the leader that, when it succeeds, renews the read lease.
    fn leader_round(&self) -> impl Fn() -> RoundFuture + Send + Sync + 'static {
        let raft = self.leader.raft().clone();
        let timeout = self.read_timeout();
        let lease = self.lease.clone();
        let committed = self.committed.clone();
        move || {
            let (raft, lease, committed) = (raft.clone(), lease.clone(), committed.clone());
            Box::pin(async move {
                let from = Instant::now();
                let term = raft.metrics().borrow().current_term;
                // Never below the commit index this node saved: a leader restored after a
                // restart starts from its applied index (with follower leases nothing is
                // re-applied at start), below what others may already have shown.
                let index = leader_read_index(&raft, timeout)
                    .await?
                    .max(committed.get().unwrap_or(0));
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
