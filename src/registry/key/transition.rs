//! The lifecycle rules of one key: what each `KeyOp` does to a key record at the proposer's time,
//! or why the key's state forbids it. Pure, like the rest of the registry.

use super::{
    validate_description, KeyOp, KeyRecord, KeyState, KeyUsage, MaterialVersion, Origin, DAY,
};
use crate::registry::RegistryError;

use KeyState::*;

/// Mutates `k` for `op` at `now`, or says why the state forbids it. Returns the new alias for
/// `UpdateAlias`.
pub(super) fn transition(
    k: &mut KeyRecord,
    op: &KeyOp,
    now: u64,
) -> Result<Option<String>, RegistryError> {
    match op {
        KeyOp::Enable | KeyOp::Disable | KeyOp::Archive | KeyOp::CancelArchive => {
            switch_state(k, op)?
        }
        KeyOp::UpdateAlias { alias } => {
            not_pending_delete(k)?;
            k.alias = alias.clone();
            return Ok(Some(alias.clone()));
        }
        KeyOp::UpdateDescription { description } => {
            validate_description(description)?;
            not_pending_delete(k)?;
            k.description = description.clone();
        }
        KeyOp::EnableRotation { rotate_days } => enable_rotation(k, *rotate_days, now)?,
        KeyOp::DisableRotation => {
            not_pending_delete(k)?;
            k.rotation_enabled = false;
            k.next_rotate_time = 0;
        }
        KeyOp::Rotate {
            material,
            manual,
            min_manual_interval,
        } => rotate(k, material, *manual, *min_manual_interval, now)?,
        KeyOp::ScheduleDeletion { pending_days } => schedule_deletion(k, *pending_days, now)?,
        KeyOp::CancelDeletion { .. } => cancel_deletion(k)?,
        KeyOp::DeleteDue => {
            if k.state != PendingDelete || now < k.deletion_date {
                return Err(RegistryError::NotDue);
            }
        }
        KeyOp::SetImportParameters { session } => {
            importable(k)?;
            k.import = Some(session.clone());
        }
        KeyOp::ImportMaterial {
            token,
            material,
            fingerprint,
            valid_to,
        } => import_material(k, token, material, fingerprint, *valid_to, now)?,
        KeyOp::DeleteImportedMaterial => delete_imported_material(k)?,
        // Tags can change in every state (they describe the key, they do not use it).
        KeyOp::ModifyTags { set, remove } => {
            k.tags = crate::registry::tags::modify(&k.tags, set, remove)?;
        }
        KeyOp::ExpireMaterial => expire_material(k, now)?,
    }
    Ok(None)
}

fn not_pending_delete(k: &KeyRecord) -> Result<(), RegistryError> {
    if k.state == PendingDelete {
        return Err(RegistryError::StateNotSupported);
    }
    Ok(())
}

/// Enable, Disable, Archive and CancelArchive: moves between Enabled, Disabled and Archived.
fn switch_state(k: &mut KeyRecord, op: &KeyOp) -> Result<(), RegistryError> {
    k.state = match (op, k.state) {
        (KeyOp::Enable, Enabled | Disabled) => Enabled,
        (KeyOp::Disable, Enabled | Disabled) => Disabled,
        (KeyOp::Archive, Enabled) => Archived,
        (KeyOp::Archive, Disabled) => return Err(RegistryError::KeyDisabled),
        (KeyOp::CancelArchive, Archived) => Enabled,
        _ => return Err(RegistryError::StateNotSupported),
    };
    Ok(())
}

/// Only symmetric keys with KMS-made material rotate.
fn rotatable(k: &KeyRecord) -> Result<(), RegistryError> {
    if k.usage != KeyUsage::EncryptDecrypt {
        return Err(RegistryError::RotateNotSupported);
    }
    if k.origin == Origin::External {
        return Err(RegistryError::ExternalCannotRotate);
    }
    Ok(())
}

fn enable_rotation(k: &mut KeyRecord, rotate_days: u32, now: u64) -> Result<(), RegistryError> {
    if !(7..=365).contains(&rotate_days) {
        return Err(RegistryError::InvalidRotateDays);
    }
    rotatable(k)?;
    match k.state {
        Enabled | Disabled => {}
        _ => return Err(RegistryError::StateNotSupported),
    }
    k.rotation_enabled = true;
    k.rotate_days = rotate_days;
    k.next_rotate_time = now + u64::from(rotate_days) * DAY;
    Ok(())
}

/// A new material version, numbered right after the newest; a manual rotation is rate-limited,
/// an automatic one must be due.
fn rotate(
    k: &mut KeyRecord,
    material: &MaterialVersion,
    manual: bool,
    min_manual_interval: u64,
    now: u64,
) -> Result<(), RegistryError> {
    rotatable(k)?;
    match k.state {
        Enabled => {}
        Disabled => return Err(RegistryError::KeyDisabled),
        _ => return Err(RegistryError::StateNotSupported),
    }
    let next = k.versions.last().map(|v| v.version + 1).unwrap_or(1);
    if material.version != next {
        return Err(RegistryError::StaleRotation);
    }
    if manual {
        if k.last_manual_rotate > 0
            && now < k.last_manual_rotate.saturating_add(min_manual_interval)
        {
            return Err(RegistryError::RotateRateLimited);
        }
        k.last_manual_rotate = now;
    } else if !(k.rotation_enabled && k.next_rotate_time <= now) {
        return Err(RegistryError::NotDue);
    }
    k.versions.push(material.clone());
    k.last_rotate_time = now;
    if k.rotation_enabled {
        k.next_rotate_time = now + u64::from(k.rotate_days) * DAY;
    }
    Ok(())
}

fn schedule_deletion(k: &mut KeyRecord, pending_days: u32, now: u64) -> Result<(), RegistryError> {
    if !(7..=30).contains(&pending_days) {
        return Err(RegistryError::InvalidPendingWindow);
    }
    match k.state {
        Disabled | PendingImport => {}
        Enabled | Archived => return Err(RegistryError::ShouldBeDisabled),
        PendingDelete => return Err(RegistryError::StateNotSupported),
    }
    k.state = PendingDelete;
    k.deletion_date = now + u64::from(pending_days) * DAY;
    Ok(())
}

fn cancel_deletion(k: &mut KeyRecord) -> Result<(), RegistryError> {
    if k.state != PendingDelete {
        return Err(RegistryError::NotPendingDelete);
    }
    k.state = if k.versions.is_empty() {
        PendingImport
    } else {
        Disabled
    };
    k.deletion_date = 0;
    Ok(())
}

/// An EXTERNAL key that is enabled or waiting for material.
fn importable(k: &KeyRecord) -> Result<(), RegistryError> {
    if k.origin != Origin::External {
        return Err(RegistryError::NotExternal);
    }
    match k.state {
        Enabled | PendingImport => Ok(()),
        _ => Err(RegistryError::StateNotSupported),
    }
}

fn import_material(
    k: &mut KeyRecord,
    token: &str,
    material: &MaterialVersion,
    fingerprint: &[u8],
    valid_to: u64,
    now: u64,
) -> Result<(), RegistryError> {
    importable(k)?;
    let session = k.import.as_ref().ok_or(RegistryError::ImportTokenInvalid)?;
    if session.token != token {
        return Err(RegistryError::ImportTokenInvalid);
    }
    if now > session.valid_to {
        return Err(RegistryError::ImportTokenExpired);
    }
    if !k.material_fingerprint.is_empty() && k.material_fingerprint != fingerprint {
        return Err(RegistryError::MaterialNotMatch);
    }
    if valid_to != 0 && valid_to <= now {
        return Err(RegistryError::InvalidValidTo);
    }
    k.versions = vec![material.clone()];
    k.material_fingerprint = fingerprint.to_vec();
    k.material_valid_to = valid_to;
    k.state = Enabled;
    k.import = None;
    Ok(())
}

fn delete_imported_material(k: &mut KeyRecord) -> Result<(), RegistryError> {
    if k.origin != Origin::External {
        return Err(RegistryError::NotExternal);
    }
    match k.state {
        Enabled | PendingImport | Disabled => {}
        _ => return Err(RegistryError::StateNotSupported),
    }
    k.versions.clear();
    k.material_valid_to = 0;
    k.state = PendingImport;
    Ok(())
}

fn expire_material(k: &mut KeyRecord, now: u64) -> Result<(), RegistryError> {
    if k.origin != Origin::External
        || k.material_valid_to == 0
        || now < k.material_valid_to
        || k.versions.is_empty()
    {
        return Err(RegistryError::NotDue);
    }
    k.versions.clear();
    k.material_valid_to = 0;
    if matches!(k.state, Enabled | Disabled | Archived) {
        k.state = PendingImport;
    }
    Ok(())
}
