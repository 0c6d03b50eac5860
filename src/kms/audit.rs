//! The audit seam: one [`AuditRecord`] for every request that reaches the KMS core, refused ones
//! included, and for every request a dialect refused before it (bad signature, unknown
//! credential). The default sink writes them to the node's debug log under the
//! `raftkms::audit` target; a tamper-evident trail plugs in here.

use super::authorize::{Action, Caller, Resource};
use super::error::KmsError;

/// What happened to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Wall-clock milliseconds when the request ended.
    pub at_ms: u64,
    /// The authenticated caller, if authentication got that far.
    pub caller: Option<Caller>,
    /// The core's action, or the dialect's action name when the request never reached the core.
    pub action: String,
    /// What it acted on, if known.
    pub resource: Option<String>,
    /// `None` = succeeded; otherwise the error's kind (`KmsError::kind`) or the dialect's code.
    pub refused: Option<String>,
}

impl AuditRecord {
    /// A record of an operation of the core.
    pub fn of_operation(
        at_ms: u64,
        caller: &Caller,
        action: Action,
        resource: &Resource,
        result: Result<(), &KmsError>,
    ) -> Self {
        AuditRecord {
            at_ms,
            caller: Some(caller.clone()),
            action: action.name().to_string(),
            resource: Some(resource.to_string()),
            refused: result.err().map(|e| e.kind().to_string()),
        }
    }
}

/// Receives every audit record.
pub trait AuditSink: Send + Sync + 'static {
    fn record(&self, record: &AuditRecord);
}

/// Writes audit records to the log (target `raftkms::audit`, level debug: enable it with
/// `RUST_LOG=raftkms::audit=debug`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogAudit;

impl AuditSink for LogAudit {
    fn record(&self, r: &AuditRecord) {
        tracing::debug!(
            target: "raftkms::audit",
            at_ms = r.at_ms,
            uin = r.caller.as_ref().map(|c| c.uin),
            credential = r.caller.as_ref().map(|c| c.credential_id.as_str()),
            action = %r.action,
            resource = r.resource.as_deref(),
            refused = r.refused.as_deref(),
            "request"
        );
    }
}
