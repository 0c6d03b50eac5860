//! Time-driven changes, proposed by the leader as ordinary commands stamped with its clock:
//! automatic rotation when due, deletion when the pending window has ended, and expiry of
//! imported material at its ValidTo. What is due is decided by the pure
//! `registry::due::due_work` at the leader's (injected) clock; apply re-checks that each is due
//! by the stamped time, so a stale or duplicated proposal changes nothing.
//!
//! [`rewrap`] is the leader's other background duty: after a root-key rotation it re-wraps every
//! stored value of an older root version under the current one.

pub mod rewrap;

use std::sync::Arc;
use std::time::Duration;

use crate::node::Node;
use crate::registry::data_key::DataKeyOp;
use crate::registry::due::{due_data_keys, due_work, DueAction, DueDataKey, DueWork};
use crate::registry::key::KeyOp;
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

/// One round: propose every change due now (at most [`MAX_PER_TICK`]).
pub async fn tick(node: &Node) {
    node.metrics().scheduler_ticks.inc();
    let now = node.clock().wall_secs();
    let (due, data_keys) = {
        let state = node.state().read();
        let due = due_work(&state.registry, now, MAX_PER_TICK);
        let left = MAX_PER_TICK.saturating_sub(due.len());
        (due, due_data_keys(&state.registry, now, left))
    };
    for work in due {
        propose(node, work).await;
    }
    for d in data_keys {
        delete_data_key(node, d).await;
    }
}

/// Proposes the deletion of one hosted data key whose pending window has ended.
async fn delete_data_key(node: &Node, d: DueDataKey) {
    let id = d.data_key_id.clone();
    let cmd = Command::DataKeyOp {
        region: d.region,
        uin: d.uin,
        data_key_ids: vec![d.data_key_id],
        op: DataKeyOp::DeleteDue,
    };
    node.metrics().scheduler_proposals.inc();
    let writes = node.writes();
    match writes.propose(writes.envelope(None, cmd)).await {
        Ok(Outcome::Applied { index }) => {
            tracing::info!(data_key = %id, index, "scheduled data key deletion applied")
        }
        Ok(other) => {
            tracing::debug!(data_key = %id, ?other, "scheduled data key deletion not applied")
        }
        Err(e) => tracing::warn!(data_key = %id, error = %e, "scheduled data key deletion failed"),
    }
}

/// Proposes one due change and logs how it ended.
async fn propose(node: &Node, work: DueWork) {
    let what = work.action.what();
    let op = match work.action {
        DueAction::Delete => KeyOp::DeleteDue,
        DueAction::ExpireMaterial => KeyOp::ExpireMaterial,
        DueAction::Rotate {
            algorithm,
            next_version,
        } => match node
            .keyring()
            .new_material(algorithm, &work.key_id, next_version, work.uin)
        {
            Ok(material) => KeyOp::Rotate {
                material,
                manual: false,
                min_manual_interval: 0,
            },
            Err(e) => {
                tracing::warn!(key = %work.key_id, error = %e, "cannot create rotation material");
                return;
            }
        },
    };
    let key = work.key_id.clone();
    let cmd = Command::KeyOp {
        region: work.region,
        uin: work.uin,
        key_ids: vec![work.key_id],
        op,
    };
    node.metrics().scheduler_proposals.inc();
    let writes = node.writes();
    match writes.propose(writes.envelope(None, cmd)).await {
        Ok(Outcome::Applied { index }) => {
            tracing::info!(key = %key, index, "scheduled {what} applied")
        }
        Ok(other) => tracing::debug!(key = %key, ?other, "scheduled {what} not applied"),
        Err(e) => tracing::warn!(key = %key, error = %e, "scheduled {what} failed"),
    }
}
