//! The cluster as operators see it (the console's cluster and DR views): every member's status,
//! the DR drill reports, and, on a `raftkms dev` cluster only, starting a drill.
//!
//! Who is an operator is replicated, not configured per node: an account is one while the record
//! `console.operator.<uin>` exists (`raftkms account operator`). Its root identity may then read
//! the cluster, and its users and roles as far as their policies allow
//! (`kms:DescribeClusterStatus`, `kms:DescribeDrillReports`, `kms:StartDrill`). Any other account is
//! refused whatever its policies say: the cluster is the operator's business, not a tenant's.
//!
//! The cluster view tries the read gate for a second (`Kms::open_local_scope`) and without a
//! quorum reads the node's applied state, on purpose: it is most needed when a node has lost its
//! quorum. The status holds no key or secret.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Action, Kms, KmsError, Refusal, RefusalScope, Resource, Scope};
use crate::metrics::ApiTotals;
use crate::node::Node;
use crate::raft::error::ClusterError;
use crate::raft::types::NodeId;
use crate::wire::records::{operator, DRILL_PREFIX};
use crate::wire::NodeStatus;

/// The most drill reports one answer holds (the newest).
pub const MAX_DRILL_REPORTS: usize = 20;

/// What one member says of itself (the internal `NODE_STATUS` endpoint).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub status: NodeStatus,
    /// Milliseconds since it last heard from a leader with a quorum (`None`: never).
    pub leader_contact_ms: Option<u64>,
    /// Its API requests since it started.
    pub api: ApiTotals,
    /// Its release (`CARGO_PKG_VERSION`).
    pub release: String,
}

/// One member of the membership, with its own answer or why there is none.
#[derive(Clone, Debug)]
pub struct MemberRow {
    pub id: NodeId,
    pub region: String,
    pub voter: bool,
    pub api_addr: String,
    pub answer: Result<MemberStatus, String>,
}

/// The cluster as the answering node sees it.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// The node that answered.
    pub served_by: NodeId,
    pub members: Vec<MemberRow>,
}

/// One stored drill report, as the drill wrote it (JSON, versioned by the drill).
#[derive(Clone, Debug)]
pub struct DrillRecord {
    pub name: String,
    pub value: Vec<u8>,
}

/// The DR view: the newest reports, and what the console may start here.
#[derive(Clone, Debug)]
pub struct Drills {
    pub reports: Vec<DrillRecord>,
    /// Regions a drill may be started for from this node (empty unless it is a dev node):
    /// those whose loss leaves a quorum of voters.
    pub startable_regions: Vec<String>,
    /// Whether a drill started from a console of this dev cluster (any node's) still runs.
    pub running: bool,
}

/// The upper bounds of the API latency buckets of [`MemberStatus::api`], in milliseconds.
pub fn latency_bounds_ms() -> Vec<f64> {
    (0..crate::metrics::API_LATENCY_BOUNDS)
        .map(|i| crate::metrics::ApiMetrics::bound(i) * 1000.0)
        .collect()
}

/// A node's own part of the cluster view.
pub fn member_status(node: &Node) -> MemberStatus {
    MemberStatus {
        status: node.status(),
        leader_contact_ms: node.health().millis_since_leader_contact(),
        api: node.metrics().api.totals(),
        release: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Why a member did not answer, as the cluster view says it (a transport failure is not a
/// forwarded write's).
fn unreachable_reason(e: ClusterError) -> String {
    match e {
        ClusterError::Forward(reason) => reason,
        other => other.to_string(),
    }
}

impl Kms {
    /// Refuses callers whose account is not an operator.
    fn operator(&self, scope: &Scope) -> Result<(), KmsError> {
        let uin = scope.caller.uin;
        let name = operator(uin);
        let known = self
            .node
            .state()
            .read()
            .registry
            .records()
            .get(&name)
            .is_some();
        if known {
            Ok(())
        } else {
            Err(KmsError::Denied(Refusal {
                reason: format!(
                    "account {uin} is not an operator of this cluster (an administrator makes it one with `raftkms account operator --uin {uin}`)"
                ),
                scope: RefusalScope::Action,
            }))
        }
    }

    /// Every member's status, asked of each at once (an unreachable member is a row with its
    /// error, after at most the RPC timeout).
    pub async fn cluster_status(&self, scope: &Scope) -> Result<ClusterView, KmsError> {
        self.seams
            .run(scope, Action::DescribeCluster, Resource::Service, async {
                self.operator(scope)?;
                let own = member_status(&self.node);
                let timeout =
                    Duration::from_millis(self.node.config().timing.rpc_timeout_ms.max(500));
                let answers = self
                    .node
                    .ask_members::<_, MemberStatus>(
                        crate::node::peer_paths::NODE_STATUS,
                        &(),
                        timeout,
                    )
                    .await;
                let mut answers: std::collections::BTreeMap<NodeId, Result<MemberStatus, String>> =
                    answers
                        .into_iter()
                        .map(|(id, a)| (id, a.map_err(unreachable_reason)))
                        .collect();
                let me = self.node.id();
                let members = own
                    .status
                    .nodes
                    .iter()
                    .map(|(id, n)| MemberRow {
                        id: *id,
                        region: n.region.clone(),
                        voter: own.status.voters.contains(id),
                        api_addr: n.api_addr.clone(),
                        answer: if *id == me {
                            Ok(own.clone())
                        } else {
                            answers
                                .remove(id)
                                .unwrap_or_else(|| Err("not asked".to_string()))
                        },
                    })
                    .collect();
                Ok(ClusterView {
                    served_by: me,
                    members,
                })
            })
            .await
    }

    /// The newest DR drill reports (newest first), and the drills this node may start.
    pub async fn drill_reports(&self, scope: &Scope) -> Result<Drills, KmsError> {
        self.seams
            .run(scope, Action::DescribeDrills, Resource::Service, async {
                self.operator(scope)?;
                // Unlike the cluster view, the reports are read as the request's consistency
                // says: a report stored through another node is seen at once.
                self.gate(scope).await?;
                let reports = {
                    let state = self.node.state().read();
                    state
                        .registry
                        .records()
                        .with_prefix(DRILL_PREFIX)
                        .into_iter()
                        .rev()
                        .take(MAX_DRILL_REPORTS)
                        .map(|(name, value)| DrillRecord {
                            name: name.to_string(),
                            value: value.to_vec(),
                        })
                        .collect()
                };
                Ok(Drills {
                    reports,
                    startable_regions: self.drill_regions(),
                    running: self
                        .drills
                        .running(self.node.config().console.dev_drill_dir.as_deref())
                        .await,
                })
            })
            .await
    }

    /// Regions a drill may be started for here: none unless `[console] dev-drill-dir` is set;
    /// then each region of the membership whose voters are a minority.
    fn drill_regions(&self) -> Vec<String> {
        if self.node.config().console.dev_drill_dir.is_none() {
            return Vec::new();
        }
        let status = self.node.status();
        let mut regions: Vec<String> = status.nodes.values().map(|n| n.region.clone()).collect();
        regions.sort();
        regions.dedup();
        let voters = status.voters.len();
        regions.retain(|r| {
            let cut = status
                .voters
                .iter()
                .filter(|v| status.nodes.get(v).is_some_and(|n| &n.region == r))
                .count();
            // The voters left must be a majority of all voters.
            2 * (voters - cut) > voters
        });
        regions
    }

    /// Starts a DR drill cutting `region` off (a dev cluster only; see [`Drills`]). Returns at
    /// once; the drill stores its report when it ends.
    pub async fn start_drill(&self, scope: &Scope, region: &str) -> Result<(), KmsError> {
        self.seams
            .run(scope, Action::StartDrill, Resource::Service, async {
                self.operator(scope)?;
                let Some(dir) = self.node.config().console.dev_drill_dir.clone() else {
                    return Err(KmsError::Unsupported(
                        "drills are started from the console on a `raftkms dev` cluster only; run `raftkms drill` (docs/multi-region.md)".into(),
                    ));
                };
                let startable = self.drill_regions();
                if !startable.iter().any(|r| r == region) {
                    let served = self.node.config().served_regions().join(", ");
                    if self.node.status().nodes.values().any(|n| n.region == region) {
                        return Err(KmsError::Unsupported(format!(
                            "cutting region {region} off would leave no quorum of voters; drills can cut: {}",
                            startable.join(", ")
                        )));
                    }
                    if self.node.config().served_regions().iter().any(|r| r == region) {
                        return Err(KmsError::Unsupported(format!(
                            "region {region} is served without a node of its own: there is nothing to cut off; drills can cut: {}",
                            startable.join(", ")
                        )));
                    }
                    return Err(KmsError::UnsupportedDestination {
                        region: region.to_string(),
                        served,
                    });
                }
                self.drills.start(&dir, region).await
            })
            .await
    }
}
