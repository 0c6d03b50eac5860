//! The tamper-evident audit trail: one hash-chained record per request, in append-only segment
//! files of JSON lines.
//!
//! # Format
//!
//! A node's trail is a directory (`<data-dir>/audit` by default, mode 0700) of segment files
//! `seg-<first seq, 20 digits>.jsonl` (mode 0600). Each line is one record, a JSON object:
//!
//! ```text
//! {"v":1,"seq":7,"prev":"<64 hex>","hash":"<64 hex>","at_ms":…,"node_id":…, … the Event's fields}
//! ```
//!
//! `v` is the format version (a reader refuses any other with [`AuditError::Version`]); `seq`
//! counts from 1 per node without gaps; `prev` is the previous record's `hash` (64 zeros for
//! seq 1). The lines are human-readable and can be exported as they are.
//!
//! # The chain
//!
//! `hash = SHA-256("raftkms-audit-v1\0" ‖ seq as u64 big-endian ‖ prev (32 bytes) ‖
//! codec::encode(event))`: the binary encoding of the parsed [`Event`], not the JSON text, so a
//! record verifies however its JSON is formatted. Changing, removing, inserting or reordering a
//! record breaks the chain from there on ([`verify`] names the first break). The chain has no
//! key: whoever can rewrite the whole tail can recompute it, which is why the integrator
//! checkpoints a [`Head`] (seq and hash of a durable record, [`AuditLog::durable_head`]) through
//! Raft: [`verify`] checks the trail against those checkpoints, and a trail cut or rewritten
//! after a checkpoint no longer matches it.
//!
//! # Durability window
//!
//! [`AuditLog::append`] chains and buffers a record; one writer thread writes the buffer and
//! `fdatasync`s it (group commit: every record buffered so far rides the same sync). A *durable*
//! append makes the writer flush at once, and its [`Ticket::durable`] resolves only when the
//! record is on disk: the record of a write must be durable before the write is acknowledged.
//! Other records reach the disk within [`Options::flush_interval`] (100 ms by default) after they
//! were appended, plus the time of a write and sync already under way: a crash (of the process
//! or the machine) in that window loses them, never a durable one. Segments rotate when the
//! current one has reached [`Options::segment_bytes`] (64 MiB by default; a segment may exceed
//! it by one batch).
//!
//! # Failure
//!
//! If a write or a sync fails (disk full, EIO, an unwritable file), the trail is *failed*:
//! [`AuditLog::append`] answers [`AuditError::Unavailable`] from then on, waiting tickets get the
//! error, [`AuditLog::is_healthy`] is false, and the error names the records that were appended
//! but are not known to be on disk (they are lost). The integrator refuses requests it cannot
//! audit and counts them with [`AuditLog::note_refusal`] ([`AuditLog::refusals`] for
//! `/metrics`). [`AuditLog::try_recover`] cuts the segment back to its last durable record,
//! re-reads the tail and continues from there; the lost records' sequence numbers are used again
//! by the next records.
//!
//! # Recovery, verification, retention
//!
//! [`AuditLog::open`] continues the chain after the last record. After a crash only the last
//! line of the last segment may be torn (no newline, or unparsable): it is cut away with a
//! warning. Anything else malformed in the current segment refuses the open; [`verify`] checks
//! the whole trail (every hash, every link, the checkpoints). [`AuditLog::prune`] deletes whole
//! old segments when [`Options::retention_days`] is set; pruning is visible — the oldest record
//! left has a seq above 1 and is trusted as the anchor of what remains.
//!
//! # Reading
//!
//! [`Reader`] streams records in order; [`query`], [`tail`] and [`export`] filter them. A copy
//! of every written line can be sent to syslog ([`Options::syslog`], facility authpriv).
//!
//! Nothing secret is ever recorded: [`Event`] has no field for plaintexts, key material or
//! signature inputs.

mod read;
mod record;
mod segment;
mod syslog;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use read::{
    export, query, tail, verify, Filter, Order, Problem, Reader, VerifyReport, MAX_QUERY_LIMIT,
};
pub use record::{record_hash, Event, StoredRecord, FORMAT_VERSION};
pub use writer::{AuditLog, PruneReport, Ticket};

/// The longest record line (JSON, newline included) the trail writes or reads; an event whose
/// line would be longer is refused by [`AuditLog::append`].
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The end of a chain: the seq and hash of its last record (seq 0 and a zero hash for an empty
/// trail). What the integrator checkpoints through Raft (use [`AuditLog::durable_head`]: a
/// checkpoint must never name a record that a crash can still lose).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {} hash {}", self.seq, hex::encode(self.hash))
    }
}

/// How a trail is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// A new segment is started when the current one has reached this size. Default 64 MiB.
    pub segment_bytes: u64,
    /// The longest a non-durable record waits in memory before it is written and synced.
    /// Default 100 ms; at least 1 ms is used.
    pub flush_interval: Duration,
    /// [`AuditLog::prune`] deletes segments whose newest record is older than this many days.
    /// Default 0: keep everything.
    pub retention_days: u32,
    /// A Unix datagram socket (e.g. `/dev/log`) that receives a copy of every written line, as
    /// an RFC 5424 message (facility authpriv, severity info). Best-effort: a failed send is
    /// counted ([`AuditLog::syslog_failures`]), never retried, and never holds the trail up.
    /// Default none.
    pub syslog: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            flush_interval: Duration::from_millis(100),
            retention_days: 0,
            syslog: None,
        }
    }
}

/// The audit trail's one error type.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file-system call failed (`what` says which, e.g. "read", "create").
    #[error("audit trail: cannot {what} {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// A segment holds something that is not a record where a record must be (corruption or
    /// tampering; `raftkms audit verify` checks the whole trail).
    #[error("audit trail: {}, line {line}: {why}", file.display())]
    Malformed {
        file: PathBuf,
        line: u64,
        why: String,
    },
    /// A record of a format version this build does not read.
    #[error(
        "audit trail: record format version {found} is not known to this build (it reads version {})",
        FORMAT_VERSION
    )]
    Version { found: u64 },
    /// The trail cannot take records (it failed, or it is closed); requests that must be
    /// audited are to be refused.
    #[error("audit trail unavailable: {0}")]
    Unavailable(String),
}

impl AuditError {
    fn io(what: &'static str, path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        AuditError::Io {
            what,
            path: path.into(),
            error,
        }
    }
}

/// Locks a mutex, taking the data of a poisoned one: every critical section of this module
/// leaves its state consistent at each step.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
