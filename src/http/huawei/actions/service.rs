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
        "last_rotation_time": if status.last_rotate_time > 0 { (status.last_rotate_time.saturating_mul(1000)).to_string() } else { String::new() },
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

/// `GET /tags`: every tag key in use on the account's keys, with its values.
pub async fn list_tags(r: &Request<'_>) -> Result<Fields, HwError> {
    let mut by_key: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for d in super::keys::all_keys(r, crate::kms::keys::KeyFilter::default()).await? {
        for (k, v) in d.key.tags {
            by_key.entry(k).or_default().insert(v);
        }
    }
    let tags: Vec<Value> = by_key
        .into_iter()
        .map(|(k, vs)| json!({ "key": k, "values": vs.into_iter().collect::<Vec<_>>() }))
        .collect();
    Ok(fields(json!({ "tags": tags })))
}

/// `POST /resource_instances/action`: keys by tags. `action` `filter` (a page: `offset`, `limit`
/// 1–1000, default 10) or `count`; `tags` `[{key, values}]` all of which must match (no values:
/// any value); `matches` `[{key: "resource_name", value}]` (the alias contains the value).
pub async fn list_by_tags(r: &Request<'_>) -> Result<Fields, HwError> {
    let action = r.body.str("action")?;
    if action != "filter" && action != "count" {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.0404",
            format!("Invalid action `{action}`: filter or count."),
        ));
    }
    let mut tags = Vec::new();
    if let Some(list) = r.body.value("tags") {
        let items = list.as_array().ok_or_else(|| {
            HwError::new(StatusCode::BAD_REQUEST, "KMS.0412", "Invalid tag list.")
        })?;
        for t in items {
            let key = t.get("key").and_then(Value::as_str).ok_or_else(|| {
                HwError::new(StatusCode::BAD_REQUEST, "KMS.0406", "Invalid tag key.")
            })?;
            let values = match t.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(vs)) => vs
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        HwError::new(StatusCode::BAD_REQUEST, "KMS.0405", "Invalid tag value.")
                    })?,
                Some(_) => {
                    return Err(HwError::new(
                        StatusCode::BAD_REQUEST,
                        "KMS.0405",
                        "Invalid tag value.",
                    ))
                }
            };
            tags.push((key.to_string(), values));
        }
    }
    let mut name = String::new();
    if let Some(list) = r.body.value("matches") {
        for m in list.as_array().into_iter().flatten() {
            match (
                m.get("key").and_then(Value::as_str),
                m.get("value").and_then(Value::as_str),
            ) {
                (Some("resource_name"), Some(v)) if !v.is_empty() && v.chars().count() <= 255 => {
                    name = v.to_string()
                }
                _ => {
                    return Err(HwError::new(
                        StatusCode::BAD_REQUEST,
                        "KMS.0415",
                        "Invalid matches.",
                    ))
                }
            }
        }
    }
    let filter = crate::kms::keys::KeyFilter {
        tags,
        alias_or_id_contains: name,
        ..crate::kms::keys::KeyFilter::default()
    };
    let found = super::keys::all_keys(r, filter).await?;
    let total = found.len();
    if action == "count" {
        if r.body.value("offset").is_some() || r.body.value("limit").is_some() {
            return Err(HwError::new(
                StatusCode::BAD_REQUEST,
                "KMS.0418",
                "Offset is not required.",
            ));
        }
        return Ok(fields(json!({ "resources": [], "total_count": total })));
    }
    let limit = r.body.opt_u64("limit")?.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(HwError::new(
            StatusCode::BAD_REQUEST,
            "KMS.1601",
            "Invalid limit: 1 to 1000.",
        ));
    }
    let offset = r
        .body
        .opt_u64("offset")
        .map_err(|_| HwError::new(StatusCode::BAD_REQUEST, "KMS.0417", "Invalid offset."))?
        .unwrap_or(0);
    let resources: Vec<Value> = found
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .map(|d| {
            json!({
                "resource_id": d.key.key_id,
                "resource_detail": super::keys::key_details(d),
                "resource_name": d.key.alias,
                "tags": d.key.tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(fields(
        json!({ "resources": resources, "total_count": total }),
    ))
}
