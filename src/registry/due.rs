//! What the leader's scheduler has to propose at a given time: keys whose pending deletion is
//! due, whose imported material has expired, or whose automatic rotation is due.
//!
//! Pure: reads the registry and the leader's clock reading `now_s` (seconds), nothing else. Apply
//! re-checks every one of these at the proposal's stamped time, so a stale answer is harmless.

use super::data_key::DataKeyState;
use super::key::KeyState;
use super::replica::Role;
use super::Registry;
use crate::crypto::SymmetricAlgorithm;

/// What is due for one key. When several are, the first in this order wins: deletion, then
/// material expiry, then rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueAction {
    /// The pending deletion window has ended: propose `KeyOp::DeleteDue`.
    Delete,
    /// Imported material reached its ValidTo: propose `KeyOp::ExpireMaterial`.
    ExpireMaterial,
    /// Automatic rotation is due: propose `KeyOp::Rotate` (not manual) with new material of
    /// `algorithm` as version `next_version`.
    Rotate {
        algorithm: SymmetricAlgorithm,
        next_version: u32,
    },
}

impl DueAction {
    /// A short name for logs.
    pub fn what(&self) -> &'static str {
        match self {
            DueAction::Delete => "deletion",
            DueAction::ExpireMaterial => "material expiry",
            DueAction::Rotate { .. } => "rotation",
        }
    }
}

/// One key with something due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueWork {
    pub region: String,
    pub uin: u64,
    pub key_id: String,
    pub action: DueAction,
}

/// One hosted data key whose pending deletion is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDataKey {
    pub region: String,
    pub uin: u64,
    pub data_key_id: String,
}

/// The first `max` hosted data keys pending deletion whose date has come at `now_s`.
pub fn due_data_keys(registry: &Registry, now_s: u64, max: usize) -> Vec<DueDataKey> {
    registry
        .data_keys()
        .all()
        .filter(|d| d.state == DataKeyState::PendingDelete && d.deletion_date <= now_s)
        .take(max)
        .map(|d| DueDataKey {
            region: d.region.clone(),
            uin: d.owner_uin,
            data_key_id: d.data_key_id.clone(),
        })
        .collect()
}

/// The first `max` keys with something due at `now_s`, in key order (region, then KeyId):
/// - `Delete`: PendingDelete and `deletion_date <= now_s`;
/// - `ExpireMaterial`: `material_valid_to` set (non-zero), `<= now_s`, and material present;
/// - `Rotate`: Enabled, rotation enabled, `next_rotate_time <= now_s`, and not a replica (a
///   replica's material follows its primary, so only the primary is rotated).
pub fn due_work(registry: &Registry, now_s: u64, max: usize) -> Vec<DueWork> {
    registry
        .keys()
        .all()
        .filter_map(|k| {
            let action = if k.state == KeyState::PendingDelete && k.deletion_date <= now_s {
                DueAction::Delete
            } else if k.material_valid_to != 0
                && k.material_valid_to <= now_s
                && !k.versions.is_empty()
                && !registry
                    .cloud_bindings()
                    .is_bound(&k.region, k.owner_uin, &k.key_id)
            {
                DueAction::ExpireMaterial
            } else if k.state == KeyState::Enabled
                && k.rotation_enabled
                && k.next_rotate_time <= now_s
                && !matches!(
                    registry.replicas().role(&k.region, k.owner_uin, &k.key_id),
                    Role::Replica(_)
                )
            {
                DueAction::Rotate {
                    algorithm: k.algorithm,
                    next_version: k.versions.last().map_or(1, |v| v.version + 1),
                }
            } else {
                return None;
            };
            Some(DueWork {
                region: k.region.clone(),
                uin: k.owner_uin,
                key_id: k.key_id.clone(),
                action,
            })
        })
        .take(max)
        .collect()
}
