//! Time-driven changes, proposed by the leader as ordinary commands stamped with its clock:
//! automatic rotation when due, deletion when the pending window has ended, and expiry of
//! imported material at its ValidTo. Apply re-checks
//! that each is due by the stamped time, so a stale or duplicated proposal changes nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;
use crate::registry::key::{KeyOp, KeyState};
use crate::registry::replica::Role;
use crate::registry::{Command, Outcome};

/// At most this many proposals per tick, so a backlog drains without a storm.
const MAX_PER_TICK: usize = 64;

/// Runs until the task is aborted at shutdown.
pub async fn run(node: Arc<Node>) {
    let interval = Duration::from_millis(node.config().kms.scheduler_interval_ms);
    loop {
        tokio::time::sleep(interval).await;
        if !node.is_leader() {
            continue;
        }
        tick(&node).await;
    }
}

struct Due {
    expire: bool,
    region: String,
    uin: u64,
    key_id: String,
    delete: bool,
    algorithm: crate::crypto::SymmetricAlgorithm,
    next_version: u32,
}

async fn tick(node: &Node) {
    node.metrics().scheduler_ticks.inc();
    let now = node.clock().wall_secs();
    let due: Vec<Due> = {
        let state = node.state().read();
        state
            .registry
            .keys()
            .all()
            .filter_map(|k| {
                let delete = k.state == KeyState::PendingDelete && k.deletion_date <= now;
                // A replica's material follows its primary: only the primary is rotated.
                let replica = matches!(
                    state
                        .registry
                        .replicas()
                        .role(&k.region, k.owner_uin, &k.key_id),
                    Role::Replica(_)
                );
                let rotate = k.state == KeyState::Enabled
                    && k.rotation_enabled
                    && k.next_rotate_time <= now
                    && !replica;
                let expire = k.material_valid_to != 0
                    && k.material_valid_to <= now
                    && !k.versions.is_empty();
                (delete || rotate || expire).then(|| Due {
                    expire,
                    region: k.region.clone(),
                    uin: k.owner_uin,
                    key_id: k.key_id.clone(),
                    delete,
                    algorithm: k.algorithm,
                    next_version: k.versions.last().map(|v| v.version + 1).unwrap_or(1),
                })
            })
            .take(MAX_PER_TICK)
            .collect()
    };
    for d in due {
        let op = if d.delete {
            KeyOp::DeleteDue
        } else if d.expire {
            KeyOp::ExpireMaterial
        } else {
            match node.keyring().new_material(d.algorithm, &d.key_id, d.next_version, d.uin) {
                Ok(material) => KeyOp::Rotate {
                    material,
                    manual: false,
                    min_manual_interval: 0,
                },
                Err(e) => {
                    tracing::warn!(key = %d.key_id, error = %e, "cannot create rotation material");
                    continue;
                }
            }
        };
        let what = if d.delete {
            "deletion"
        } else if d.expire {
            "material expiry"
        } else {
            "rotation"
        };
        let cmd = Command::KeyOp {
            region: d.region,
            uin: d.uin,
            key_ids: vec![d.key_id.clone()],
            op,
        };
        node.metrics().scheduler_proposals.inc();
        let writes = node.writes();
        match writes.propose(writes.envelope(None, cmd)).await {
            Ok(Outcome::Applied { index }) => {
                tracing::info!(key = %d.key_id, index, "scheduled {what} applied")
            }
            Ok(other) => tracing::debug!(key = %d.key_id, ?other, "scheduled {what} not applied"),
            Err(e) => tracing::warn!(key = %d.key_id, error = %e, "scheduled {what} failed"),
        }
    }
}
