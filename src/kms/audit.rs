//! The audit seam: one record for every API request, refused ones included. The core notes what
//! an operation did (its action, the keys it touched, whether it proposed a write) in the
//! request's [`Scope`](super::Scope) while it runs; the dialect, where the request ends, calls
//! [`Kms::finish`](super::Kms::finish) with the code it answers, and the record goes to the node's
//! tamper-evident trail ([`crate::audit`]) or, with `[audit] enabled = false`, to the debug log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::authorize::Action;
use crate::audit::{AuditError, AuditLog, Event, Ticket};
use crate::node::Node;

/// The longest a request waits for its audit record (or a query for the trail) to reach the
/// disk: a disk that hangs (a stuck device, a hung network file system) then refuses requests
/// like a failed one instead of holding them forever.
pub const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits for a record to be on disk, at most [`DURABLE_WAIT`].
pub async fn durable_within(ticket: &Ticket) -> Result<(), AuditError> {
    match tokio::time::timeout(DURABLE_WAIT, ticket.durable()).await {
        Ok(done) => done,
        Err(_) => Err(AuditError::Unavailable(format!(
            "audit record {} was not on disk within {} s",
            ticket.seq(),
            DURABLE_WAIT.as_secs()
        ))),
    }
}

/// Waits until everything appended to `log` is on disk, at most [`DURABLE_WAIT`].
pub async fn sync_within(log: &AuditLog) -> Result<(), AuditError> {
    match tokio::time::timeout(DURABLE_WAIT, log.sync()).await {
        Ok(done) => done,
        Err(_) => Err(AuditError::Unavailable(format!(
            "the audit trail was not synced within {} s",
            DURABLE_WAIT.as_secs()
        ))),
    }
}

/// Where a node's audit records go.
pub enum Trail {
    /// `[audit] enabled = false`: the debug log only (target `raftkms::audit`).
    Log,
    /// The node's hash-chained trail.
    File {
        log: Arc<AuditLog>,
        /// Refuse requests the trail cannot record (`[audit] fail-closed`).
        fail_closed: bool,
    },
}

/// What the core noted about a request while it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Noted {
    /// The core's operation, once one ran (or was refused by the authorizer).
    pub action: Option<Action>,
    /// The keys it acted on, as far as known.
    pub key_ids: Vec<String>,
    /// Whether it proposes (or would have proposed) a replicated write: its record must be
    /// durable before the answer leaves.
    pub write: bool,
}

/// A request as it ended, told by the dialect.
pub struct Finished<'a> {
    /// The request's scope, if authentication got that far.
    pub scope: Option<&'a super::Scope>,
    /// Without a scope: the SecretId the request claimed (not verified), for the record.
    pub claimed_secret_id: Option<&'a str>,
    /// `"tencent"`, …
    pub dialect: &'static str,
    /// The action as policies name it (`kms:Encrypt`), from what the client sent.
    pub action: &'a str,
    pub request_id: &'a str,
    /// `None` when it succeeded, else the code answered.
    pub error_code: Option<&'a str>,
    pub source: Option<SocketAddr>,
    /// When the request arrived (monotonic).
    pub started: Instant,
}

impl Action {
    /// Whether the operation proposes a replicated write.
    pub fn is_write(self) -> bool {
        !matches!(
            self,
            Action::DescribeKey
                | Action::ListKeys
                | Action::GetRotationStatus
                | Action::Encrypt
                | Action::Decrypt
                | Action::ReEncrypt
                | Action::GenerateDataKey
                | Action::GenerateRandom
                | Action::GetPublicKey
                | Action::AsymmetricDecrypt
                | Action::Sign
                | Action::Verify
                | Action::GetServiceStatus
                | Action::ListRegions
                | Action::ListAlgorithms
                | Action::LookUpEvents
                | Action::DescribeDataKey
                | Action::GetDataKeyCiphertext
                | Action::GetDataKeyPlaintext
                | Action::GetTags
                | Action::DescribeCluster
                | Action::DescribeDrills
        )
    }
}

/// Appends one request's record to `log` (durable first when it is a write's, within
/// [`DURABLE_WAIT`]) and counts it. `Err` when the record could not be written and `fail_closed`:
/// the answer must not leave. With `fail_closed` off, a failure is counted as unrecorded and the
/// answer goes out. Shared by the API dialects (through `Kms::finish`) and the admin endpoints.
pub async fn record(
    node: &Node,
    log: &AuditLog,
    event: Event,
    fail_closed: bool,
) -> Result<(), AuditError> {
    let write = event.write;
    let request_id = event.request_id.clone();
    let recorded = match log.append(event, write) {
        Ok(ticket) if write => durable_within(&ticket).await,
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    match recorded {
        Ok(()) => {
            node.metrics().audit_records.inc();
            Ok(())
        }
        Err(e) if fail_closed => {
            tracing::error!(error = %e, request_id, "audit trail failed: the answer is withheld");
            log.note_refusal();
            node.metrics().audit_refusals.inc();
            Err(e)
        }
        Err(e) => {
            tracing::error!(error = %e, request_id, "audit trail failed: answered unrecorded (audit.fail-closed = false)");
            node.metrics().audit_unrecorded.inc();
            Ok(())
        }
    }
}
