//! The replicated registry: a pure, deterministic state machine.
//!
//! `apply` takes the log index and an [`Envelope`] and returns an [`Outcome`] plus the list of
//! storage [`Change`]s it made. It reads no clock, draws no randomness and does no I/O: everything
//! of that kind is decided by the proposing node and carried in the envelope. Persisting the
//! changes is the caller's job (see `raft::state_machine`).

pub mod account;
pub mod audit_heads;
pub mod cloud_binding;
pub mod command;
pub mod counts;
pub mod data_key;
pub mod dedup;
pub mod due;
pub mod features;
pub mod iam;
pub mod key;
pub mod record;
pub mod replica;
pub mod root_keys;
pub mod tags;

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
    /// A value the command was about to store could not be encoded (carries the record kind,
    /// e.g. `"key"`). Not the client's fault: the API answers `InternalError`.
    ///
    /// Why a rejection and not the [`CodecError`] that [`Registry::apply`] can also return:
    /// encoding the same value is deterministic, so every replica refuses the same command at the
    /// same index the same way, and the refusal is remembered like any other. Returning
    /// `CodecError` instead would fail the state machine's apply on every replica at that index,
    /// and again at every restart when the entry is replayed: one unencodable command would stop
    /// the cluster for good. Only the record kind is kept, not the encoder's message, so the
    /// outcome (which is persisted in the dedup entry and so in the digest) does not depend on the
    /// encoder library's wording. Appended last: the variant index is persisted.
    #[error("internal error: cannot encode the {0} to store (a bug in this build, not in the request); nothing was changed")]
    Encoding(String),
    #[error("a user or role with this name already exists in the account")]
    IdentityExists,
    #[error("no such user or role in the account")]
    IdentityNotFound,
    #[error("a user, role or product name must be 1 to 64 letters, digits or +=,.@_- (and only a role acts for a product)")]
    InvalidIdentityName,
    #[error("a policy with this name already exists in the account")]
    PolicyExists,
    #[error("no such policy in the account")]
    PolicyNotFound,
    #[error("the policy is not attached to this user or role")]
    PolicyNotAttached,
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    #[error("too many policies (at most 1000 per account and 200 attached to one user or role)")]
    PolicyLimitExceeded,
    #[error(
        "the key was created by a cloud product: it cannot be disabled or scheduled for deletion"
    )]
    NotUserCreatedCmk,
    #[error("node {node_id}'s audit trail was already checkpointed at sequence {seq}; a checkpoint must move it forward")]
    StaleAuditCheckpoint { node_id: u64, seq: u64 },
    #[error("the cluster root key is not installed yet (run `raftkms cluster init`)")]
    RootKeyNotInstalled,
    #[error("another root-key rotation installed a version first (the current version is {current}); check `raftkms root-key status`")]
    RootKeyVersionConflict { current: u32 },
    #[error(
        "root-key version {version} is not installed (retired, or never made); retry the request"
    )]
    RootKeyVersionUnknown { version: u32 },
    #[error("root-key version {version} is the current one: rotate first")]
    RootKeyIsCurrent { version: u32 },
    #[error("root-key version {version} still protects {values} stored values; wait until the re-wrap has moved them (`raftkms root-key status`)")]
    RootKeyInUse { version: u32, values: u64 },
    #[error("a re-wrap carries at most {max} values")]
    TooManyRewrapItems { max: usize },
    #[error("a batch of writes is unpacked by the state machine, never applied as one command")]
    BatchNotApplicable,
    #[error("the cluster's feature level is already {current}; it only rises")]
    FeatureLevelNotRaised { current: u32 },
    #[error("the key is used by a cloud product (BindCloudResource): unbind every resource first (UnbindCloudResource)")]
    CmkUsedByCloudProduct,
    #[error("this key is not bound to that product's resource")]
    CloudBindingNotFound,
    #[error("ProductId and ResourceId must be 1 to 256 bytes without control characters")]
    InvalidCloudResource,
    #[error("the data key does not exist")]
    DataKeyNotFound,
    #[error("a data key with this DataKeyId already exists")]
    DataKeyExists,
    #[error(
        "the data key name is already used by another data key of this account in this region"
    )]
    DataKeyNameExists,
    #[error(
        "a data key name must be 1-60 letters, digits, '-' or '_', starting with a letter or digit"
    )]
    InvalidDataKeyName,
    #[error("a data key's description must be at most 100 bytes")]
    InvalidDataKeyDescription,
    #[error("a data key must be 1 to 1024 bytes")]
    InvalidDataKeyLength,
    #[error("the account has reached its hosted data key quota in this region")]
    DataKeyLimitExceeded,
    #[error("the data key is pending deletion")]
    DataKeyPendingDelete,
    #[error("the data key is not pending deletion")]
    DataKeyNotPendingDelete,
    #[error("the same DataKeyId appears twice")]
    DuplicatedDataKeyId,
    #[error("invalid tags: {0}")]
    InvalidTags(String),
    #[error("a tag key appears twice")]
    TagKeysDuplicated,
}

/// Persisted (key, value) pairs of the registry column family.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One storage mutation produced by apply, keyed in the registry's column family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// One mutation of a command, checked and with its storage value encoded, waiting to be
/// committed (see [`Registry::apply`]).
enum Staged {
    Record(record::Staged),
    Account(account::Staged),
    Key(key::Staged),
    Replica(replica::Staged),
    Iam(iam::Staged),
    AuditHead(audit_heads::Staged),
    RootKey(root_keys::Staged),
    Features(features::Staged),
    CloudBinding(cloud_binding::Staged),
    DataKey(data_key::Staged),
}

/// Encodes a value a command is about to store: the one place where an encoding failure becomes
/// a registry error ([`RegistryError::Encoding`], naming the record kind).
fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, RegistryError> {
    encode_raw(what, value).map_err(|_| RegistryError::Encoding(what.to_string()))
}

/// [`codec::encode`](crate::codec::encode) for everything apply stores, with a test-only fault
/// hook (the registry's types cannot fail to encode, so tests need one to exercise the path).
fn encode_raw<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    #[cfg(test)]
    if fault::take(what) {
        return Err(CodecError::Encode {
            what,
            error: bincode::error::EncodeError::Other("fault injected by a test"),
        });
    }
    crate::codec::encode(what, value)
}

/// Test-only encoding fault injection (per thread, so parallel tests do not interfere).
#[cfg(test)]
mod fault {
    use std::cell::Cell;

    thread_local! {
        static FAIL: Cell<Option<(&'static str, usize)>> = const { Cell::new(None) };
    }

    /// Makes the encoding of record kind `what` fail after `after` more successful ones (once),
    /// until the returned guard is dropped.
    #[must_use]
    pub(super) fn fail_encode(what: &'static str, after: usize) -> Guard {
        FAIL.with(|f| f.set(Some((what, after))));
        Guard
    }

    /// Cancels the fault (if it has not happened yet) when dropped.
    pub(super) struct Guard;

    impl Drop for Guard {
        fn drop(&mut self) {
            FAIL.with(|f| f.set(None));
        }
    }

    /// Whether this encoding of `what` must fail (consuming the fault if so).
    pub(super) fn take(what: &'static str) -> bool {
        FAIL.with(|f| match f.get() {
            Some((w, 0)) if w == what => {
                f.set(None);
                true
            }
            Some((w, n)) if w == what => {
                f.set(Some((w, n - 1)));
                false
            }
            _ => false,
        })
    }
}

/// The whole replicated domain state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    records: record::Records,
    dedup: dedup::Dedup,
    accounts: account::Accounts,
    keys: key::Keys,
    replicas: replica::Replicas,
    iam: iam::Iam,
    audit_heads: audit_heads::AuditHeads,
    root_keys: root_keys::RootKeys,
    features: features::Features,
    cloud_bindings: cloud_binding::CloudBindings,
    data_keys: data_key::DataKeys,
}

impl Registry {
    /// Hosted data keys.
    pub fn data_keys(&self) -> &data_key::DataKeys {
        &self.data_keys
    }

    /// Which cloud products use which keys.
    pub fn cloud_bindings(&self) -> &cloud_binding::CloudBindings {
        &self.cloud_bindings
    }

    /// The cluster's feature level (which commands every member understands).
    pub fn feature_level(&self) -> u32 {
        self.features.level()
    }

    /// The root-key versions, sealed.
    pub fn root_keys(&self) -> &root_keys::RootKeys {
        &self.root_keys
    }

    /// How many stored values (key material, import keys, credentials' secret keys) each
    /// root-key version protects.
    pub fn root_uses(&self) -> root_keys::RootUses {
        self.keys.root_uses().merged(self.accounts.root_uses())
    }

    /// Stored values still wrapped under a root version older than the current one (what the
    /// re-wrap after a rotation has left to do).
    pub fn root_pending(&self) -> u64 {
        let Some(current) = self.root_keys.current() else {
            return 0;
        };
        self.root_uses()
            .iter()
            .filter(|(v, _)| *v != current)
            .map(|(_, n)| n)
            .sum()
    }

    /// Plain records.
    pub fn records(&self) -> &record::Records {
        &self.records
    }

    /// The idempotency table.
    pub fn dedup(&self) -> &dedup::Dedup {
        &self.dedup
    }

    /// Accounts and credentials.
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

    /// Sub-users, roles, policies, credential bindings and product-managed keys.
    pub fn iam(&self) -> &iam::Iam {
        &self.iam
    }

    /// The checkpointed heads of the nodes' audit trails.
    pub fn audit_heads(&self) -> &audit_heads::AuditHeads {
        &self.audit_heads
    }

    /// Applies one command at `index`. Pure: the same registry, index and envelope always give the
    /// same outcome and changes.
    ///
    /// All or nothing: the command is first staged against `&self` (every check done and every
    /// value to store already encoded), and only then committed, which cannot fail. So a rejected
    /// command, whatever the reason, leaves memory as it was. The dedup entry is encoded before
    /// anything is committed too: if that fails, apply returns the [`CodecError`] and nothing in
    /// memory has changed (not even the dedup window's eviction).
    pub fn apply(
        &mut self,
        index: u64,
        env: &Envelope,
    ) -> Result<(Outcome, Vec<Change>), CodecError> {
        let mut changes = Vec::new();
        if let Some(first) = self.dedup.get_live(index, &env.request_id) {
            // A retried or re-forwarded write: answer as the first time, change nothing else.
            let outcome = first.outcome.clone();
            self.dedup.evict_before(index, &mut changes);
            return Ok((outcome, changes));
        }
        let now = env.issued_at_ms / 1000;
        let (outcome, staged) = match self.stage_command(&env.command, now) {
            Ok(staged) => (Outcome::Applied { index }, staged),
            Err(e) => (Outcome::Rejected(e), Vec::new()),
        };
        let remembered = self.dedup.stage(
            env.request_id,
            dedup::AppliedRequest {
                index,
                outcome: outcome.clone(),
            },
        )?;
        // Nothing below can fail.
        self.dedup.evict_before(index, &mut changes);
        for s in staged {
            self.commit(s, &mut changes);
        }
        self.dedup.commit(remembered, &mut changes);
        Ok((outcome, changes))
    }

    /// Commits one staged mutation to memory and records its storage change. Infallible.
    fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::Record(s) => self.records.commit(s, changes),
            Staged::Account(s) => self.accounts.commit(s, changes),
            Staged::Key(s) => self.keys.commit(s, changes),
            Staged::Replica(s) => self.replicas.commit(s, changes),
            Staged::Iam(s) => self.iam.commit(s, changes),
            Staged::AuditHead(s) => self.audit_heads.commit(s, changes),
            Staged::RootKey(s) => self.root_keys.commit(s, changes),
            Staged::Features(s) => self.features.commit(s, changes),
            Staged::CloudBinding(s) => self.cloud_bindings.commit(s, changes),
            Staged::DataKey(s) => self.data_keys.commit(s, changes),
        }
    }

    /// Checks `cmd` at `now` and returns the mutations it makes, in order, with their storage
    /// values encoded. Reads only: on `Err` nothing has changed.
    fn stage_command(&self, cmd: &Command, now: u64) -> Result<Vec<Staged>, RegistryError> {
        // A value wrapped under a root version retired before this command was applied (the
        // proposer wrapped it just before the retirement) would be unreadable: refuse it.
        for wrapped in command_wraps(cmd) {
            self.root_keys.check_wrapped(wrapped)?;
        }
        Ok(match cmd {
            Command::PutRecord { name, value } => {
                record::validate(name, Some(value))?;
                vec![Staged::Record(self.records.stage_put(name, value)?)]
            }
            Command::PutRecords { records } => {
                // Validate everything first, so a bad item is reported before any encoding.
                for (name, value) in records {
                    record::validate(name, Some(value))?;
                }
                records
                    .iter()
                    .map(|(name, value)| self.records.stage_put(name, value).map(Staged::Record))
                    .collect::<Result<_, _>>()?
            }
            Command::DeleteRecord { name } => {
                record::validate(name, None)?;
                vec![Staged::Record(self.records.stage_delete(name)?)]
            }
            Command::InstallRootKey { sealed } => {
                vec![Staged::RootKey(self.root_keys.stage_install_first(sealed)?)]
            }
            Command::InstallRootKeyVersion { version, sealed } => vec![Staged::RootKey(
                self.root_keys.stage_install_next(*version, sealed)?,
            )],
            Command::Rewrap { items } => {
                if items.len() > root_keys::MAX_REWRAP_ITEMS {
                    return Err(RegistryError::TooManyRewrapItems {
                        max: root_keys::MAX_REWRAP_ITEMS,
                    });
                }
                self.stage_rewrap(items)?
            }
            Command::RetireRootKey { version } => vec![Staged::RootKey(
                self.root_keys
                    .stage_retire(*version, self.root_uses().of(*version))?,
            )],
            Command::Batch { .. } => return Err(RegistryError::BatchNotApplicable),
            Command::CreateAccount { account } => {
                vec![Staged::Account(
                    self.accounts.stage_create_account(account)?,
                )]
            }
            Command::CreateCredential { credential } => {
                vec![Staged::Account(
                    self.accounts.stage_create_credential(credential)?,
                )]
            }
            Command::RevokeCredential { secret_id } => {
                let mut staged = vec![Staged::Account(
                    self.accounts.stage_revoke_credential(secret_id)?,
                )];
                staged.extend(self.iam.stage_unbind(secret_id).map(Staged::Iam));
                staged
            }
            Command::CreateKey { key, cmk_limit } => {
                if self.accounts.account(key.owner_uin).is_none() {
                    return Err(RegistryError::AccountNotFound);
                }
                vec![Staged::Key(self.keys.stage_create(key, *cmk_limit)?)]
            }
            Command::CreateIdentity { identity } => {
                if self.accounts.account(identity.uin).is_none() {
                    return Err(RegistryError::AccountNotFound);
                }
                vec![Staged::Iam(self.iam.stage_create_identity(identity)?)]
            }
            Command::DeleteIdentity { uin, kind, name } => {
                let mut staged = vec![Staged::Iam(
                    self.iam.stage_delete_identity(*uin, *kind, name)?,
                )];
                for secret_id in self.iam.bound_to(*uin, *kind, name) {
                    staged.push(Staged::Account(
                        self.accounts.stage_revoke_credential(&secret_id)?,
                    ));
                    staged.extend(self.iam.stage_unbind(&secret_id).map(Staged::Iam));
                }
                staged
            }
            Command::CreateIdentityCredential {
                credential,
                kind,
                name,
            } => vec![
                Staged::Iam(self.iam.stage_bind(&iam::Binding {
                    secret_id: credential.secret_id.clone(),
                    uin: credential.uin,
                    kind: *kind,
                    name: name.clone(),
                })?),
                Staged::Account(self.accounts.stage_create_credential(credential)?),
            ],
            Command::PutPolicy { policy, replace } => {
                if self.accounts.account(policy.uin).is_none() {
                    return Err(RegistryError::AccountNotFound);
                }
                vec![Staged::Iam(self.iam.stage_put_policy(policy, *replace)?)]
            }
            Command::DeletePolicy { uin, name } => self
                .iam
                .stage_delete_policy(*uin, name)?
                .into_iter()
                .map(Staged::Iam)
                .collect(),
            Command::AttachPolicy {
                uin,
                kind,
                name,
                policy,
                attach,
            } => vec![Staged::Iam(
                self.iam.stage_attach(*uin, *kind, name, policy, *attach)?,
            )],
            Command::AuditCheckpoint { checkpoint } => {
                vec![Staged::AuditHead(self.audit_heads.stage(checkpoint)?)]
            }
            Command::CreateProductKey {
                key,
                cmk_limit,
                product,
            } => {
                if self.accounts.account(key.owner_uin).is_none() {
                    return Err(RegistryError::AccountNotFound);
                }
                vec![
                    Staged::Key(self.keys.stage_create(key, *cmk_limit)?),
                    Staged::Iam(self.iam.stage_product_key(&iam::ProductKey {
                        region: key.region.clone(),
                        uin: key.owner_uin,
                        key_id: key.key_id.clone(),
                        product: product.clone(),
                    })?),
                ]
            }
            Command::KeyOp {
                region,
                uin,
                key_ids,
                op,
            } => self.stage_key_op(region, *uin, key_ids, op, now)?,
            Command::ReplicateKey {
                uin,
                key_id,
                source_region,
                replicas,
                cmk_limit,
            } => self.stage_replicate(*uin, key_id, source_region, replicas, *cmk_limit, now)?,
            Command::SetFeatureLevel { level } => {
                vec![Staged::Features(self.features.stage_raise(*level)?)]
            }
            Command::BindCloudResource { binding: b } => {
                let key = self
                    .keys
                    .get(&b.region, b.uin, &b.key_id)
                    .ok_or(RegistryError::KeyNotFound)?;
                // A key pending deletion is not taken into use: its deletion would remove a key
                // a product relies on.
                if key.state == key::KeyState::PendingDelete {
                    return Err(RegistryError::StateNotSupported);
                }
                let mut staged = vec![Staged::CloudBinding(self.cloud_bindings.stage_bind(b)?)];
                staged.extend(
                    self.keys
                        .stage_keep_material(&b.region, b.uin, &b.key_id)?
                        .map(Staged::Key),
                );
                staged
            }
            Command::UnbindCloudResource { binding: b } => {
                if self.keys.get(&b.region, b.uin, &b.key_id).is_none() {
                    return Err(RegistryError::KeyNotFound);
                }
                vec![Staged::CloudBinding(self.cloud_bindings.stage_unbind(b)?)]
            }
            Command::CreateDataKey { data_key: d, limit } => {
                // The CMK the data key is sealed under must be the caller's, in its region.
                if self.keys.get(&d.region, d.owner_uin, &d.key_id).is_none() {
                    return Err(RegistryError::KeyNotFound);
                }
                vec![Staged::DataKey(self.data_keys.stage_create(d, *limit)?)]
            }
            Command::DataKeyOp {
                region,
                uin,
                data_key_ids,
                op,
            } => self
                .data_keys
                .stage_op(region, *uin, data_key_ids, op, now)?
                .into_iter()
                .map(Staged::DataKey)
                .collect(),
        })
    }

    /// A lifecycle operation, with the multi-region rules: material and rotation changes only on
    /// the primary and copied to every replica in the same apply; a primary cannot be scheduled
    /// for deletion while replicas share its material; a removed replica leaves its set.
    fn stage_key_op(
        &self,
        region: &str,
        uin: u64,
        key_ids: &[String],
        op: &key::KeyOp,
        now: u64,
    ) -> Result<Vec<Staged>, RegistryError> {
        use key::KeyOp;
        use replica::Role;
        let shared_material = matches!(
            op,
            KeyOp::Rotate { .. } | KeyOp::EnableRotation { .. } | KeyOp::DisableRotation
        );
        // Operations that take a key out of use: refused for a key a cloud product created or
        // uses. A key in use by a product does not expire either (BindCloudResource cancelled
        // its expiry; material imported again must not bring one back).
        let takes_out_of_use = matches!(
            op,
            KeyOp::Disable
                | KeyOp::ScheduleDeletion { .. }
                | KeyOp::Archive
                | KeyOp::DeleteImportedMaterial
        );
        if takes_out_of_use
            && key_ids
                .iter()
                .any(|id| self.iam.product_of(region, uin, id).is_some())
        {
            return Err(RegistryError::NotUserCreatedCmk);
        }
        let would_expire = matches!(
            op,
            KeyOp::ExpireMaterial | KeyOp::ImportMaterial { valid_to: 1.., .. }
        );
        if (takes_out_of_use || would_expire)
            && key_ids
                .iter()
                .any(|id| self.cloud_bindings.is_bound(region, uin, id))
        {
            return Err(RegistryError::CmkUsedByCloudProduct);
        }
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
        let updated = self.keys.stage_op(region, uin, key_ids, op, now)?;
        let mut staged = Vec::with_capacity(updated.len());
        for (id, regions) in primaries {
            // The primary as the operation leaves it.
            let Some(primary) = updated
                .iter()
                .filter_map(key::Staged::record)
                .find(|k| k.key_id == id)
            else {
                continue;
            };
            for r in regions {
                if let Some(s) = self.keys.stage_mirror(&r, primary)? {
                    staged.push(Staged::Key(s));
                }
            }
        }
        let mut unlinked = Vec::new();
        for id in removed_replicas {
            if let Some(s) = self.replicas.stage_remove_replica(uin, &id, region)? {
                unlinked.push(Staged::Replica(s));
            }
        }
        // A deleted key takes the hosted data keys sealed under it along (nothing could read them
        // again).
        let mut orphans = Vec::new();
        if matches!(op, KeyOp::DeleteDue) {
            for id in key_ids {
                orphans.extend(
                    self.data_keys
                        .stage_delete_of_cmk(region, uin, id)
                        .into_iter()
                        .map(Staged::DataKey),
                );
            }
        }
        // Commit order: the keys of the operation, their replicas' copies, the links, then the
        // data keys of deleted keys.
        Ok(updated
            .into_iter()
            .map(Staged::Key)
            .chain(staged)
            .chain(unlinked)
            .chain(orphans)
            .collect())
    }

    /// A re-wrap: each value replaced only if it is still the item's `old` bytes. A replica's
    /// material follows its primary (they share the bytes): items naming a replica are skipped,
    /// and a re-wrapped primary is copied onto its replicas in the same apply.
    fn stage_rewrap(&self, items: &[root_keys::RewrapItem]) -> Result<Vec<Staged>, RegistryError> {
        let mut staged = Vec::new();
        for s in self.keys.stage_rewrap(items)? {
            let Some(k) = s.record() else { continue };
            match self.replicas.role(&k.region, k.owner_uin, &k.key_id) {
                replica::Role::Replica(_) => continue,
                replica::Role::Primary(set) => {
                    let mirrors = set
                        .replicas
                        .iter()
                        .filter_map(|r| self.keys.stage_mirror(r, k).transpose())
                        .collect::<Result<Vec<_>, _>>()?;
                    staged.push(Staged::Key(s));
                    staged.extend(mirrors.into_iter().map(Staged::Key));
                }
                replica::Role::Single => staged.push(Staged::Key(s)),
            }
        }
        staged.extend(
            self.accounts
                .stage_rewrap(items)?
                .into_iter()
                .map(Staged::Account),
        );
        Ok(staged)
    }

    /// Creates replica keys of a primary in other regions (all or nothing).
    fn stage_replicate(
        &self,
        uin: u64,
        key_id: &str,
        source_region: &str,
        specs: &[replica::ReplicaSpec],
        cmk_limit: u32,
        now: u64,
    ) -> Result<Vec<Staged>, RegistryError> {
        use key::{KeyState, Origin};
        let primary = self
            .keys
            .get(source_region, uin, key_id)
            .ok_or(RegistryError::KeyNotFound)?;
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
            // Each destination is its own region, so checking each against the current state is
            // checking it against the others' creation too.
            self.keys.check_create(&k, cmk_limit).map_err(|e| match e {
                RegistryError::KeyExists => RegistryError::ReplicaExists {
                    region: spec.region.clone(),
                },
                other => other,
            })?;
            records.push(k);
        }
        let mut staged = Vec::with_capacity(records.len() + 1);
        for k in &records {
            staged.push(Staged::Key(self.keys.stage_create(k, cmk_limit)?));
        }
        // Replicas of a product-managed key are product-managed too.
        if let Some(product) = self.iam.product_of(source_region, uin, key_id) {
            for k in &records {
                staged.push(Staged::Iam(self.iam.stage_product_key(
                    &iam::ProductKey {
                        region: k.region.clone(),
                        uin,
                        key_id: key_id.to_string(),
                        product: product.to_string(),
                    },
                )?));
            }
        }
        let regions: Vec<&str> = records.iter().map(|k| k.region.as_str()).collect();
        staged.push(Staged::Replica(self.replicas.stage_add(
            uin,
            key_id,
            source_region,
            &regions,
        )?));
        Ok(staged)
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
            } else if key.starts_with(audit_heads::PREFIX) {
                reg.audit_heads.load(&value)?;
            } else if key.starts_with(cloud_binding::PREFIX) {
                reg.cloud_bindings.load(&value)?;
            } else if key.starts_with(data_key::PREFIX) {
                reg.data_keys.load(&value)?;
            } else if reg.features.load(&key, &value)?
                || reg.root_keys.load(&key, &value)?
                || reg.accounts.load(&key, &value)?
                || reg.iam.load(&key, &value)?
            {
            } else {
                return Err(CodecError::Version {
                    what: "registry key prefix",
                    found: key.first().copied().unwrap_or(0),
                });
            }
        }
        reg.iam.rebuild();
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
        self.iam.dump(&mut out)?;
        self.audit_heads.dump(&mut out)?;
        self.root_keys.dump(&mut out)?;
        self.features.dump(&mut out)?;
        self.cloud_bindings.dump(&mut out)?;
        self.data_keys.dump(&mut out)?;
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

/// Every value wrapped by the root key that `cmd` would store.
fn command_wraps(cmd: &Command) -> Vec<&[u8]> {
    use key::KeyOp;
    match cmd {
        Command::CreateCredential { credential }
        | Command::CreateIdentityCredential { credential, .. } => {
            vec![credential.wrapped_secret_key.as_slice()]
        }
        Command::CreateKey { key, .. } | Command::CreateProductKey { key, .. } => {
            key.wrapped_values().collect()
        }
        Command::KeyOp { op, .. } => match op {
            KeyOp::Rotate { material, .. } | KeyOp::ImportMaterial { material, .. } => {
                vec![material.wrapped.as_slice()]
            }
            KeyOp::SetImportParameters { session } => vec![session.wrapped_private.as_slice()],
            _ => Vec::new(),
        },
        Command::Rewrap { items } => items.iter().map(|i| i.new.as_slice()).collect(),
        _ => Vec::new(),
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
