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
pub mod replica;

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
    #[error("a replica key's material and rotation follow its primary: rotate (or change rotation of) the primary key in region {primary_region}")]
    ReplicaFollowsPrimary { primary_region: String },
    #[error("the key has replica keys in {regions}: schedule their deletion first (a primary cannot be deleted while replicas share its material)")]
    HasReplicas { regions: String },
    #[error("only a primary (or unreplicated) key created by the KMS (Origin TENCENT_KMS) with material can be replicated; {why}")]
    CannotReplicate { why: String },
    #[error("region {region} already holds a key with this KeyId")]
    ReplicaExists { region: String },
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
    replicas: replica::Replicas,
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

    /// Multi-region links between primary and replica keys.
    pub fn replicas(&self) -> &replica::Replicas {
        &self.replicas
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
            } => self.apply_key_op(region, *uin, key_ids, op, now, changes),
            Command::ReplicateKey {
                uin,
                key_id,
                source_region,
                replicas,
                cmk_limit,
            } => self.replicate(
                *uin,
                key_id,
                source_region,
                replicas,
                *cmk_limit,
                now,
                changes,
            ),
        }
    }

    /// A lifecycle operation, with the multi-region rules: material and rotation changes only on
    /// the primary and copied to every replica in the same apply; a primary cannot be scheduled
    /// for deletion while replicas share its material; a removed replica leaves its set.
    fn apply_key_op(
        &mut self,
        region: &str,
        uin: u64,
        key_ids: &[String],
        op: &key::KeyOp,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> Result<(), RegistryError> {
        use key::KeyOp;
        use replica::Role;
        let shared_material = matches!(
            op,
            KeyOp::Rotate { .. } | KeyOp::EnableRotation { .. } | KeyOp::DisableRotation
        );
        let mut primaries = Vec::new();
        let mut removed_replicas = Vec::new();
        for id in key_ids {
            match self.replicas.role(region, uin, id) {
                Role::Replica(set) if shared_material => {
                    return Err(RegistryError::ReplicaFollowsPrimary {
                        primary_region: set.primary_region.clone(),
                    })
                }
                Role::Primary(set) if matches!(op, KeyOp::ScheduleDeletion { .. }) => {
                    return Err(RegistryError::HasReplicas {
                        regions: set.replicas.join(", "),
                    })
                }
                Role::Primary(set) if shared_material => {
                    primaries.push((id.clone(), set.replicas.clone()))
                }
                Role::Replica(_) if matches!(op, KeyOp::DeleteDue) => {
                    removed_replicas.push(id.clone())
                }
                _ => {}
            }
        }
        self.keys.apply_op(region, uin, key_ids, op, now, changes)?;
        for (id, regions) in primaries {
            let Some(primary) = self.keys.get(region, uin, &id).cloned() else {
                continue;
            };
            for r in regions {
                self.keys.mirror_material(&r, &primary, changes)?;
            }
        }
        for id in removed_replicas {
            self.replicas
                .remove_replica(uin, &id, region, changes)
                .map_err(|_| RegistryError::ValueTooLarge)?;
        }
        Ok(())
    }

    /// Creates replica keys of a primary in other regions (all or nothing).
    #[allow(clippy::too_many_arguments)]
    fn replicate(
        &mut self,
        uin: u64,
        key_id: &str,
        source_region: &str,
        specs: &[replica::ReplicaSpec],
        cmk_limit: u32,
        now: u64,
        changes: &mut Vec<Change>,
    ) -> Result<(), RegistryError> {
        use key::{KeyState, Origin};
        let primary = self
            .keys
            .get(source_region, uin, key_id)
            .ok_or(RegistryError::KeyNotFound)?
            .clone();
        let cannot = |why: &str| RegistryError::CannotReplicate {
            why: why.to_string(),
        };
        if let replica::Role::Replica(set) = self.replicas.role(source_region, uin, key_id) {
            return Err(cannot(&format!(
                "this key is a replica; replicate its primary in region {}",
                set.primary_region
            )));
        }
        if primary.origin != Origin::TencentKms {
            return Err(cannot("this key holds imported (EXTERNAL) material"));
        }
        match primary.state {
            KeyState::Enabled | KeyState::Disabled => {}
            _ => return Err(RegistryError::StateNotSupported),
        }
        if primary.versions.is_empty() {
            return Err(cannot("this key has no material"));
        }
        if specs.is_empty() {
            return Err(cannot("no destination region was given"));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut records = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.region == source_region || !seen.insert(spec.region.as_str()) {
                return Err(cannot(&format!(
                    "destination region {} is the source or appears twice",
                    spec.region
                )));
            }
            let mut k = primary.clone();
            k.region = spec.region.clone();
            k.alias = spec.alias.clone();
            k.description = spec.description.clone();
            k.tags = spec.tags.clone();
            k.state = KeyState::Enabled;
            k.created_at = now;
            k.deletion_date = 0;
            self.keys.check_create(&k, cmk_limit).map_err(|e| match e {
                RegistryError::KeyExists => RegistryError::ReplicaExists {
                    region: spec.region.clone(),
                },
                other => other,
            })?;
            records.push(k);
        }
        for k in records {
            self.keys.create(&k, cmk_limit, changes)?;
            self.replicas
                .add(uin, key_id, source_region, &k.region, changes)
                .map_err(|_| RegistryError::ValueTooLarge)?;
        }
        Ok(())
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
            } else if key.starts_with(replica::PREFIX) {
                reg.replicas.load(&value)?;
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
        self.replicas.dump(&mut out)?;
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
