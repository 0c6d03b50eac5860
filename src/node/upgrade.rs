//! Rolling upgrades, the leader's part: what each member runs (from the version headers of its
//! answers, `transport::version`) and raising the cluster's feature level once every member
//! knows the new level (`registry::features`). Until then, commands a previous release cannot
//! decode are not proposed (`node::writes`), so any one node can still be rolled back.

use std::time::{Duration, Instant};

use super::Node;
use crate::raft::error::ClusterError;
use crate::raft::types::NodeId;
use crate::registry::features::FEATURE_LEVEL;
use crate::registry::{Command, Outcome, RegistryError};
use crate::transport::version::PeerVersion;
use crate::wire::{FinalizeReply, MemberVersion, UpgradeStatus};

/// How often the leader looks for fresh reports while finalizing.
const POLL: Duration = Duration::from_millis(20);

impl Node {
    /// Every member of the latest membership, with whether it votes.
    fn members(&self) -> Vec<(NodeId, bool)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, _)| (*id, voters.contains(id)))
            .collect()
    }

    /// `NotLeader` (naming the leader this node knows) unless this node leads.
    fn require_leader(&self) -> Result<(), ClusterError> {
        if self.is_leader() {
            return Ok(());
        }
        Err(ClusterError::NotLeader {
            leader: self.leader().map(|(l, _)| l),
        })
    }

    /// How long a peer is given to say which release it runs.
    fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.config.timing.rpc_timeout_ms.max(1_000))
    }

    /// The cluster's feature level and what each member last reported (on the leader: from the
    /// answers to its appends and heartbeats).
    pub fn upgrade_status(&self) -> Result<UpgradeStatus, ClusterError> {
        self.require_leader()?;
        let cluster_feature_level = self.state.feature_level();
        let members = self
            .members()
            .into_iter()
            .map(|(id, voter)| {
                let (version, ago) = if id == self.id {
                    (Some(PeerVersion::this_build()), Some(0))
                } else {
                    match self.peers.versions().get(id) {
                        Some(seen) => (
                            Some(seen.version),
                            Some(u64::try_from(seen.at.elapsed().as_millis()).unwrap_or(u64::MAX)),
                        ),
                        None => (None, None),
                    }
                };
                MemberVersion {
                    id,
                    voter,
                    release: version.as_ref().map(|v| v.release.clone()),
                    protocol: version.as_ref().map(|v| v.protocol),
                    features: version.as_ref().map(|v| v.features),
                    seen_ms_ago: ago,
                }
            })
            .collect();
        Ok(UpgradeStatus {
            cluster_feature_level,
            leader: self.id,
            members,
        })
    }

    /// Raises the cluster's feature level to `level` (default: the highest this leader's build
    /// knows), once every member has answered since this call began with a build that knows
    /// it; otherwise refuses, naming the members still to upgrade. Idempotent: a level already
    /// reached is answered as such. Runs on the leader.
    pub async fn finalize_upgrade(
        &self,
        level: Option<u32>,
    ) -> Result<FinalizeReply, ClusterError> {
        self.require_leader()?;
        // One membership change or finalize at a time: a node joining meanwhile would not be
        // among the members whose reports were checked.
        let _changes = self.changes.lock().await;
        let previous_level = self.state.feature_level();
        if level.is_some_and(|l| l > FEATURE_LEVEL) {
            return Err(ClusterError::BadRequest(format!(
                "this leader's build (raftkms {}) knows feature levels up to {FEATURE_LEVEL}",
                env!("CARGO_PKG_VERSION")
            )));
        }
        let target = level.unwrap_or(FEATURE_LEVEL);
        if target <= previous_level {
            return Ok(FinalizeReply {
                previous_level,
                feature_level: previous_level,
            });
        }
        let known = self.fresh_member_levels().await?;
        if target > known {
            return Err(ClusterError::Upgrade(format!(
                "not every member knows feature level {target}: {}",
                self.behind(target)
            )));
        }
        // Here or nowhere: the checks above were this leader's.
        let outcome = self
            .writes
            .propose_here(
                self.writes
                    .envelope(None, Command::SetFeatureLevel { level: target }),
            )
            .await?;
        let feature_level = match outcome {
            Outcome::Applied { .. } => target,
            // Another finalize got there first.
            Outcome::Rejected(RegistryError::FeatureLevelNotRaised { current }) => current,
            other => {
                return Err(ClusterError::Upgrade(format!(
                    "raising the level had no effect: {other:?}"
                )))
            }
        };
        tracing::info!(
            previous_level,
            feature_level,
            "cluster feature level raised"
        );
        Ok(FinalizeReply {
            previous_level,
            feature_level,
        })
    }

    /// The highest feature level every member knows, from reports received after this call
    /// began (a node rolled back a moment ago must not count as upgraded). Waits up to the
    /// write timeout for every member to answer; refuses if one does not.
    async fn fresh_member_levels(&self) -> Result<u32, ClusterError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.config.timing.write_timeout_ms);
        loop {
            let mut known = FEATURE_LEVEL;
            let mut silent = Vec::new();
            for (id, _) in self.members() {
                if id == self.id {
                    continue;
                }
                match self.peers.versions().get(id) {
                    Some(seen) if seen.at > started => known = known.min(seen.version.features),
                    _ => silent.push(id),
                }
            }
            if silent.is_empty() {
                return Ok(known);
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Upgrade(format!(
                    "node(s) {silent:?} did not answer the leader within {} ms: every member must be up to raise the feature level",
                    self.config.timing.write_timeout_ms
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The members whose last report does not know `level`, for a refusal.
    fn behind(&self, level: u32) -> String {
        self.members()
            .into_iter()
            .filter(|(id, _)| *id != self.id)
            .filter_map(|(id, _)| {
                let v = self.peers.versions().get(id)?.version;
                (v.features < level).then(|| {
                    format!(
                        "node {id} runs raftkms {} (knows up to {}); upgrade it first",
                        v.release, v.features
                    )
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// At `cluster init`: a new cluster starts at the highest level all its configured members
    /// know (this build's, unless it is initialized with nodes of an older release), asked of
    /// each directly (this node may not lead). A failure here leaves the level where it is, for
    /// `raftkms cluster upgrade finalize` later; init itself succeeds.
    pub(super) async fn raise_feature_level_at_init(&self) -> u32 {
        let current = self.state.feature_level();
        let timeout = self.probe_timeout();
        let mut level = FEATURE_LEVEL;
        for p in self.config.peers.iter().filter(|p| p.id != self.id) {
            match self.peers.probe_version(p.id, &p.raft_addr, timeout).await {
                Ok(v) => level = level.min(v.features),
                Err(e) => {
                    tracing::warn!(node = p.id, error = %e, "the new cluster stays at feature level {current} (a member did not say which release it runs); run `raftkms cluster upgrade finalize` once every member is up");
                    return current;
                }
            }
        }
        if level <= current {
            return current;
        }
        let env = self
            .writes
            .envelope(None, Command::SetFeatureLevel { level });
        match self.writes.propose(env).await {
            Ok(Outcome::Applied { .. }) => {
                tracing::info!(level, "new cluster at feature level");
                level
            }
            Ok(Outcome::Rejected(RegistryError::FeatureLevelNotRaised { current })) => current,
            Ok(_) => current,
            Err(e) => {
                tracing::warn!(error = %e, "the new cluster stays at feature level {current}; run `raftkms cluster upgrade finalize`");
                current
            }
        }
    }

    /// Before a node joins: its build must know the cluster's feature level (it would stop at
    /// the first entry it cannot decode) and speak a protocol this node serves. A cluster still
    /// at the first level takes any build (every release reads that log).
    async fn check_joiner(&self, id: NodeId, addr: &str) -> Result<(), ClusterError> {
        let level = self.state.feature_level();
        let timeout = self.probe_timeout();
        let version = match self.peers.probe_version(id, addr, timeout).await {
            Ok(v) => v,
            Err(e) if level <= crate::registry::features::BASE_LEVEL => {
                tracing::warn!(node = id, error = %e, "cannot ask the new node for its version");
                return Ok(());
            }
            Err(e) => {
                return Err(ClusterError::Membership(format!(
                    "cannot ask node {id} at {addr} which release it runs ({e}); start it first"
                )))
            }
        };
        version.check_served().map_err(ClusterError::Membership)?;
        if version.features < level {
            return Err(ClusterError::Membership(format!(
                "node {id} runs raftkms {}, which knows feature levels up to {}; the cluster is at {level}: run this release (or newer) on it",
                version.release, version.features
            )));
        }
        Ok(())
    }
}

impl Node {
    /// Adds a node (learner first, then promoted if `voter`) once its build is checked against
    /// the cluster's feature level; checking and adding run one at a time with other
    /// membership changes and finalize.
    pub async fn join(
        &self,
        id: NodeId,
        node: crate::raft::types::Node,
        voter: bool,
    ) -> Result<(), ClusterError> {
        // Checked and added under the lock; once it is a member, finalize counts it, so the
        // (possibly long) catch-up runs without holding up removals or a finalize.
        let added = {
            let _changes = self.changes.lock().await;
            self.check_joiner(id, &node.raft_addr).await?;
            self.membership.add_learner(id, node).await?
        };
        self.membership.catch_up(id, added, voter).await
    }

    /// Removes a voter or learner; one membership change or finalize at a time.
    pub async fn remove(&self, id: NodeId) -> Result<(), ClusterError> {
        let _changes = self.changes.lock().await;
        self.membership.remove(id).await
    }
}
