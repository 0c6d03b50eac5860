//! The node's audit trail at run time: opened at start, its chain head checkpointed through Raft
//! now and then, old segments pruned when a retention is set, closed (flushed and synced) at
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditLog, Options};
use crate::config::NodeConfig;
use crate::kms::Trail;
use crate::node::{Node, StartError};
use crate::registry::audit_heads::Checkpoint;
use crate::registry::{Command, Outcome, RegistryError};

/// Opens the trail `[audit]` asks for (or none).
pub fn open(config: &NodeConfig) -> Result<Option<Arc<AuditLog>>, StartError> {
    if !config.audit.enabled {
        return Ok(None);
    }
    let options = Options {
        segment_bytes: config.audit.segment_mib << 20,
        flush_interval: Duration::from_millis(config.audit.flush_interval_ms),
        retention_days: u32::try_from(config.audit.retention_days).unwrap_or(u32::MAX),
        syslog: config.audit.syslog.clone(),
    };
    let dir = config.audit_dir();
    AuditLog::open(&dir, config.node_id, options)
        .map(|log| Some(Arc::new(log)))
        .map_err(|e| StartError::Audit(e.to_string()))
}

/// The core's view of the trail.
pub fn trail(config: &NodeConfig, log: Option<&Arc<AuditLog>>) -> Trail {
    match log {
        Some(log) => Trail::File {
            log: log.clone(),
            fail_closed: config.audit.fail_closed,
        },
        None => Trail::Log,
    }
}

/// Checkpoints the trail's durable head through Raft every `audit.checkpoint-interval-s` (when it
/// moved), tries to recover a failed trail as often, and prunes old segments once an hour when
/// `audit.retention-days` is set.
pub async fn run(node: Arc<Node>, log: Arc<AuditLog>) {
    let interval = Duration::from_secs(node.config().audit.checkpoint_interval_s);
    let prune_every = Duration::from_secs(3600);
    let mut last_prune = tokio::time::Instant::now();
    let mut checkpointed = latest_checkpoint(&node);
    if let Some(seq) = checkpointed {
        if seq > log.durable_head().seq {
            tracing::error!(
                checkpointed = seq,
                trail_end = log.durable_head().seq,
                dir = %log.dir().display(),
                "this node's audit trail ends before its last checkpoint: records were lost or removed; run `raftkms audit verify`"
            );
        }
    }
    loop {
        tokio::time::sleep(interval).await;
        if !log.is_healthy() {
            // A failed trail (disk full, EIO) refuses requests; once the disk takes writes again
            // the trail is cut back to its last durable record and the node serves again.
            match log.try_recover() {
                Ok(()) => tracing::warn!(
                    head = %log.durable_head(),
                    "the audit trail recovered; requests are served again"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "the audit trail is still failed; requests are refused");
                    continue;
                }
            }
        }
        let head = log.durable_head();
        if head.seq > 0 && checkpointed.is_none_or(|c| head.seq > c) {
            let command = Command::AuditCheckpoint {
                checkpoint: Checkpoint {
                    node_id: node.id(),
                    seq: head.seq,
                    hash: head.hash,
                    at_ms: node.clock().wall_ms(),
                },
            };
            let writes = node.writes();
            match writes.propose(writes.envelope(None, command)).await {
                Ok(Outcome::Applied { .. }) => {
                    checkpointed = Some(head.seq);
                    node.metrics().audit_checkpoints.inc();
                }
                Ok(Outcome::Rejected(RegistryError::StaleAuditCheckpoint { seq, .. })) => {
                    tracing::error!(
                        checkpointed = seq,
                        head = head.seq,
                        "the cluster holds a later checkpoint of this node's audit trail than the trail itself: records were lost or removed"
                    );
                    checkpointed = Some(seq);
                }
                Ok(other) => tracing::warn!(outcome = ?other, "audit checkpoint not applied"),
                // No leader for now: the next round tries again.
                Err(e) => tracing::debug!(error = %e, "audit checkpoint not proposed"),
            }
        }
        if node.config().audit.retention_days > 0 && last_prune.elapsed() >= prune_every {
            last_prune = tokio::time::Instant::now();
            match log.prune(node.clock().wall_ms()) {
                Ok(r) if r.segments_deleted > 0 => tracing::info!(
                    deleted = r.segments_deleted,
                    first_seq = ?r.first_seq,
                    "audit segments past the retention deleted"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "audit segments could not be pruned"),
            }
        }
    }
}

/// The newest checkpointed seq of this node's trail in the applied registry.
fn latest_checkpoint(node: &Node) -> Option<u64> {
    node.state()
        .read()
        .registry
        .audit_heads()
        .of_node(node.id())
        .last()
        .map(|c| c.seq)
}
