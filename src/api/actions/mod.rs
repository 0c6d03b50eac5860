//! One function per Tencent KMS action; `dispatch` maps the action name to it in one `match`.

mod asymmetric;
mod crypto;
mod import;
mod keys;
mod lifecycle;
mod replica;
mod service;

use serde_json::{Map, Value};

use super::error_code::ApiError;
use super::Ctx;
use crate::crypto::Secret;
use crate::node::now_ms;
use crate::registry::key::{material_aad, KeyRecord, KeyState};
use crate::registry::replica::{Replicas, Role};
use crate::registry::{Command, Outcome};

/// An action's response fields (without `RequestId`).
pub type Fields = Map<String, Value>;

/// Runs `action`. Unknown names are `InvalidAction`.
pub async fn dispatch(action: &str, ctx: Ctx) -> Result<Fields, ApiError> {
    match action {
        "CreateKey" => keys::create_key(ctx).await,
        "DescribeKey" => keys::describe_key(ctx).await,
        "DescribeKeys" => keys::describe_keys(ctx).await,
        "ListKeys" => keys::list_keys(ctx).await,
        "ListKeyDetail" => keys::list_key_detail(ctx).await,
        "UpdateAlias" => keys::update_alias(ctx).await,
        "UpdateKeyDescription" => keys::update_key_description(ctx).await,
        "EnableKey" => lifecycle::enable_key(ctx).await,
        "DisableKey" => lifecycle::disable_key(ctx).await,
        "EnableKeys" => lifecycle::enable_keys(ctx).await,
        "DisableKeys" => lifecycle::disable_keys(ctx).await,
        "EnableKeyRotation" => lifecycle::enable_key_rotation(ctx).await,
        "DisableKeyRotation" => lifecycle::disable_key_rotation(ctx).await,
        "GetKeyRotationStatus" => lifecycle::get_key_rotation_status(ctx).await,
        "RotateKey" => lifecycle::rotate_key(ctx).await,
        "ScheduleKeyDeletion" => lifecycle::schedule_key_deletion(ctx).await,
        "CancelKeyDeletion" => lifecycle::cancel_key_deletion(ctx).await,
        "ArchiveKey" => lifecycle::archive_key(ctx).await,
        "CancelKeyArchive" => lifecycle::cancel_key_archive(ctx).await,
        "Encrypt" => crypto::encrypt(ctx).await,
        "Decrypt" => crypto::decrypt(ctx).await,
        "ReEncrypt" => crypto::re_encrypt(ctx).await,
        "GenerateDataKey" => crypto::generate_data_key(ctx).await,
        "GenerateRandom" => crypto::generate_random(ctx).await,
        "GetPublicKey" => asymmetric::get_public_key(ctx).await,
        "AsymmetricRsaDecrypt" => asymmetric::asymmetric_rsa_decrypt(ctx).await,
        "AsymmetricSm2Decrypt" => asymmetric::asymmetric_sm2_decrypt(ctx).await,
        "SignByAsymmetricKey" => asymmetric::sign_by_asymmetric_key(ctx).await,
        "VerifyByAsymmetricKey" => asymmetric::verify_by_asymmetric_key(ctx).await,
        "GetParametersForImport" => import::get_parameters_for_import(ctx).await,
        "ImportKeyMaterial" => import::import_key_material(ctx).await,
        "DeleteImportedKeyMaterial" => import::delete_imported_key_material(ctx).await,
        "GetServiceStatus" => service::get_service_status(ctx).await,
        "GetRegions" => service::get_regions(ctx).await,
        "ListAlgorithms" => service::list_algorithms(ctx).await,
        "ReplicateKey" => replica::replicate_key(ctx).await,
        other => Err(ApiError::new(
            "InvalidAction",
            format!("action `{other}` is not supported by raftkms (see docs/api.md)"),
        )),
    }
}

/// Builds a field map from a `json!` object.
fn fields(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl Ctx {
    /// The read gate for reads and crypto (linearizable unless the request chose stale).
    async fn gate(&self) -> Result<(), ApiError> {
        if !self.gated {
            self.node.read_barrier(self.consistency).await?;
        }
        Ok(())
    }

    /// A key of the caller in the request's region, from applied state.
    fn key(&self, key_id: &str) -> Result<KeyRecord, ApiError> {
        let state = self.node.state.read();
        state
            .registry
            .keys()
            .get(&self.region, self.uin, key_id)
            .cloned()
            .ok_or_else(|| ApiError::key_not_found(key_id))
    }

    /// Proposes a command; returns the proposer's time (seconds) stamped on it.
    async fn propose(&self, command: Command) -> Result<u64, ApiError> {
        let env = self.node.envelope(None, command);
        let at = env.issued_at_ms / 1000;
        match self.node.propose(env).await? {
            Outcome::Applied { .. } => Ok(at),
            Outcome::Rejected(e) => Err(e.into()),
            Outcome::NoCommand => Err(ApiError::new(
                "InternalError",
                "the command produced no outcome",
            )),
        }
    }

    /// Proposes one lifecycle operation on keys of the caller in the request's region; returns the
    /// proposer's time stamped on it.
    async fn propose_key_op(
        &self,
        key_ids: Vec<String>,
        op: crate::registry::key::KeyOp,
    ) -> Result<u64, ApiError> {
        self.propose(Command::KeyOp {
            region: self.region.clone(),
            uin: self.uin,
            key_ids,
            op,
        })
        .await
    }

    /// Unwraps one material version of a key.
    fn material(&self, key: &KeyRecord, version: u32) -> Result<Secret, ApiError> {
        let v = key.version(version).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.InvalidCiphertext",
                "the ciphertext names an unknown key version",
            )
        })?;
        Ok(self.node.root_key()?.unwrap(
            &material_aad(&key.key_id, version, key.owner_uin),
            &v.wrapped,
        )?)
    }
}

/// The KeyMetadata structure of DescribeKey(s) and ListKeyDetail. The sync fields describe
/// multi-region keys: `IsSyncReplica` 1 on a replica, `SourceRegion` the primary's region and
/// `SyncStatus` 1 (synchronised: replicas change in the same log entry as their primary).
fn key_metadata(k: &KeyRecord, replicas: &Replicas) -> Value {
    let (is_replica, source_region, sync_status, sync_time) =
        match replicas.role(&k.region, k.owner_uin, &k.key_id) {
            Role::Single => (0, String::new(), 0, 0),
            Role::Primary(_) => (0, k.region.clone(), 1, k.created_at),
            Role::Replica(set) => (1, set.primary_region.clone(), 1, k.created_at),
        };
    serde_json::json!({
        "KeyId": k.key_id,
        "Alias": k.alias,
        "CreateTime": k.created_at,
        "Description": k.description,
        "KeyState": k.state.as_str(),
        "KeyUsage": k.usage.as_str(),
        "Type": match k.usage.asymmetric_spec() {
            None => k.algorithm.tencent_type(),
            Some(crate::crypto::asymmetric::AsymmetricSpec::Sm2) => 4,
            Some(_) => 2,
        },
        "CreatorUin": k.owner_uin,
        "KeyRotationEnabled": k.rotation_enabled,
        "Owner": "user",
        "NextRotateTime": k.next_rotate_time,
        "DeletionDate": k.deletion_date,
        "Origin": k.origin.as_str(),
        "ValidTo": k.material_valid_to,
        "ResourceId": format!("creatorUin/{}/{}", k.owner_uin, k.key_id),
        "HsmClusterId": "",
        "RotateDays": k.rotate_days,
        "LastRotateTime": k.last_rotate_time,
        "IsSyncReplica": is_replica,
        "SourceRegion": source_region,
        "SyncStatus": sync_status,
        "SyncMessages": "",
        "SyncStartTime": sync_time,
        "SyncEndTime": sync_time,
        "SourceHsmClusterId": "",
        "CreatorUinString": k.owner_uin.to_string(),
    })
}

/// Refuses keys that cannot encrypt now.
fn usable_for_encrypt(k: &KeyRecord) -> Result<(), ApiError> {
    symmetric_only(k)?;
    material_not_expired(k)?;
    match k.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(ApiError::new(
            "ResourceUnavailable.CmkDisabled",
            format!("key {} is disabled", k.key_id),
        )),
        KeyState::Archived => Err(ApiError::new(
            "ResourceUnavailable.CmkArchived",
            format!("key {} is archived", k.key_id),
        )),
        other => Err(ApiError::new(
            "ResourceUnavailable.CmkStateNotSupport",
            format!("key {} is {} and cannot encrypt", k.key_id, other.as_str()),
        )),
    }
}

/// Imported material past its ValidTo is unusable at once, before the leader's expiry commits
/// (a read-side refusal only; the replicated state changes through the scheduler).
fn material_not_expired(k: &KeyRecord) -> Result<(), ApiError> {
    if k.material_valid_to != 0 && now_s() >= k.material_valid_to {
        return Err(ApiError::new(
            "ResourceUnavailable.CmkStateNotSupport",
            format!(
                "the imported material of key {} expired at {}",
                k.key_id, k.material_valid_to
            ),
        ));
    }
    Ok(())
}

/// Refuses asymmetric keys in the symmetric crypto actions.
fn symmetric_only(k: &KeyRecord) -> Result<(), ApiError> {
    if k.usage == crate::registry::key::KeyUsage::EncryptDecrypt {
        Ok(())
    } else {
        Err(ApiError::new(
            "UnsupportedOperation",
            format!(
                "key {} has usage {}; use the asymmetric actions",
                k.key_id,
                k.usage.as_str()
            ),
        ))
    }
}

/// Refuses keys that cannot decrypt now (archived keys still decrypt).
fn usable_for_decrypt(k: &KeyRecord) -> Result<(), ApiError> {
    symmetric_only(k)?;
    material_not_expired(k)?;
    match k.state {
        KeyState::Enabled | KeyState::Archived => Ok(()),
        KeyState::Disabled => Err(ApiError::new(
            "ResourceUnavailable.CmkDisabled",
            format!("key {} is disabled", k.key_id),
        )),
        other => Err(ApiError::new(
            "ResourceUnavailable.CmkStateNotSupport",
            format!("key {} is {} and cannot decrypt", k.key_id, other.as_str()),
        )),
    }
}

/// Seconds since the epoch on this node (for responses that report a time).
fn now_s() -> u64 {
    now_ms() / 1000
}
