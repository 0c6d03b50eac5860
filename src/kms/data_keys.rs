//! Hosted data keys (`registry::data_key`): made by GenerateDataKey with `IsHostedByKms` or by
//! ImportDataKey, kept sealed under a CMK of the caller, read back as that ciphertext blob or in
//! clear, renamed, enabled, disabled and deleted after a pending window. New in cluster feature
//! level 2: refused with `ClusterError::FeatureNotEnabled` until a rolling upgrade is finalized.

use super::crypto::DataKey;
use super::{one_key, Action, Kms, KmsError, Page, Resource, Scope};
use crate::crypto::recipient::Recipient;
use crate::crypto::{blob, Secret};
use crate::registry::data_key::{self, DataKeyOp, DataKeyRecord, DataKeyState};
use crate::registry::key::Origin;
use crate::registry::Command;

/// The caller's choices for a new hosted data key.
#[derive(Clone, Debug)]
pub struct NewDataKey {
    pub name: String,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

/// What ImportDataKey brings.
#[derive(Debug)]
pub enum ImportedDataKey {
    /// A CiphertextBlob of GenerateDataKey (without an EncryptionContext), opened here; a
    /// KeyId, if given, must be the blob's.
    Ciphertext {
        blob: Vec<u8>,
        key_id: Option<String>,
    },
    /// The data key in clear, to be sealed under `key_id`.
    Plaintext { data_key: Secret, key_id: String },
}

/// A hosted data key with the alias of its CMK (`KeyName`), when the CMK still exists.
#[derive(Clone, Debug)]
pub struct DataKeyDescription {
    pub data_key: DataKeyRecord,
    pub key_alias: Option<String>,
}

/// Which hosted data keys a detailed listing returns.
#[derive(Clone, Debug, Default)]
pub struct DataKeyFilter {
    pub offset: usize,
    pub limit: usize,
    /// Data keys cloud products created on the user's behalf (none are): an empty listing.
    pub granted: bool,
    pub newest_last: bool,
    pub state: Option<DataKeyState>,
    pub name_or_id_contains: String,
    pub origin: Option<Origin>,
    /// Only those sealed under this CMK.
    pub key_id: Option<String>,
    /// Only those of this length in bytes.
    pub length: Option<u32>,
    /// Each (tag key, accepted values; empty = any value) must match.
    pub tags: Vec<(String, Vec<String>)>,
}

fn data_keys(scope: &Scope, ids: Vec<String>) -> Resource {
    Resource::DataKeys {
        region: scope.region.clone(),
        data_key_ids: ids,
    }
}

fn matches_filter(d: &DataKeyRecord, f: &DataKeyFilter) -> bool {
    f.state.is_none_or(|s| d.state == s)
        && f.origin.is_none_or(|o| d.origin == o)
        && f.key_id.as_ref().is_none_or(|k| &d.key_id == k)
        && f.length.is_none_or(|n| d.number_of_bytes == n)
        && (f.name_or_id_contains.is_empty()
            || d.name.contains(&f.name_or_id_contains)
            || d.data_key_id.contains(&f.name_or_id_contains))
        && f.tags.iter().all(|(tk, tv)| {
            d.tags
                .iter()
                .any(|(k2, v2)| k2 == tk && (tv.is_empty() || tv.contains(v2)))
        })
}

impl Kms {
    /// GenerateDataKey with `IsHostedByKms`: a new random data key, returned like any data key
    /// and also kept, sealed under the CMK, as a named hosted data key. With `to`, the data key
    /// is also encrypted to the caller's public key (third of the result) before anything is
    /// stored, so a failure of that encryption stores nothing.
    pub async fn generate_hosted_data_key(
        &self,
        scope: &Scope,
        key_id: &str,
        len: usize,
        context: &[u8],
        new: NewDataKey,
        to: Option<&Recipient>,
    ) -> Result<(DataKey, String, Option<Vec<u8>>), KmsError> {
        self.seams
            .run(
                scope,
                Action::CreateDataKey,
                one_key(scope, key_id),
                async {
                    let dk = self.fresh_data_key(scope, key_id, len, context).await?;
                    let sealed_for_caller = to
                        .map(|r| {
                            r.encrypt(dk.plaintext.expose())
                                .map_err(|e| KmsError::PublicKeyEncryption(e.to_string()))
                        })
                        .transpose()?;
                    let data_key_id = self
                        .store_data_key(
                            scope,
                            &dk.key_id,
                            &dk.ciphertext,
                            context,
                            len,
                            Origin::TencentKms,
                            new,
                        )
                        .await?;
                    Ok((dk, data_key_id, sealed_for_caller))
                },
            )
            .await
    }

    /// ImportDataKey: a data key the caller brings (as a CiphertextBlob or in clear) kept as a
    /// hosted data key (Origin EXTERNAL); the CMK's KeyId and the new DataKeyId.
    pub async fn import_data_key(
        &self,
        scope: &Scope,
        material: ImportedDataKey,
        new: NewDataKey,
    ) -> Result<(String, String), KmsError> {
        let resource = match &material {
            ImportedDataKey::Ciphertext { blob: b, key_id } => match (blob::parse(b), key_id) {
                (Ok(h), _) => one_key(scope, &h.key_id.to_string()),
                (Err(_), Some(id)) => one_key(scope, id),
                (Err(_), None) => Resource::Ciphertext {
                    region: scope.region.clone(),
                },
            },
            ImportedDataKey::Plaintext { key_id, .. } => one_key(scope, key_id),
        };
        self.seams
            .run(scope, Action::CreateDataKey, resource, async {
                self.gate(scope).await?;
                let (key_id, ciphertext, len) = match material {
                    ImportedDataKey::Ciphertext { blob: b, key_id } => {
                        // Opening a ciphertext is a Decrypt: a caller not allowed to decrypt
                        // under the blob's key cannot turn its ciphertexts into data keys it
                        // then reads with GetDataKeyPlaintext.
                        if let Ok(h) = blob::parse(&b) {
                            self.seams.authorize_as(
                                scope,
                                Action::Decrypt,
                                "kms:Decrypt",
                                &one_key(scope, &h.key_id.to_string()),
                            )?;
                        }
                        let (k, _, plaintext) = self.open(scope, &b, &[]).map_err(|e| match e {
                            KmsError::InvalidCiphertext(_) => KmsError::InvalidImportedDataKey(
                                "ImportKeyMaterial is not a CiphertextBlob of one of your keys \
                                 made without an EncryptionContext"
                                    .into(),
                            ),
                            other => other,
                        })?;
                        if key_id.as_ref().is_some_and(|id| *id != k.key_id) {
                            return Err(KmsError::InvalidImportedDataKey(format!(
                                "the CiphertextBlob is sealed under key {}, not the KeyId given",
                                k.key_id
                            )));
                        }
                        (k.key_id, b, plaintext.len())
                    }
                    ImportedDataKey::Plaintext { data_key, key_id } => {
                        let k = self.key(scope, &key_id)?;
                        let ciphertext = self.seal(&k, &[], data_key.expose())?;
                        (k.key_id, ciphertext, data_key.len())
                    }
                };
                if len == 0 || len > data_key::MAX_BYTES {
                    return Err(KmsError::InvalidImportedDataKey(format!(
                        "a data key must be 1 to {} bytes, not {len}",
                        data_key::MAX_BYTES
                    )));
                }
                let data_key_id = self
                    .store_data_key(scope, &key_id, &ciphertext, &[], len, Origin::External, new)
                    .await?;
                Ok((key_id, data_key_id))
            })
            .await
    }

    /// Proposes a new hosted data key; its id.
    #[allow(clippy::too_many_arguments)]
    async fn store_data_key(
        &self,
        scope: &Scope,
        key_id: &str,
        ciphertext: &[u8],
        context: &[u8],
        len: usize,
        origin: Origin,
        new: NewDataKey,
    ) -> Result<String, KmsError> {
        let data_key_id = uuid::Uuid::new_v4().to_string();
        let record = DataKeyRecord {
            data_key_id: data_key_id.clone(),
            region: scope.region.clone(),
            owner_uin: scope.caller.uin,
            key_id: key_id.to_string(),
            name: new.name,
            description: new.description,
            state: DataKeyState::Enabled,
            origin,
            number_of_bytes: u32::try_from(len)
                .map_err(|_| KmsError::Internal("data key length".into()))?,
            created_at: self.now_secs(),
            deletion_date: 0,
            tags: new.tags,
            ciphertext: ciphertext.to_vec(),
            context: context.to_vec(),
        };
        let limit = self.node.config().kms.data_key_limit;
        self.propose(
            scope,
            Command::CreateDataKey {
                data_key: Box::new(record),
                limit,
            },
        )
        .await?;
        scope.note_key(&data_key_id);
        Ok(data_key_id)
    }

    /// A hosted data key of the caller in the request's region, from applied state.
    pub(super) fn data_key(&self, scope: &Scope, id: &str) -> Result<DataKeyRecord, KmsError> {
        self.node
            .state()
            .read()
            .registry
            .data_keys()
            .get(&scope.region, scope.caller.uin, id)
            .cloned()
            .ok_or_else(|| KmsError::DataKeyNotFound(id.to_string()))
    }

    fn describe_data_key_record(&self, d: DataKeyRecord) -> DataKeyDescription {
        let key_alias = self
            .node
            .state()
            .read()
            .registry
            .keys()
            .get(&d.region, d.owner_uin, &d.key_id)
            .map(|k| k.alias.clone());
        DataKeyDescription {
            data_key: d,
            key_alias,
        }
    }

    /// One hosted data key.
    pub async fn describe_data_key(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<DataKeyDescription, KmsError> {
        self.seams
            .run(
                scope,
                Action::DescribeDataKey,
                data_keys(scope, vec![id.to_string()]),
                async {
                    self.gate(scope).await?;
                    let d = self.data_key(scope, id)?;
                    Ok(self.describe_data_key_record(d))
                },
            )
            .await
    }

    /// The caller's hosted data keys among `ids` (unknown ids are left out).
    pub async fn describe_data_keys(
        &self,
        scope: &Scope,
        ids: Vec<String>,
    ) -> Result<Vec<DataKeyDescription>, KmsError> {
        self.seams
            .run(
                scope,
                Action::DescribeDataKey,
                data_keys(scope, ids.clone()),
                async {
                    self.gate(scope).await?;
                    Ok(ids
                        .iter()
                        .filter_map(|id| self.data_key(scope, id).ok())
                        .map(|d| self.describe_data_key_record(d))
                        .collect())
                },
            )
            .await
    }

    /// The caller's hosted data keys that pass `filter`, newest first (or oldest first).
    pub async fn list_data_keys(
        &self,
        scope: &Scope,
        filter: DataKeyFilter,
    ) -> Result<Page<DataKeyDescription>, KmsError> {
        let resource = Resource::Account {
            region: scope.region.clone(),
        };
        self.seams
            .run(scope, Action::DescribeDataKey, resource, async {
                self.gate(scope).await?;
                if filter.granted {
                    return Ok(Page {
                        items: Vec::new(),
                        total: 0,
                    });
                }
                let mut found: Vec<DataKeyRecord> = {
                    let state = self.node.state().read();
                    state
                        .registry
                        .data_keys()
                        .list(&scope.region, scope.caller.uin)
                        .into_iter()
                        .filter(|d| matches_filter(d, &filter))
                        .cloned()
                        .collect()
                };
                if filter.newest_last {
                    found.reverse();
                }
                let total = found.len();
                let items = found
                    .into_iter()
                    .skip(filter.offset)
                    .take(filter.limit)
                    .map(|d| self.describe_data_key_record(d))
                    .collect();
                Ok(Page { items, total })
            })
            .await
    }

    /// One lifecycle operation on hosted data keys of the caller, all or nothing; the
    /// proposer's time stamped on it (seconds).
    pub async fn data_key_op(
        &self,
        scope: &Scope,
        ids: Vec<String>,
        op: DataKeyOp,
    ) -> Result<u64, KmsError> {
        let action = match &op {
            DataKeyOp::Enable => Action::EnableDataKey,
            DataKeyOp::Disable => Action::DisableDataKey,
            DataKeyOp::UpdateName { .. } | DataKeyOp::UpdateDescription { .. } => {
                Action::UpdateDataKey
            }
            DataKeyOp::ScheduleDeletion { .. } => Action::ScheduleDataKeyDeletion,
            DataKeyOp::CancelDeletion { .. } | DataKeyOp::DeleteDue => {
                Action::CancelDataKeyDeletion
            }
            DataKeyOp::ModifyTags { .. } => Action::ModifyTags,
        };
        self.seams
            .run(scope, action, data_keys(scope, ids.clone()), async {
                self.propose(
                    scope,
                    Command::DataKeyOp {
                        region: scope.region.clone(),
                        uin: scope.caller.uin,
                        data_key_ids: ids,
                        op,
                    },
                )
                .await
            })
            .await
    }

    /// Schedules a data key's deletion after `pending_days`; returns the deletion date (seconds),
    /// the leader's (`Kms::applied_deletion_date`).
    pub async fn schedule_data_key_deletion(
        &self,
        scope: &Scope,
        id: String,
        pending_days: u32,
    ) -> Result<u64, KmsError> {
        let at = self
            .data_key_op(
                scope,
                vec![id.clone()],
                DataKeyOp::ScheduleDeletion { pending_days },
            )
            .await?;
        let read = || self.data_key(scope, &id).ok().map(|d| d.deletion_date);
        Ok(self.applied_deletion_date(read, at, pending_days).await)
    }

    /// CancelDataKeyDeletion: the data key comes back disabled, within the quota.
    pub async fn cancel_data_key_deletion(
        &self,
        scope: &Scope,
        id: String,
    ) -> Result<(), KmsError> {
        let limit = self.node.config().kms.data_key_limit;
        self.data_key_op(scope, vec![id], DataKeyOp::CancelDeletion { limit })
            .await
            .map(|_| ())
    }

    /// The quota of hosted data keys: (used, limit).
    pub(crate) fn data_key_quota(&self, scope: &Scope) -> (usize, usize) {
        let used = self
            .node
            .state()
            .read()
            .registry
            .data_keys()
            .count(&scope.region, scope.caller.uin);
        (used, self.node.config().kms.data_key_limit as usize)
    }

    /// A hosted data key in a usable state (Enabled).
    fn usable_data_key(&self, scope: &Scope, id: &str) -> Result<DataKeyRecord, KmsError> {
        let d = self.data_key(scope, id)?;
        match d.state {
            DataKeyState::Enabled => Ok(d),
            DataKeyState::Disabled => Err(KmsError::DataKeyDisabled(id.to_string())),
            DataKeyState::PendingDelete => Err(KmsError::DataKeyPendingDelete(id.to_string())),
        }
    }

    /// GetDataKeyCiphertextBlob: the data key as its CMK's ciphertext blob.
    pub async fn data_key_ciphertext(&self, scope: &Scope, id: &str) -> Result<Vec<u8>, KmsError> {
        self.seams
            .run(
                scope,
                Action::GetDataKeyCiphertext,
                data_keys(scope, vec![id.to_string()]),
                async {
                    self.gate(scope).await?;
                    Ok(self.usable_data_key(scope, id)?.ciphertext)
                },
            )
            .await
    }

    /// GetDataKeyPlaintext: the data key in clear, opened with its CMK (which must be usable
    /// for decryption).
    pub async fn data_key_plaintext(&self, scope: &Scope, id: &str) -> Result<Secret, KmsError> {
        self.seams
            .run(
                scope,
                Action::GetDataKeyPlaintext,
                data_keys(scope, vec![id.to_string()]),
                async {
                    self.gate(scope).await?;
                    let d = self.usable_data_key(scope, id)?;
                    let (_, _, plaintext) = self.open(scope, &d.ciphertext, &d.context)?;
                    Ok(plaintext)
                },
            )
            .await
    }
}
