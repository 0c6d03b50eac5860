//! Enabling, disabling, rotation, scheduled deletion and archiving: each one replicated
//! `KeyOp`.

use super::{one_key, Action, Kms, KmsError, Resource, Scope};
use crate::registry::key::{KeyOp, KeyUsage};
use crate::registry::RegistryError;

/// A key's rotation settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationStatus {
    pub enabled: bool,
    pub rotate_days: u32,
    pub last_rotate_time: u64,
    pub next_rotate_time: u64,
}

impl Kms {
    /// Runs a lifecycle operation on the caller's keys in the request's region; returns the
    /// proposer's time stamped on it.
    async fn key_op(
        &self,
        scope: &Scope,
        action: Action,
        key_ids: Vec<String>,
        op: KeyOp,
    ) -> Result<u64, KmsError> {
        let resource = Resource::Keys {
            region: scope.region.clone(),
            key_ids: key_ids.clone(),
        };
        self.seams
            .run(
                scope,
                action,
                resource,
                self.propose_key_op(scope, key_ids, op),
            )
            .await
    }

    /// Enables keys (several at once: all or none).
    pub async fn enable_keys(&self, scope: &Scope, key_ids: Vec<String>) -> Result<(), KmsError> {
        self.key_op(scope, Action::EnableKey, key_ids, KeyOp::Enable)
            .await
            .map(|_| ())
    }

    /// Disables keys (several at once: all or none).
    pub async fn disable_keys(&self, scope: &Scope, key_ids: Vec<String>) -> Result<(), KmsError> {
        self.key_op(scope, Action::DisableKey, key_ids, KeyOp::Disable)
            .await
            .map(|_| ())
    }

    /// Turns on automatic rotation every `rotate_days`.
    pub async fn enable_rotation(
        &self,
        scope: &Scope,
        key_id: String,
        rotate_days: u32,
    ) -> Result<(), KmsError> {
        let op = KeyOp::EnableRotation { rotate_days };
        self.key_op(scope, Action::EnableRotation, vec![key_id], op)
            .await
            .map(|_| ())
    }

    /// Turns off automatic rotation.
    pub async fn disable_rotation(&self, scope: &Scope, key_id: String) -> Result<(), KmsError> {
        self.key_op(
            scope,
            Action::DisableRotation,
            vec![key_id],
            KeyOp::DisableRotation,
        )
        .await
        .map(|_| ())
    }

    /// A key's rotation settings.
    pub async fn rotation_status(
        &self,
        scope: &Scope,
        key_id: &str,
    ) -> Result<RotationStatus, KmsError> {
        self.seams
            .run(
                scope,
                Action::GetRotationStatus,
                one_key(scope, key_id),
                async {
                    self.gate(scope).await?;
                    let k = self.key(scope, key_id)?;
                    Ok(RotationStatus {
                        enabled: k.rotation_enabled,
                        rotate_days: k.rotate_days,
                        last_rotate_time: k.last_rotate_time,
                        next_rotate_time: k.next_rotate_time,
                    })
                },
            )
            .await
    }

    /// Rotates a key now: new material, numbered after the current version.
    pub async fn rotate_key(&self, scope: &Scope, key_id: String) -> Result<(), KmsError> {
        let resource = one_key(scope, &key_id);
        self.seams
            .run(scope, Action::RotateKey, resource, async {
                // Read the current version through the gate so the new one is numbered after it; a
                // race with another rotation is caught in apply (the version must be exactly
                // current + 1).
                self.gate(scope).await?;
                let k = self.key(scope, &key_id)?;
                if k.usage != KeyUsage::EncryptDecrypt {
                    return Err(RegistryError::RotateNotSupported.into());
                }
                let next = k.versions.last().map(|v| v.version + 1).unwrap_or(1);
                let material =
                    self.node
                        .keyring()
                        .new_material(k.algorithm, &k.key_id, next, k.owner_uin)?;
                let op = KeyOp::Rotate {
                    material,
                    manual: true,
                    min_manual_interval: self.node.config().kms.manual_rotation_interval_secs,
                };
                self.propose_key_op(scope, vec![key_id.clone()], op)
                    .await
                    .map(|_| ())
            })
            .await
    }

    /// Schedules a key's deletion after `pending_days`; returns the deletion date (seconds).
    pub async fn schedule_deletion(
        &self,
        scope: &Scope,
        key_id: String,
        pending_days: u32,
    ) -> Result<u64, KmsError> {
        let resource = one_key(scope, &key_id);
        self.seams
            .run(scope, Action::ScheduleDeletion, resource, async {
                let op = KeyOp::ScheduleDeletion { pending_days };
                let at = self.propose_key_op(scope, vec![key_id.clone()], op).await?;
                let read = || self.key(scope, &key_id).ok().map(|k| k.deletion_date);
                Ok(self.applied_deletion_date(read, at, pending_days).await)
            })
            .await
    }

    /// Cancels a scheduled deletion (the key comes back disabled, within the quota).
    pub async fn cancel_deletion(&self, scope: &Scope, key_id: String) -> Result<(), KmsError> {
        let op = KeyOp::CancelDeletion {
            cmk_limit: self.node.config().kms.cmk_limit,
        };
        self.key_op(scope, Action::CancelDeletion, vec![key_id], op)
            .await
            .map(|_| ())
    }

    /// Archives a key (it still decrypts).
    pub async fn archive_key(&self, scope: &Scope, key_id: String) -> Result<(), KmsError> {
        self.key_op(scope, Action::ArchiveKey, vec![key_id], KeyOp::Archive)
            .await
            .map(|_| ())
    }

    /// Brings an archived key back.
    pub async fn cancel_archive(&self, scope: &Scope, key_id: String) -> Result<(), KmsError> {
        self.key_op(
            scope,
            Action::CancelArchive,
            vec![key_id],
            KeyOp::CancelArchive,
        )
        .await
        .map(|_| ())
    }
}
