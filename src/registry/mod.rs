//! The replicated registry: a pure, deterministic state machine.
//!
//! `apply` takes the log index and an [`Envelope`] and returns an [`Outcome`] plus the list of
//! storage [`Change`]s it made. It reads no clock, draws no randomness and does no I/O: everything
//! of that kind is decided by the proposing node and carried in the envelope. Persisting the
//! changes is the caller's job (see `raft::state_machine`).

pub mod account;
pub mod command;
pub mod dedup;
pub mod key;
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
    #[error("the cluster root key is already installed")]
    RootKeyAlreadyInstalled,
    #[error("an account with this uin already exists")]
    AccountExists,
    #[error("no such account")]
    AccountNotFound,
    #[error("a credential with this SecretId already exists")]
    CredentialExists,
    #[error("no such credential")]
    CredentialNotFound,
    #[error("a key with this KeyId already exists")]
    KeyExists,
    #[error("the key does not exist")]
    KeyNotFound,
    #[error("the alias is already used by another key of this account in this region")]
    AliasExists,
    #[error("alias must be 1-60 letters, digits, '-' or '_', start with a letter or digit, and not start with 'kms-'")]
    InvalidAlias,
    #[error("description exceeds 1024 bytes")]
    InvalidDescription,
    #[error("the account has reached its key quota in this region")]
    CmkLimitExceeded,
    #[error("the key's state does not allow this operation")]
    StateNotSupported,
    #[error("the key must be disabled first")]
    ShouldBeDisabled,
    #[error("the key is not pending deletion")]
    NotPendingDelete,
    #[error("the key is disabled")]
    KeyDisabled,
    #[error("imported (EXTERNAL) keys cannot be rotated")]
    ExternalCannotRotate,
    #[error("the operation needs a key with imported (EXTERNAL) material")]
    NotExternal,
    #[error("the import token is not the current one for this key (a newer GetParametersForImport replaces it)")]
    ImportTokenInvalid,
    #[error("the import token has expired; call GetParametersForImport again")]
    ImportTokenExpired,
    #[error("re-imported material must be identical to the material imported before")]
    MaterialNotMatch,
    #[error("ValidTo must be 0 (never) or a future time up to 2147443200")]
    InvalidValidTo,
    #[error("asymmetric keys cannot be rotated")]
    RotateNotSupported,
    #[error("a manual rotation was already done within the rate-limit interval")]
    RotateRateLimited,
    #[error("the rotation raced with another one; retry")]
    StaleRotation,
    #[error("RotateDays must be between 7 and 365")]
    InvalidRotateDays,
    #[error("PendingWindowInDays must be between 7 and 30")]
    InvalidPendingWindow,
    #[error("the same KeyId appears twice")]
    DuplicatedKeyId,
    #[error("the scheduled time has not come by the proposer's clock")]
    NotDue,
}

/// Persisted (key, value) pairs of the registry column family.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

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
    accounts: account::Accounts,
    keys: key::Keys,
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

    /// Accounts, credentials and the sealed root key.
    pub fn accounts(&self) -> &account::Accounts {
        &self.accounts
    }

    /// Customer master keys.
    pub fn keys(&self) -> &key::Keys {
        &self.keys
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
        let now = env.issued_at_ms / 1000;
        let outcome = match self.apply_command(&env.command, now, &mut staged) {
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
        now: u64,
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
            Command::InstallRootKey { sealed } => self.accounts.install_root(sealed, changes),
            Command::CreateAccount { account } => self.accounts.create_account(account, changes),
            Command::CreateCredential { credential } => {
                self.accounts.create_credential(credential, changes)
            }
            Command::RevokeCredential { secret_id } => {
                self.accounts.revoke_credential(secret_id, changes)
            }
            Command::CreateKey { key, cmk_limit } => {
                if self.accounts.account(key.owner_uin).is_none() {
                    return Err(RegistryError::AccountNotFound);
                }
                self.keys.create(key, *cmk_limit, changes)
            }
            Command::KeyOp {
                region,
                uin,
                key_ids,
                op,
            } => self.keys.apply_op(region, *uin, key_ids, op, now, changes),
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
            } else if key.starts_with(key::PREFIX) {
                reg.keys.load(&value)?;
            } else if reg.accounts.load(&key, &value)? {
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
    pub fn dump(&self) -> Result<Pairs, CodecError> {
        let mut out = Vec::with_capacity(self.records.len() + self.dedup.len());
        self.records.dump(&mut out)?;
        self.dedup.dump(&mut out)?;
        self.accounts.dump(&mut out)?;
        self.keys.dump(&mut out)?;
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
