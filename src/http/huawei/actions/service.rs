//! Rotation (enable-key-rotation, disable-key-rotation, update-key-rotation-interval,
//! get-key-rotation-status, rotate-on-demand), quotas (user-instances, user-quotas) and the
//! tags of a key (`/{key_id}/tags…`).

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{Fields, HwError, Request};
use crate::http::huawei::fields;
use crate::http::huawei::params::check_key_id;
use crate::kms::tags::Tagged;
use crate::registry::tags;

/// Huawei's default rotation interval, in days.
const DEFAULT_INTERVAL: u32 = 365;

pub async fn enable_key_rotation(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let status = r.kms.rotation_status(&r.scope, &id).await?;
    if status.enabled {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.2901",
            "Key rotation is not disabled.",
        ));
    }
    let days = if status.rotate_days == 0 {
        DEFAULT_INTERVAL
    } else {
        status.rotate_days
    };
    r.kms.enable_rotation(&r.scope, id, days).await?;
    Ok(fields(json!({})))
}

pub async fn disable_key_rotation(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    r.kms.disable_rotation(&r.scope, id).await?;
    Ok(fields(json!({})))
}

/// `rotation_interval`: 30–365 days, on a key whose rotation is on.
pub async fn update_key_rotation_interval(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let days = r.body.u64("rotation_interval").map_err(|_| {
        HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.3001",
            "Invalid rotation_interval.",
        )
    })?;
    if !(30..=365).contains(&days) {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.3001",
            "Invalid rotation_interval: 30 to 365 days.",
        ));
    }
    if !r.kms.rotation_status(&r.scope, &id).await?.enabled {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0313",
            "Key rotation is not enabled.",
        ));
    }
    r.kms.enable_rotation(&r.scope, id, days as u32).await?;
    Ok(fields(json!({})))
}

/// `key_rotation_enabled` is a JSON boolean here (the SDK reads any string as true).
pub async fn get_key_rotation_status(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    let status = r.kms.rotation_status(&r.scope, &id).await?;
    let d = r.kms.describe_key(&r.scope, &id).await?;
    let rotations = d.key.versions.len().saturating_sub(1);
    Ok(fields(json!({
        "key_rotation_enabled": status.enabled,
        "rotation_interval": if status.rotate_days == 0 { DEFAULT_INTERVAL } else { status.rotate_days },
        "last_rotation_time": if status.last_rotate_time > 0 { (status.last_rotate_time * 1000).to_string() } else { String::new() },
        "number_of_rotations": rotations,
    })))
}

pub async fn rotate_on_demand(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = r.body.key_id()?;
    r.kms.rotate_key(&r.scope, id.clone()).await?;
    Ok(fields(json!({ "key_id": id })))
}

/// The caller's keys in the project's region.
pub async fn user_instances(r: &Request<'_>) -> Result<Fields, HwError> {
    let q = r.kms.service_status(&r.scope).await?;
    Ok(fields(json!({ "instance_num": q.used })))
}

/// The key quota (`kms.cmk-limit`) and its use. raftkms has no grants, so no `grant_per_CMK`.
pub async fn user_quotas(r: &Request<'_>) -> Result<Fields, HwError> {
    let q = r.kms.service_status(&r.scope).await?;
    Ok(fields(json!({ "quotas": { "resources": [
        { "type": "CMK", "used": q.used, "quota": q.limit },
    ]}})))
}

/// The key id of a tag path (`/{key_id}/tags…`).
fn tagged_key(r: &Request<'_>) -> Result<String, HwError> {
    let id = r.path.first().cloned().unwrap_or_default();
    check_key_id(&id)?;
    Ok(id)
}

fn tag_error(e: crate::registry::RegistryError) -> HwError {
    HwError::new(
        StatusCode::BAD_REQUEST,
        "KMS.0413",
        format!("Invalid tags: {e}."),
    )
}

/// A `TagItem` `{key, value}`.
fn tag_item(v: &Value) -> Result<(String, String), HwError> {
    let key = v.get("key").and_then(Value::as_str).ok_or_else(|| {
        HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0406",
            "Invalid tag key: every tag needs a key.",
        )
    })?;
    let value = match v.get("value") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.0405",
                "Invalid tag value.",
            ))
        }
    };
    tags::validate_key(key).map_err(tag_error)?;
    tags::validate_value(value).map_err(tag_error)?;
    Ok((key.to_string(), value.to_string()))
}

pub async fn show_tags(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = tagged_key(r)?;
    let t = r.kms.resource_tags(&r.scope, Tagged::Key(id)).await?;
    let items: Vec<Value> = t
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    Ok(fields(json!({ "tags": items, "existTagsNum": t.len() })))
}

/// One tag, added or replaced.
pub async fn create_tag(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = tagged_key(r)?;
    let tag = r.body.value("tag").ok_or_else(|| HwError::missing("tag"))?;
    let item = tag_item(tag)?;
    r.kms
        .modify_tags(&r.scope, Tagged::Key(id), vec![item], Vec::new())
        .await?;
    Ok(fields(json!({})))
}

/// `action` `create` (add or replace each) or `delete` (remove each key; values ignored).
pub async fn batch_tags(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = tagged_key(r)?;
    let list = match r.body.value("tags") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.0401",
                "Tag list cannot be empty.",
            ))
        }
        Some(_) => {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.0412",
                "Invalid tag list.",
            ))
        }
        None => return Err(HwError::missing("tags")),
    };
    let items = list.iter().map(tag_item).collect::<Result<Vec<_>, _>>()?;
    let (set, remove) = match r.body.str("action")?.as_str() {
        "create" => (items, Vec::new()),
        "delete" => (Vec::new(), items.into_iter().map(|(k, _)| k).collect()),
        other => {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.0404",
                format!("Invalid action `{other}`: create or delete."),
            ))
        }
    };
    r.kms
        .modify_tags(&r.scope, Tagged::Key(id), set, remove)
        .await?;
    Ok(fields(json!({})))
}

/// Removes one tag (`/{key_id}/tags/{key}`); a key without that tag is `KMS.0416`.
pub async fn delete_tag(r: &Request<'_>) -> Result<Fields, HwError> {
    let id = tagged_key(r)?;
    let key = r.path.get(2).cloned().unwrap_or_default();
    let current = r
        .kms
        .resource_tags(&r.scope, Tagged::Key(id.clone()))
        .await?;
    if !current.iter().any(|(k, _)| *k == key) {
        return Err(HwError::new(
            StatusCode::NOT_FOUND,
            "KMS.0416",
            format!(
                "Invalid tag ID: the key has no tag `{}`.",
                key.chars().take(64).collect::<String>()
            ),
        ));
    }
    r.kms
        .modify_tags(&r.scope, Tagged::Key(id), Vec::new(), vec![key])
        .await?;
    Ok(fields(json!({})))
}
