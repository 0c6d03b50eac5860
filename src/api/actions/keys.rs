//! CreateKey, DescribeKey(s), ListKeys, ListKeyDetail, UpdateAlias, UpdateKeyDescription.

use serde_json::{json, Value};

use super::{fields, key_metadata, ApiError, Ctx, Fields};
use crate::registry::key::{self, KeyOp, KeyRecord, KeyState, KeyUsage, Origin};
use crate::registry::Command;

const MAX_IDS: usize = 100;

pub async fn create_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let p = &ctx.params;
    let alias = p.str("Alias")?;
    key::validate_alias(&alias)?;
    let description = p.opt_str("Description")?.unwrap_or_default();
    key::validate_description(&description)?;
    let usage = match p.opt_str("KeyUsage")?.as_deref() {
        None => KeyUsage::EncryptDecrypt,
        Some(u) => KeyUsage::parse(u).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.InvalidKeyUsage",
                format!("unknown KeyUsage `{u}`"),
            )
        })?,
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
    let algorithm = ctx.node.config.symmetric_algorithm(&ctx.region);
    let key_id = uuid::Uuid::new_v4().to_string();
    let now = super::now_s();
    if origin == Origin::External && usage != KeyUsage::EncryptDecrypt {
        return Err(ApiError::new(
            "UnsupportedOperation",
            "only ENCRYPT_DECRYPT keys can have imported (EXTERNAL) material",
        ));
    }
    let (versions, public_key) = match (origin, usage.asymmetric_spec()) {
        (Origin::External, _) => (Vec::new(), Vec::new()),
        (Origin::TencentKms, None) => (
            vec![ctx.node.new_material(algorithm, &key_id, 1, ctx.uin)?],
            Vec::new(),
        ),
        (Origin::TencentKms, Some(spec)) => {
            // RSA key generation takes up to seconds: keep it off the async workers.
            let node = ctx.node.clone();
            let (kid, uin) = (key_id.clone(), ctx.uin);
            let (material, public) =
                tokio::task::spawn_blocking(move || node.new_key_pair(spec, &kid, uin))
                    .await
                    .map_err(|e| ApiError::new("InternalError", e.to_string()))??;
            (vec![material], public)
        }
    };
    let record = KeyRecord {
        key_id: key_id.clone(),
        region: ctx.region.clone(),
        owner_uin: ctx.uin,
        alias: alias.clone(),
        description: description.clone(),
        usage,
        algorithm,
        public_key,
        origin,
        state: if origin == Origin::External {
            KeyState::PendingImport
        } else {
            KeyState::Enabled
        },
        created_at: now,
        deletion_date: 0,
        rotation_enabled: false,
        rotate_days: 0,
        last_rotate_time: 0,
        next_rotate_time: 0,
        last_manual_rotate: 0,
        tags: tags.clone(),
        versions,
        import: None,
        material_valid_to: 0,
        material_fingerprint: Vec::new(),
    };
    let state = record.state;
    ctx.propose(Command::CreateKey {
        key: Box::new(record),
        cmk_limit: ctx.node.config.kms.cmk_limit,
    })
    .await?;
    let mut out = fields(json!({
        "KeyId": key_id,
        "Alias": alias,
        "CreateTime": now,
        "Description": description,
        "KeyState": state.as_str(),
        "KeyUsage": usage.as_str(),
    }));
    if !tags.is_empty() {
        out.insert("TagCode".into(), json!(0));
        out.insert("TagMsg".into(), json!(""));
    }
    Ok(out)
}

pub async fn describe_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    let state = ctx.node.state.read();
    let meta = key_metadata(&k, state.registry.replicas());
    Ok(fields(json!({ "KeyMetadata": meta })))
}

pub async fn describe_keys(ctx: Ctx) -> Result<Fields, ApiError> {
    let ids = ctx.params.str_list("KeyIds")?;
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(ApiError::invalid(
            "KeyIds",
            format!("must list 1 to {MAX_IDS} KeyIds"),
        ));
    }
    ctx.gate().await?;
    let state = ctx.node.state.read();
    let metas: Vec<Value> = ids
        .iter()
        .filter_map(|id| state.registry.keys().get(&ctx.region, ctx.uin, id))
        .map(|k| key_metadata(k, state.registry.replicas()))
        .collect();
    Ok(fields(json!({ "KeyMetadatas": metas })))
}

fn paging(ctx: &Ctx) -> Result<(usize, usize), ApiError> {
    let offset = ctx.params.opt_u64("Offset")?.unwrap_or(0) as usize;
    let limit = ctx.params.opt_u64("Limit")?.unwrap_or(10);
    if limit > 200 {
        return Err(ApiError::invalid("Limit", "must be at most 200"));
    }
    Ok((offset, limit as usize))
}

pub async fn list_keys(ctx: Ctx) -> Result<Fields, ApiError> {
    let (offset, limit) = paging(&ctx)?;
    let role = ctx.params.opt_u64("Role")?.unwrap_or(0);
    ctx.gate().await?;
    let state = ctx.node.state.read();
    let keys: Vec<&KeyRecord> = if role == 0 {
        state
            .registry
            .keys()
            .list(&ctx.region, ctx.uin)
            .into_iter()
            .filter(|k| {
                matches!(
                    k.state,
                    KeyState::Enabled | KeyState::Disabled | KeyState::PendingImport
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let page: Vec<Value> = keys
        .iter()
        .skip(offset)
        .take(limit)
        .map(|k| json!({ "KeyId": k.key_id }))
        .collect();
    Ok(fields(json!({ "Keys": page, "TotalCount": keys.len() })))
}

pub async fn list_key_detail(ctx: Ctx) -> Result<Fields, ApiError> {
    let p = &ctx.params;
    let (offset, limit) = paging(&ctx)?;
    let role = p.opt_u64("Role")?.unwrap_or(0);
    let ascending = match p.opt_u64("OrderType")?.unwrap_or(0) {
        0 => false,
        1 => true,
        _ => return Err(ApiError::invalid("OrderType", "must be 0 or 1")),
    };
    let state_filter = match p.opt_u64("KeyState")?.unwrap_or(0) {
        0 => None,
        1 => Some(KeyState::Enabled),
        2 => Some(KeyState::Disabled),
        3 => Some(KeyState::PendingDelete),
        4 => Some(KeyState::PendingImport),
        5 => Some(KeyState::Archived),
        _ => return Err(ApiError::invalid("KeyState", "must be 0 to 5")),
    };
    let search = p.opt_str("SearchKeyAlias")?.unwrap_or_default();
    let origin = match p.opt_str("Origin")?.as_deref() {
        None | Some("ALL") => None,
        Some("TENCENT_KMS") => Some(Origin::TencentKms),
        Some("EXTERNAL") => Some(Origin::External),
        Some(o) => {
            return Err(ApiError::invalid(
                "Origin",
                format!("`{o}` is not TENCENT_KMS, EXTERNAL or ALL"),
            ))
        }
    };
    // Unset means ENCRYPT_DECRYPT only (as Tencent); ALL means every usage.
    let usage = match p.opt_str("KeyUsage")?.as_deref() {
        None => Some(KeyUsage::EncryptDecrypt),
        Some("ALL") => None,
        Some(u) => Some(KeyUsage::parse(u).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue.InvalidKeyUsage",
                format!("unknown KeyUsage `{u}`"),
            )
        })?),
    };
    let tag_filters: Vec<(String, Vec<String>)> = match p.0.get("TagFilters") {
        None | Some(Value::Null) => Vec::new(),
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
            .collect::<Result<_, ApiError>>()?,
        Some(_) => return Err(ApiError::invalid("TagFilters", "must be a list")),
    };
    ctx.gate().await?;
    let state = ctx.node.state.read();
    let mut keys: Vec<&KeyRecord> = if role == 0 {
        state.registry.keys().list(&ctx.region, ctx.uin)
    } else {
        Vec::new()
    };
    keys.retain(|k| {
        state_filter.is_none_or(|s| k.state == s)
            && origin.is_none_or(|o| k.origin == o)
            && usage.is_none_or(|u| k.usage == u)
            && (search.is_empty() || k.alias.contains(&search) || k.key_id.contains(&search))
            && tag_filters.iter().all(|(tk, tv)| {
                k.tags
                    .iter()
                    .any(|(k2, v2)| k2 == tk && (tv.is_empty() || tv.contains(v2)))
            })
    });
    if ascending {
        keys.reverse();
    }
    let page: Vec<Value> = keys
        .iter()
        .skip(offset)
        .take(limit)
        .map(|k| key_metadata(k, state.registry.replicas()))
        .collect();
    Ok(fields(
        json!({ "TotalCount": keys.len(), "KeyMetadatas": page }),
    ))
}

pub async fn update_alias(ctx: Ctx) -> Result<Fields, ApiError> {
    let alias = ctx.params.str("Alias")?;
    let key_id = ctx.params.str("KeyId")?;
    key::validate_alias(&alias)?;
    ctx.propose_key_op(vec![key_id], KeyOp::UpdateAlias { alias })
        .await?;
    Ok(Fields::new())
}

pub async fn update_key_description(ctx: Ctx) -> Result<Fields, ApiError> {
    let description = ctx.params.str("Description")?;
    let key_id = ctx.params.str("KeyId")?;
    key::validate_description(&description)?;
    let op = KeyOp::UpdateDescription { description };
    ctx.propose_key_op(vec![key_id], op).await?;
    Ok(Fields::new())
}
