//! Querying the audit trail (what CloudAudit's LookUpEvents answers): the records of the caller's
//! account on every member's trail, newest first, a page at a time.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Action, Kms, KmsError, Resource, Scope, Trail};
use crate::audit::{self, Event, Filter, Order};
use crate::raft::error::ClusterError;

/// Where a page ends: the last record returned, in the order (time, node, seq), newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    pub at_ms: u64,
    pub node_id: u64,
    pub seq: u64,
}

/// One node's part of a query (the body of [`PEER_PATH`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub filter: Filter,
    pub limit: usize,
    /// Only records strictly after this one in the order (older, or older in the tie-break).
    pub after: Option<Cursor>,
}

/// A record found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub seq: u64,
    pub event: Event,
}

impl AuditRow {
    fn cursor(&self) -> Cursor {
        Cursor {
            at_ms: self.event.at_ms,
            node_id: self.event.node_id,
            seq: self.seq,
        }
    }
}

/// What the caller asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookUp {
    pub filter: Filter,
    /// At most this many (1..=50).
    pub limit: usize,
    pub after: Option<Cursor>,
}

/// A page of records, newest first, and where the next page starts (`None`: no more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Events {
    pub rows: Vec<AuditRow>,
    pub next: Option<Cursor>,
}

/// The largest page.
pub const MAX_PAGE: usize = 50;

/// Answers a query from the trail in `dir` (blocking: a scan of files).
pub fn query_local(dir: &Path, q: &AuditQuery) -> Result<Vec<AuditRow>, audit::AuditError> {
    let mut filter = q.filter.clone();
    if let Some(c) = q.after {
        filter.to_ms = Some(filter.to_ms.map_or(c.at_ms, |t| t.min(c.at_ms)));
    }
    // Records at the cursor's millisecond that it already passed are dropped below: ask for
    // enough more that a page is still full (a node writes far fewer than this in 1 ms).
    let rows = audit::query(dir, &filter, Order::NewestFirst, audit::MAX_QUERY_LIMIT)?;
    Ok(rows
        .into_iter()
        .map(|r| AuditRow {
            seq: r.seq,
            event: r.event,
        })
        .filter(|r| q.after.is_none_or(|c| r.cursor() < c))
        .take(q.limit)
        .collect())
}

impl Kms {
    /// The audit records of the caller's account matching `req`, from every member's trail,
    /// newest first. Refused (retryable) when a member's trail cannot be read: the answer would
    /// be incomplete.
    pub async fn look_up_events(&self, scope: &Scope, req: LookUp) -> Result<Events, KmsError> {
        let resource = Resource::Account {
            region: scope.region.clone(),
        };
        self.seams
            .run(scope, Action::LookUpEvents, resource, async {
                let Trail::File { log, .. } = &self.seams.trail else {
                    return Err(KmsError::Unsupported(
                        "this node keeps no audit trail ([audit] enabled = false)".into(),
                    ));
                };
                let limit = req.limit.clamp(1, MAX_PAGE);
                let mut filter = req.filter;
                // Only the caller's own account, whatever was asked.
                filter.uin = Some(scope.caller.uin);
                let q = AuditQuery {
                    filter,
                    limit,
                    after: req.after,
                };
                // One query at a time on this node: each scans files on every member.
                let _permit = self
                    .audit_queries
                    .acquire()
                    .await
                    .map_err(|e| KmsError::Internal(e.to_string()))?;
                // Records appended so far (this request's own peers' included) are read back.
                super::audit::sync_within(log)
                    .await
                    .map_err(|_| KmsError::AuditUnavailable)?;
                let dir = log.dir().to_path_buf();
                let local_q = q.clone();
                let local = tokio::task::spawn_blocking(move || query_local(&dir, &local_q))
                    .await
                    .map_err(|e| KmsError::Internal(e.to_string()))?
                    .map_err(|e| KmsError::Internal(e.to_string()))?;
                let mut rows = local;
                let timeout = Duration::from_millis(self.node.config().timing.read_timeout_ms);
                for (id, answer) in self
                    .node
                    .ask_members::<_, Result<Vec<AuditRow>, ClusterError>>(
                        crate::node::peer_paths::AUDIT_QUERY,
                        &q,
                        timeout,
                    )
                    .await
                {
                    match answer.and_then(|a| a) {
                        // A member's rows are checked again: only the caller's account, only
                        // what matches.
                        Ok(r) => rows.extend(r.into_iter().filter(|row| {
                            q.filter.matches(&row.event)
                                && q.after.is_none_or(|c| row.cursor() < c)
                        })),
                        Err(e) => {
                            return Err(KmsError::Cluster(ClusterError::Forward(format!(
                                    "the audit trail of node {id} could not be read, so the answer would be incomplete: {e}"
                            ))))
                        }
                    }
                }
                rows.sort_by_key(|r| std::cmp::Reverse(r.cursor()));
                let more = rows.len() > limit;
                rows.truncate(limit);
                let next = if more || rows.len() == limit {
                    rows.last().map(AuditRow::cursor)
                } else {
                    None
                };
                Ok(Events { rows, next })
            })
            .await
    }
}
