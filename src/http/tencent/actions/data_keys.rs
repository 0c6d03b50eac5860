//! Hosted data keys: ImportDataKey, DescribeDataKey(s), ListDataKeys, ListDataKeyDetail,
//! Enable/DisableDataKey(s), GetDataKeyCiphertextBlob, GetDataKeyPlaintext,
//! UpdateDataKeyName/Description, Schedule/CancelDataKeyDeletion. (GenerateDataKey with
//! `IsHostedByKms=1` is in `crypto`.)

use serde_json::{json, Value};

use super::crypto::{new_data_key, plaintext_out, recipient};
use super::keys::{oldest_first, origin_filter, paging, tag_filters};
use super::{data_key_ids, fields, no_hsm_cluster, no_member_account, ApiError, Fields, Request};
use crate::crypto::Secret;
use crate::http::tencent::params::b64;
use crate::kms::data_keys::{DataKeyDescription, DataKeyFilter, ImportedDataKey};
use crate::registry::data_key::{self, DataKeyOp, DataKeyState};

/// The DataKeyMetadata structure.
fn metadata(d: &DataKeyDescription) -> Value {
    let k = &d.data_key;
    json!({
        "DataKeyId": k.data_key_id,
        "KeyId": k.key_id,
        "KeyName": d.key_alias.clone().unwrap_or_default(),
        "DataKeyName": k.name,
        "NumberOfBytes": k.number_of_bytes,
        "CreateTime": k.created_at,
        "Description": k.description,
        "KeyState": k.state.as_str(),
        "CreatorUin": k.owner_uin,
        "Owner": "user",
        "DeletionDate": k.deletion_date,
        "Origin": k.origin.as_str(),
        "HsmClusterId": "",
        "ResourceId": format!("creatorUin/{}/{}", k.owner_uin, k.data_key_id),
        "IsSyncReplica": 0,
        "SourceRegion": "",
        "SyncStatus": 0,
        "SyncMessages": "",
        "SyncStartTime": 0,
        "SyncEndTime": 0,
        "SourceHsmClusterId": "",
        "CreatorUinString": k.owner_uin.to_string(),
    })
}

/// `ImportKeyMaterial`, Base64.
fn material(r: &Request<'_>) -> Result<Vec<u8>, ApiError> {
    r.params.base64(
        "ImportKeyMaterial",
        "InvalidParameterValue.InvalidImportKeyMaterial",
    )
}

pub async fn import_data_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let new = new_data_key(r)?;
    let import_type = r.params.u64("ImportType")?;
    let key_id = r.params.opt_key_id("KeyId")?.filter(|s| !s.is_empty());
    let imported = match import_type {
        1 => ImportedDataKey::Ciphertext {
            blob: material(r)?,
            key_id,
        },
        2 => ImportedDataKey::Plaintext {
            data_key: Secret::new(material(r)?),
            key_id: key_id.ok_or_else(|| ApiError::missing("KeyId"))?,
        },
        _ => {
            return Err(ApiError::invalid(
                "ImportType",
                "must be 1 (a CiphertextBlob) or 2 (the data key in clear)",
            ))
        }
    };
    let tagged = !new.tags.is_empty();
    let (key_id, data_key_id) = r.kms.import_data_key(&r.scope, imported, new).await?;
    let mut out = fields(json!({ "KeyId": key_id, "DataKeyId": data_key_id }));
    if tagged {
        out.insert("TagCode".into(), json!(0));
        out.insert("TagMsg".into(), json!(""));
    }
    Ok(out)
}

pub async fn describe_data_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    no_member_account(r, "MemberAccount")?;
    let id = r.params.data_key_id("DataKeyId")?;
    let d = r.kms.describe_data_key(&r.scope, &id).await?;
    Ok(fields(json!({ "DataKeyMetadata": metadata(&d) })))
}

pub async fn describe_data_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    no_member_account(r, "MemberAccount")?;
    let ids = data_key_ids(r)?;
    let found = r.kms.describe_data_keys(&r.scope, ids).await?;
    let metas: Vec<Value> = found.iter().map(metadata).collect();
    Ok(fields(json!({ "DataKeyMetadatas": metas })))
}

/// `Role`: 0 (default) the user's data keys, 1 those cloud products made for the user.
fn granted(r: &Request<'_>) -> Result<bool, ApiError> {
    match r.params.opt_u64("Role")? {
        None | Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(_) => Err(ApiError::invalid("Role", "must be 0 or 1")),
    }
}

pub async fn list_data_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    let (offset, limit) = paging(r)?;
    no_hsm_cluster(r)?;
    let filter = DataKeyFilter {
        offset,
        limit,
        granted: granted(r)?,
        ..DataKeyFilter::default()
    };
    let page = r.kms.list_data_keys(&r.scope, filter).await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|d| json!({ "DataKeyId": d.data_key.data_key_id }))
        .collect();
    Ok(fields(
        json!({ "DataKeys": items, "TotalCount": page.total }),
    ))
}

pub async fn list_data_key_detail(r: &Request<'_>) -> Result<Fields, ApiError> {
    let p = &r.params;
    let (offset, limit) = paging(r)?;
    no_hsm_cluster(r)?;
    no_member_account(r, "MemberAccounts")?;
    let newest_last = oldest_first(r)?;
    let state = match p.opt_u64("KeyState")?.unwrap_or(0) {
        0 => None,
        1 => Some(DataKeyState::Enabled),
        2 => Some(DataKeyState::Disabled),
        3 => Some(DataKeyState::PendingDelete),
        _ => return Err(ApiError::invalid("KeyState", "must be 0 to 3")),
    };
    let origin = origin_filter(r)?;
    let length = match p.opt_u64("DataKeyLen")? {
        None | Some(0) => None,
        Some(n) if n as usize <= data_key::MAX_BYTES => Some(n as u32),
        Some(_) => {
            return Err(ApiError::invalid(
                "DataKeyLen",
                format!("must be 1 to {}", data_key::MAX_BYTES),
            ))
        }
    };
    let filter = DataKeyFilter {
        offset,
        limit,
        granted: granted(r)?,
        newest_last,
        state,
        name_or_id_contains: p.opt_str("SearchKeyAlias")?.unwrap_or_default(),
        origin,
        key_id: p.opt_key_id("KeyId")?.filter(|s| !s.is_empty()),
        length,
        tags: tag_filters(r)?,
    };
    let page = r.kms.list_data_keys(&r.scope, filter).await?;
    let metas: Vec<Value> = page.items.iter().map(metadata).collect();
    Ok(fields(
        json!({ "DataKeyMetadatas": metas, "TotalCount": page.total }),
    ))
}

/// One operation on the one data key named by `DataKeyId`.
async fn one(r: &Request<'_>, op: DataKeyOp) -> Result<Fields, ApiError> {
    no_member_account(r, "MemberAccount")?;
    let id = r.params.data_key_id("DataKeyId")?;
    r.kms.data_key_op(&r.scope, vec![id], op).await?;
    Ok(Fields::new())
}

/// One operation on every data key named by `DataKeyIds` (all or nothing).
async fn many(r: &Request<'_>, op: DataKeyOp) -> Result<Fields, ApiError> {
    no_member_account(r, "MemberAccount")?;
    let ids = data_key_ids(r)?;
    r.kms.data_key_op(&r.scope, ids, op).await?;
    Ok(Fields::new())
}

pub async fn enable_data_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    one(r, DataKeyOp::Enable).await
}

pub async fn disable_data_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    one(r, DataKeyOp::Disable).await
}

pub async fn enable_data_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    many(r, DataKeyOp::Enable).await
}

pub async fn disable_data_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    many(r, DataKeyOp::Disable).await
}

pub async fn update_data_key_name(r: &Request<'_>) -> Result<Fields, ApiError> {
    let name = r.params.str("DataKeyName")?;
    data_key::validate_name(&name)?;
    one(r, DataKeyOp::UpdateName { name }).await
}

pub async fn update_data_key_description(r: &Request<'_>) -> Result<Fields, ApiError> {
    let description = r.params.str("Description")?;
    data_key::validate_description(&description)?;
    one(r, DataKeyOp::UpdateDescription { description }).await
}

pub async fn schedule_data_key_deletion(r: &Request<'_>) -> Result<Fields, ApiError> {
    no_member_account(r, "MemberAccount")?;
    let days = super::lifecycle::pending_window_days(r)?;
    let id = r.params.data_key_id("DataKeyId")?;
    let date = r
        .kms
        .schedule_data_key_deletion(&r.scope, id.clone(), days)
        .await?;
    Ok(fields(json!({ "DataKeyId": id, "DeletionDate": date })))
}

pub async fn cancel_data_key_deletion(r: &Request<'_>) -> Result<Fields, ApiError> {
    no_member_account(r, "MemberAccount")?;
    let id = r.params.data_key_id("DataKeyId")?;
    r.kms.cancel_data_key_deletion(&r.scope, id.clone()).await?;
    Ok(fields(json!({ "DataKeyId": id })))
}

pub async fn get_data_key_ciphertext_blob(r: &Request<'_>) -> Result<Fields, ApiError> {
    no_member_account(r, "MemberAccount")?;
    let id = r.params.data_key_id("DataKeyId")?;
    let blob = r.kms.data_key_ciphertext(&r.scope, &id).await?;
    Ok(fields(json!({ "CiphertextBlob": b64(&blob) })))
}

pub async fn get_data_key_plaintext(r: &Request<'_>) -> Result<Fields, ApiError> {
    let id = r.params.data_key_id("DataKeyId")?;
    let to = recipient(r)?;
    let plaintext = r.kms.data_key_plaintext(&r.scope, &id).await?;
    Ok(fields(
        json!({ "Plaintext": plaintext_out(to.as_ref(), &plaintext)? }),
    ))
}
