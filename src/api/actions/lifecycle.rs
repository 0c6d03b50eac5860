//! Enable/Disable(s), rotation, scheduled deletion and archiving: each a replicated KeyOp.

use serde_json::json;

use super::{fields, ApiError, Ctx, Fields};
use crate::registry::key::KeyOp;

const MAX_IDS: usize = 100;

async fn one(ctx: &Ctx, op: KeyOp) -> Result<(String, u64), ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    let at = ctx.propose_key_op(vec![key_id.clone()], op).await?;
    Ok((key_id, at))
}

async fn many(ctx: &Ctx, op: KeyOp) -> Result<Fields, ApiError> {
    let key_ids = ctx.params.str_list("KeyIds")?;
    if key_ids.is_empty() || key_ids.len() > MAX_IDS {
        return Err(ApiError::invalid(
            "KeyIds",
            format!("must list 1 to {MAX_IDS} KeyIds"),
        ));
    }
    ctx.propose_key_op(key_ids, op).await?;
    Ok(Fields::new())
}

pub async fn enable_key(ctx: Ctx) -> Result<Fields, ApiError> {
    one(&ctx, KeyOp::Enable).await.map(|_| Fields::new())
}

pub async fn disable_key(ctx: Ctx) -> Result<Fields, ApiError> {
    one(&ctx, KeyOp::Disable).await.map(|_| Fields::new())
}

pub async fn enable_keys(ctx: Ctx) -> Result<Fields, ApiError> {
    many(&ctx, KeyOp::Enable).await
}

pub async fn disable_keys(ctx: Ctx) -> Result<Fields, ApiError> {
    many(&ctx, KeyOp::Disable).await
}

pub async fn enable_key_rotation(ctx: Ctx) -> Result<Fields, ApiError> {
    let days = ctx.params.opt_u64("RotateDays")?.unwrap_or(365);
    if !(7..=365).contains(&days) {
        return Err(ApiError::invalid("RotateDays", "must be between 7 and 365"));
    }
    one(
        &ctx,
        KeyOp::EnableRotation {
            rotate_days: days as u32,
        },
    )
    .await
    .map(|_| Fields::new())
}

pub async fn disable_key_rotation(ctx: Ctx) -> Result<Fields, ApiError> {
    one(&ctx, KeyOp::DisableRotation)
        .await
        .map(|_| Fields::new())
}

pub async fn get_key_rotation_status(ctx: Ctx) -> Result<Fields, ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    Ok(fields(json!({
        "KeyRotationEnabled": k.rotation_enabled,
        "NextRotateTime": k.next_rotate_time,
        "RotateDays": k.rotate_days,
        "LastRotateTime": k.last_rotate_time,
        "IsUserCreatedCMK": true,
    })))
}

pub async fn rotate_key(ctx: Ctx) -> Result<Fields, ApiError> {
    let key_id = ctx.params.str("KeyId")?;
    // Read the current version through the gate so the new one is numbered after it; a race
    // with another rotation is caught in apply (the version must be exactly current + 1).
    ctx.gate().await?;
    let k = ctx.key(&key_id)?;
    if k.usage != crate::registry::key::KeyUsage::EncryptDecrypt {
        return Err(crate::registry::RegistryError::RotateNotSupported.into());
    }
    let next = k.versions.last().map(|v| v.version + 1).unwrap_or(1);
    let material = ctx
        .node
        .new_material(k.algorithm, &k.key_id, next, k.owner_uin)?;
    let op = KeyOp::Rotate {
        material,
        manual: true,
        min_manual_interval: ctx.node.config.kms.manual_rotation_interval_secs,
    };
    ctx.propose_key_op(vec![key_id], op).await?;
    Ok(Fields::new())
}

pub async fn schedule_key_deletion(ctx: Ctx) -> Result<Fields, ApiError> {
    let days = ctx.params.u64("PendingWindowInDays")?;
    if !(7..=30).contains(&days) {
        return Err(ApiError::new(
            "InvalidParameter.InvalidPendingWindowInDays",
            "PendingWindowInDays must be between 7 and 30",
        ));
    }
    let (key_id, at) = one(
        &ctx,
        KeyOp::ScheduleDeletion {
            pending_days: days as u32,
        },
    )
    .await?;
    // The date is the leader's (a forwarded write is stamped with the leader's clock): read it
    // back once this node has applied the write, rather than computing it from this node's clock.
    let applied = ctx
        .node
        .read_barrier(crate::config::Consistency::Linearizable)
        .await
        .ok()
        .and_then(|_| ctx.key(&key_id).ok())
        .filter(|k| k.deletion_date != 0);
    let date = applied.map_or(at + days * 86_400, |k| k.deletion_date);
    Ok(fields(json!({ "KeyId": key_id, "DeletionDate": date })))
}

pub async fn cancel_key_deletion(ctx: Ctx) -> Result<Fields, ApiError> {
    let (key_id, _) = one(
        &ctx,
        KeyOp::CancelDeletion {
            cmk_limit: ctx.node.config.kms.cmk_limit,
        },
    )
    .await?;
    Ok(fields(json!({ "KeyId": key_id })))
}

pub async fn archive_key(ctx: Ctx) -> Result<Fields, ApiError> {
    one(&ctx, KeyOp::Archive).await.map(|_| Fields::new())
}

pub async fn cancel_key_archive(ctx: Ctx) -> Result<Fields, ApiError> {
    one(&ctx, KeyOp::CancelArchive).await.map(|_| Fields::new())
}
