//! The write path: commands stamped by this node, proposed on the leader (locally, or forwarded
//! over the internal listener), following one leader change, always bounded in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batcher::Batcher;
use super::leader::LeaderView;
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::raft::error::ClusterError;
use crate::raft::state_machine::AppliedState;
use crate::raft::types;
use crate::registry::{Command, Envelope, Outcome, RequestId};
use crate::transport::peer::paths;
use crate::transport::Peers;

/// Proposes commands through whichever node leads.
pub struct Writes {
    leader: LeaderView,
    batcher: Batcher,
    peers: Peers,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    write_timeout_ms: u64,
    heartbeat_ms: u64,
    /// The applied registry, for the cluster's feature level.
    state: AppliedState,
}

impl Writes {
    pub fn new(
        state: AppliedState,
        leader: LeaderView,
        peers: Peers,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        write_timeout_ms: u64,
        heartbeat_ms: u64,
    ) -> Self {
        Writes {
            batcher: Batcher::new(leader.raft().clone(), metrics.clone()),
            leader,
            peers,
            metrics,
            clock,
            write_timeout_ms,
            heartbeat_ms,
            state,
        }
    }

    fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// Wraps a command into an envelope stamped with this node's wall clock and a fresh request
    /// id unless the caller chose one.
    pub fn envelope(&self, request_id: Option<RequestId>, command: Command) -> Envelope {
        Envelope {
            request_id: request_id.unwrap_or_else(RequestId::random),
            issued_at_ms: self.clock.wall_ms(),
            command,
        }
    }

    /// Proposes a write through whichever node leads: locally if this node leads, otherwise
    /// forwarded over the internal listener. Follows one leader change; bounded by the write
    /// timeout. A retry carries the same request id, so it is never applied twice.
    pub async fn propose(&self, env: Envelope) -> Result<Outcome, ClusterError> {
        let deadline = Instant::now() + self.write_timeout();
        let mut followed = false;
        loop {
            let (leader, node) = self
                .leader
                .wait_for_leader(deadline, self.write_timeout_ms)
                .await?;
            let attempt = if leader == self.leader.id() {
                self.propose_local(env.clone(), deadline).await
            } else {
                self.metrics.forwarded_writes.inc();
                self.forward_write(leader, &node, &env, deadline).await
            };
            let retry = match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(e @ (ClusterError::NotLeader { .. } | ClusterError::Forward(_))) => e,
                Err(e) => return Err(e),
            };
            if followed {
                return Err(match retry {
                    ClusterError::NotLeader { .. } => ClusterError::LeaderChanged,
                    other => other,
                });
            }
            followed = true;
            if matches!(retry, ClusterError::Forward(_)) {
                self.metrics.forward_failures.inc();
            }
            // Give the cluster a moment to settle on (or tell us about) the new leader.
            let pause = Duration::from_millis(self.heartbeat_ms);
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Proposes on this node only, which must lead (`NotLeader` otherwise), never forwarded: a
    /// forwarded write, or one whose checks this node made as leader (raising the feature
    /// level).
    pub async fn propose_here(&self, env: Envelope) -> Result<Outcome, ClusterError> {
        match self.leader.leader() {
            Some((l, _)) if l == self.leader.id() => {
                self.propose_local(env, Instant::now() + self.write_timeout())
                    .await
            }
            other => Err(ClusterError::NotLeader {
                leader: other.map(|(l, _)| l),
            }),
        }
    }

    /// Takes a write forwarded by a follower: re-stamps it with this node's clock (time in the
    /// registry is the leader's, so a forwarding node whose clock is behind cannot shorten a
    /// deletion window or a token's life) and proposes it here if this node leads.
    pub async fn accept_forwarded(&self, mut env: Envelope) -> Result<Outcome, ClusterError> {
        env.issued_at_ms = self.clock.wall_ms();
        self.propose_here(env).await
    }

    /// Proposes on this node, which must be the leader, batched with the writes waiting at the
    /// same time ([`Batcher`]).
    async fn propose_local(
        &self,
        env: Envelope,
        deadline: Instant,
    ) -> Result<Outcome, ClusterError> {
        self.check_feature_level(&env.command)?;
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.batcher.propose(env)).await {
            Err(_) => Err(ClusterError::WriteTimeout(self.write_timeout_ms)),
            Ok(answer) => answer,
        }
    }

    /// A command newer than the cluster's feature level is not proposed: a member of the
    /// previous release could not decode it (registry::features). Checked by the leader, whose
    /// applied level is the newest; the level only rises. `SetFeatureLevel` is gated by
    /// `node::upgrade` instead (every member's reported build).
    fn check_feature_level(&self, command: &Command) -> Result<(), ClusterError> {
        if matches!(command, Command::SetFeatureLevel { .. }) {
            return Ok(());
        }
        let needed = command.required_level();
        let current = self.state.feature_level();
        if needed > current {
            return Err(ClusterError::FeatureNotEnabled { needed, current });
        }
        Ok(())
    }

    async fn forward_write(
        &self,
        leader_id: crate::raft::types::NodeId,
        leader: &types::Node,
        env: &Envelope,
        deadline: Instant,
    ) -> Result<Outcome, ClusterError> {
        let left = deadline.saturating_duration_since(Instant::now());
        #[cfg(feature = "planted-bugs")]
        if std::env::var("RAFTKMS_PLANT").is_ok_and(|v| v == "forwarded-write-applied-twice") {
            // PLANTED BUG (jepsen/README.md): the forwarded write is delivered once more 300 ms
            // later (a retry racing the first reply); with the dedup bypass it applies twice.
            let (peers, addr, env) = (self.peers.clone(), leader.raft_addr.clone(), env.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _: Result<Result<Outcome, ClusterError>, ClusterError> = peers
                    .call(
                        leader_id,
                        &addr,
                        paths::FORWARD_WRITE,
                        &env,
                        Duration::from_secs(5),
                    )
                    .await;
            });
        }
        self.peers
            .call(
                leader_id,
                &leader.raft_addr,
                paths::FORWARD_WRITE,
                env,
                left,
            )
            .await?
    }
}
