//! The audit seam: one [`AuditRecord`] for every request that reaches the KMS core, refused ones
//! included, and for every request a dialect refused before it (bad signature, unknown
//! credential). The default sink writes them to the node's debug log under the
//! `raftkms::audit` target; a tamper-evident trail plugs in here.

use super::authorize::{Action, Caller, Resource};
use super::error::KmsError;

/// What happened to one request. Borrowed from the request, so building one costs nothing; a
/// sink that keeps records copies what it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRecord<'a> {
    /// Wall-clock milliseconds when the request ended.
    pub at_ms: u64,
    /// The authenticated caller, if authentication got that far.
    pub caller: Option<&'a Caller>,
    /// The core's action, or the dialect's action name when the request never reached the core.
    pub action: &'a str,
    /// What it acted on, if known.
    pub resource: Option<&'a Resource>,
    /// `None` = succeeded; otherwise the error's kind (`KmsError::kind`) or the dialect's code.
    pub refused: Option<&'a str>,
}

impl<'a> AuditRecord<'a> {
    /// A record of an operation of the core.
    pub fn of_operation(
        at_ms: u64,
        caller: &'a Caller,
        action: Action,
        resource: &'a Resource,
        result: Result<(), &KmsError>,
    ) -> Self {
        AuditRecord {
            at_ms,
            caller: Some(caller),
            action: action.name(),
            resource: Some(resource),
            refused: result.err().map(KmsError::kind),
        }
    }
}

/// Receives every audit record.
pub trait AuditSink: Send + Sync + 'static {
    fn record(&self, record: &AuditRecord<'_>);
}

/// Writes audit records to the log (target `raftkms::audit`, level debug: enable it with
/// `RUST_LOG=raftkms::audit=debug`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogAudit;

impl AuditSink for LogAudit {
    fn record(&self, r: &AuditRecord<'_>) {
        tracing::debug!(
            target: "raftkms::audit",
            at_ms = r.at_ms,
            uin = r.caller.as_ref().map(|c| c.uin),
            credential = r.caller.as_ref().map(|c| c.credential_id.as_str()),
            action = r.action,
            resource = r.resource.map(tracing::field::display),
            refused = r.refused,
            "request"
        );
    }
}
