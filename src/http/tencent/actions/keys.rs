//! CreateKey, DescribeKey(s), ListKeys, ListKeyDetail, UpdateAlias, UpdateKeyDescription.

use serde_json::{json, Value};

use super::{fields, key_ids, ApiError, Fields, Request};
use crate::crypto::asymmetric::AsymmetricSpec;
use crate::kms::keys::{CreateKey, KeyDescription, KeyFilter, Replication};
use crate::registry::key::{self, KeyState, KeyUsage, Origin};

fn usage(name: &str) -> Result<KeyUsage, ApiError> {
    KeyUsage::parse(name).ok_or_else(|| {
        ApiError::new(
            "InvalidParameterValue.InvalidKeyUsage",
            format!("unknown KeyUsage `{name}`"),
        )
    })
}

pub async fn create_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let p = &r.params;
    let alias = p.str("Alias")?;
    key::validate_alias(&alias)?;
    let description = p.opt_str("Description")?.unwrap_or_default();
    key::validate_description(&description)?;
    let usage = match p.opt_str("KeyUsage")?.as_deref() {
        None => KeyUsage::EncryptDecrypt,
        Some(u) => usage(u)?,
    };
    let origin = match p.opt_u64("Type")? {
        None | Some(1) => Origin::TencentKms,
        Some(2) => Origin::External,
        Some(t) => {
            return Err(ApiError::new(
                "InvalidParameterValue.InvalidType",
                format!("Type {t} is not 1 or 2"),
            ))
        }
    };
    let tags = p.tags("Tags")?;
    let req = CreateKey {
        alias,
        description,
        usage,
        origin,
        tags,
    };
    let k = r.kms.create_key(&r.scope, req).await?;
    let mut out = fields(json!({
        "KeyId": k.key_id,
        "Alias": k.alias,
        "CreateTime": k.created_at,
        "Description": k.description,
        "KeyState": k.state.as_str(),
        "KeyUsage": k.usage.as_str(),
    }));
    if k.tagged {
        out.insert("TagCode".into(), json!(0));
        out.insert("TagMsg".into(), json!(""));
    }
    Ok(out)
}

/// The KeyMetadata structure of DescribeKey(s) and ListKeyDetail. The sync fields describe
/// multi-region keys: `IsSyncReplica` 1 on a replica, `SourceRegion` the primary's region and
/// `SyncStatus` 1 (synchronised: replicas change in the same log entry as their primary).
fn key_metadata(d: &KeyDescription) -> Value {
    let k = &d.key;
    let (is_replica, source_region, sync_status, sync_time) = match &d.replication {
        Replication::Single => (0, String::new(), 0, 0),
        Replication::Primary => (0, k.region.clone(), 1, k.created_at),
        Replication::Replica { primary_region } => (1, primary_region.clone(), 1, k.created_at),
    };
    json!({
        "KeyId": k.key_id,
        "Alias": k.alias,
        "CreateTime": k.created_at,
        "Description": k.description,
        "KeyState": k.state.as_str(),
        "KeyUsage": k.usage.as_str(),
        "Type": match k.usage.asymmetric_spec() {
            None => k.algorithm.tencent_type(),
            Some(AsymmetricSpec::Sm2) => 4,
            Some(_) => 2,
        },
        "CreatorUin": k.owner_uin,
        "KeyRotationEnabled": k.rotation_enabled,
        "Owner": d.product.as_deref().unwrap_or("user"),
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

pub async fn describe_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let d = r.kms.describe_key(&r.scope, &key_id).await?;
    Ok(fields(json!({ "KeyMetadata": key_metadata(&d) })))
}

pub async fn describe_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    let ids = key_ids(r)?;
    let found = r.kms.describe_keys(&r.scope, ids).await?;
    let metas: Vec<Value> = found.iter().map(key_metadata).collect();
    Ok(fields(json!({ "KeyMetadatas": metas })))
}

/// `Offset` and `Limit` (default 10, at most 200).
pub(super) fn paging(r: &Request<'_>) -> Result<(usize, usize), ApiError> {
    let offset = r.params.opt_u64("Offset")?.unwrap_or(0) as usize;
    let limit = r.params.opt_u64("Limit")?.unwrap_or(10);
    if limit > 200 {
        return Err(ApiError::invalid("Limit", "must be at most 200"));
    }
    Ok((offset, limit as usize))
}

pub async fn list_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    let (offset, limit) = paging(r)?;
    let granted = r.params.opt_u64("Role")?.unwrap_or(0) != 0;
    let page = r.kms.list_keys(&r.scope, offset, limit, granted).await?;
    let keys: Vec<Value> = page.items.iter().map(|id| json!({ "KeyId": id })).collect();
    Ok(fields(json!({ "Keys": keys, "TotalCount": page.total })))
}

fn key_state_filter(n: u64) -> Result<Option<KeyState>, ApiError> {
    Ok(match n {
        0 => None,
        1 => Some(KeyState::Enabled),
        2 => Some(KeyState::Disabled),
        3 => Some(KeyState::PendingDelete),
        4 => Some(KeyState::PendingImport),
        5 => Some(KeyState::Archived),
        _ => return Err(ApiError::invalid("KeyState", "must be 0 to 5")),
    })
}

/// `TagFilters`: a list of `{TagKey, TagValue: [..]}`.
pub(super) fn tag_filters(r: &Request<'_>) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    match r.params.0.get("TagFilters") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|f| {
                let k = f
                    .get("TagKey")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::missing("TagFilters.TagKey"))?;
                let vals = f
                    .get("TagValue")
                    .and_then(Value::as_array)
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((k.to_string(), vals))
            })
            .collect(),
        Some(_) => Err(ApiError::invalid("TagFilters", "must be a list")),
    }
}

/// `Origin`: `TENCENT_KMS`, `EXTERNAL`, or `ALL` (or unset, or empty) for both.
pub(super) fn origin_filter(r: &Request<'_>) -> Result<Option<Origin>, ApiError> {
    match r.params.opt_str("Origin")?.as_deref() {
        None | Some("") | Some("ALL") => Ok(None),
        Some("TENCENT_KMS") => Ok(Some(Origin::TencentKms)),
        Some("EXTERNAL") => Ok(Some(Origin::External)),
        Some(o) => Err(ApiError::invalid(
            "Origin",
            format!("`{o}` is not TENCENT_KMS, EXTERNAL or ALL"),
        )),
    }
}

/// `OrderType`: 0 (default) newest first, 1 oldest first (true).
pub(super) fn oldest_first(r: &Request<'_>) -> Result<bool, ApiError> {
    match r.params.opt_u64("OrderType")?.unwrap_or(0) {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ApiError::invalid("OrderType", "must be 0 or 1")),
    }
}

fn key_filter(r: &Request<'_>) -> Result<KeyFilter, ApiError> {
    let p = &r.params;
    let (offset, limit) = paging(r)?;
    let granted = p.opt_u64("Role")?.unwrap_or(0) != 0;
    let newest_last = oldest_first(r)?;
    let state = key_state_filter(p.opt_u64("KeyState")?.unwrap_or(0))?;
    let alias_or_id_contains = p.opt_str("SearchKeyAlias")?.unwrap_or_default();
    let origin = origin_filter(r)?;
    // Unset means ENCRYPT_DECRYPT only (as Tencent); ALL means every usage.
    let usage = match p.opt_str("KeyUsage")?.as_deref() {
        None => Some(KeyUsage::EncryptDecrypt),
        Some("ALL") => None,
        Some(u) => Some(usage(u)?),
    };
    Ok(KeyFilter {
        offset,
        limit,
        granted,
        newest_last,
        state,
        alias_or_id_contains,
        origin,
        usage,
        tags: tag_filters(r)?,
    })
}

pub async fn list_key_detail(r: &Request<'_>) -> Result<Fields, ApiError> {
    let filter = key_filter(r)?;
    let page = r.kms.list_key_details(&r.scope, filter).await?;
    let metas: Vec<Value> = page.items.iter().map(key_metadata).collect();
    Ok(fields(
        json!({ "TotalCount": page.total, "KeyMetadatas": metas }),
    ))
}

pub async fn update_alias(r: &Request<'_>) -> Result<Fields, ApiError> {
    let alias = r.params.str("Alias")?;
    let key_id = r.params.key_id("KeyId")?;
    key::validate_alias(&alias)?;
    r.kms.update_alias(&r.scope, key_id, alias).await?;
    Ok(Fields::new())
}

pub async fn update_key_description(r: &Request<'_>) -> Result<Fields, ApiError> {
    let description = r.params.str("Description")?;
    let key_id = r.params.key_id("KeyId")?;
    key::validate_description(&description)?;
    r.kms
        .update_description(&r.scope, key_id, description)
        .await?;
    Ok(Fields::new())
}

/// `GetKeyDetails` (a raftkms extension, docs/api.md §5): the key's material versions, regions
/// and cloud-resource bindings.
pub async fn get_key_details(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let d = r.kms.key_details(&r.scope, &key_id).await?;
    Ok(fields(json!({
        "KeyId": key_id,
        "Versions": d.versions.iter().map(|(v, t)| json!({ "Version": v, "CreateTime": t })).collect::<Vec<_>>(),
        "PrimaryRegion": d.primary_region,
        "ReplicaRegions": d.replica_regions,
        "Bindings": d.bindings.iter().map(|(p, id)| json!({ "ProductId": p, "ResourceId": id })).collect::<Vec<_>>(),
    })))
}
