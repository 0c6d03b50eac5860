//! Enable/Disable(s), rotation, scheduled deletion and archiving.

use serde_json::json;

use super::{fields, key_ids, ApiError, Fields, Request};

pub async fn enable_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.enable_keys(&r.scope, vec![key_id]).await?;
    Ok(Fields::new())
}

pub async fn disable_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.disable_keys(&r.scope, vec![key_id]).await?;
    Ok(Fields::new())
}

pub async fn enable_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    r.kms.enable_keys(&r.scope, key_ids(r)?).await?;
    Ok(Fields::new())
}

pub async fn disable_keys(r: &Request<'_>) -> Result<Fields, ApiError> {
    r.kms.disable_keys(&r.scope, key_ids(r)?).await?;
    Ok(Fields::new())
}

pub async fn enable_key_rotation(r: &Request<'_>) -> Result<Fields, ApiError> {
    let days = r.params.opt_u64("RotateDays")?.unwrap_or(365);
    if !(7..=365).contains(&days) {
        return Err(ApiError::invalid("RotateDays", "must be between 7 and 365"));
    }
    let key_id = r.params.key_id("KeyId")?;
    r.kms.enable_rotation(&r.scope, key_id, days as u32).await?;
    Ok(Fields::new())
}

pub async fn disable_key_rotation(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.disable_rotation(&r.scope, key_id).await?;
    Ok(Fields::new())
}

pub async fn get_key_rotation_status(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    let s = r.kms.rotation_status(&r.scope, &key_id).await?;
    Ok(fields(json!({
        "KeyRotationEnabled": s.enabled,
        "NextRotateTime": s.next_rotate_time,
        "RotateDays": s.rotate_days,
        "LastRotateTime": s.last_rotate_time,
        "IsUserCreatedCMK": true,
    })))
}

pub async fn rotate_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.rotate_key(&r.scope, key_id).await?;
    Ok(Fields::new())
}

/// `PendingWindowInDays`: 7 to 30 (ScheduleKeyDeletion, ScheduleDataKeyDeletion).
pub(super) fn pending_window_days(r: &Request<'_>) -> Result<u32, ApiError> {
    let days = r.params.u64("PendingWindowInDays")?;
    if !(7..=30).contains(&days) {
        return Err(ApiError::new(
            "InvalidParameter.InvalidPendingWindowInDays",
            "PendingWindowInDays must be between 7 and 30",
        ));
    }
    Ok(days as u32)
}

pub async fn schedule_key_deletion(r: &Request<'_>) -> Result<Fields, ApiError> {
    let days = pending_window_days(r)?;
    let key_id = r.params.key_id("KeyId")?;
    let date = r
        .kms
        .schedule_deletion(&r.scope, key_id.clone(), days)
        .await?;
    Ok(fields(json!({ "KeyId": key_id, "DeletionDate": date })))
}

pub async fn cancel_key_deletion(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.cancel_deletion(&r.scope, key_id.clone()).await?;
    Ok(fields(json!({ "KeyId": key_id })))
}

pub async fn archive_key(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.archive_key(&r.scope, key_id).await?;
    Ok(Fields::new())
}

pub async fn cancel_key_archive(r: &Request<'_>) -> Result<Fields, ApiError> {
    let key_id = r.params.key_id("KeyId")?;
    r.kms.cancel_archive(&r.scope, key_id).await?;
    Ok(Fields::new())
}
