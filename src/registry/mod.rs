//! The replicated registry: a pure, deterministic state machine.
//!
//! `apply` takes the log index and an [`Envelope`] and returns an [`Outcome`] plus the list of
//! storage [`Change`]s it made. It reads no clock, draws no randomness and does no I/O: everything
//! of that kind is decided by the proposing node and carried in the envelope. Persisting the
//! changes is the caller's job (see `raft::state_machine`).

pub mod command;
pub mod dedup;
pub mod record;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use command::{Command, Envelope, Outcome, RequestId};

use crate::codec::CodecError;

/// Why the registry refused a command. Part of the replicated outcome, so it must be
/// deterministic and serializable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RegistryError {
    #[error("record name must be 1..=256 bytes without control characters")]
    InvalidName,
    #[error("record value exceeds 64 KiB")]
    ValueTooLarge,
    #[error("record not found")]
    RecordNotFound,
}

/// One storage mutation produced by apply, keyed in the registry's column family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// The whole replicated domain state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    records: record::Records,
    dedup: dedup::Dedup,
}

impl Registry {
    /// Plain records.
    pub fn records(&self) -> &record::Records {
        &self.records
    }

    /// The idempotency table.
    pub fn dedup(&self) -> &dedup::Dedup {
        &self.dedup
    }

    /// Applies one command at `index`. Pure: the same registry, index and envelope always give the
    /// same outcome and changes.
    pub fn apply(
        &mut self,
        index: u64,
        env: &Envelope,
    ) -> Result<(Outcome, Vec<Change>), CodecError> {
        let mut changes = Vec::new();
        self.dedup.evict_before(index, &mut changes);
        if let Some(first) = self.dedup.get(&env.request_id) {
            // A retried or re-forwarded write: answer as the first time, change nothing else.
            return Ok((first.outcome.clone(), changes));
        }
        let mut staged = Vec::new();
        let outcome = match self.apply_command(&env.command, &mut staged) {
            Ok(()) => {
                changes.extend(staged);
                Outcome::Applied { index }
            }
            Err(e) => Outcome::Rejected(e),
        };
        let applied = dedup::AppliedRequest {
            index,
            outcome: outcome.clone(),
        };
        self.dedup.remember(env.request_id, applied, &mut changes)?;
        Ok((outcome, changes))
    }

    fn apply_command(
        &mut self,
        cmd: &Command,
        changes: &mut Vec<Change>,
    ) -> Result<(), RegistryError> {
        match cmd {
            Command::PutRecord { name, value } => {
                record::validate(name, Some(value))?;
                self.records.put(name.clone(), value.clone(), changes)
            }
            Command::PutRecords { records } => {
                // Validate everything first so a bad item leaves the registry untouched.
                for (name, value) in records {
                    record::validate(name, Some(value))?;
                }
                for (name, value) in records {
                    self.records.put(name.clone(), value.clone(), changes)?;
                }
                Ok(())
            }
            Command::DeleteRecord { name } => {
                record::validate(name, None)?;
                self.records.delete(name, changes)
            }
        }
    }

    /// Rebuilds a registry from its persisted (key, value) pairs, in any order.
    pub fn load<I>(pairs: I) -> Result<Self, CodecError>
    where
        I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    {
        let mut reg = Registry::default();
        for (key, value) in pairs {
            if let Some(rest) = key.strip_prefix(record::PREFIX) {
                reg.records.load(rest, &value)?;
            } else if let Some(rest) = key.strip_prefix(dedup::PREFIX) {
                reg.dedup.load(rest, &value)?;
            } else {
                return Err(CodecError::Version {
                    what: "registry key prefix",
                    found: key.first().copied().unwrap_or(0),
                });
            }
        }
        Ok(reg)
    }

    /// Every persisted (key, value) pair, sorted by key: the canonical form used for snapshots and
    /// digests.
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, CodecError> {
        let mut out = Vec::with_capacity(self.records.len() + self.dedup.len());
        self.records.dump(&mut out)?;
        self.dedup.dump(&mut out)?;
        out.sort();
        Ok(out)
    }

    /// SHA-256 over the canonical form: equal digests mean equal replicated state.
    pub fn digest(&self) -> Result<String, CodecError> {
        Ok(digest_pairs(
            self.dump()?
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice())),
        ))
    }
}

/// Digest of sorted (key, value) pairs, each length-prefixed so boundaries are unambiguous.
pub fn digest_pairs<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut h = Sha256::new();
    for (k, v) in pairs {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests;
