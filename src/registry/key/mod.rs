//! Customer master keys: metadata, wrapped material versions, alias index, and the lifecycle
//! rules (which operation is allowed in which state) exactly as apply enforces them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::counts::{regional_storage_key, RegionCounts};
use super::root_keys::{RewrapItem, RewrapTarget, RootUses};
use super::{Change, RegistryError};
use crate::codec::{self, CodecError};
use crate::crypto::asymmetric::AsymmetricSpec;
use crate::crypto::SymmetricAlgorithm;

mod transition;

use transition::transition;

pub const PREFIX: &[u8] = b"k/";
const DAY: u64 = 86_400;

/// Key states, as Tencent names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDelete,
    PendingImport,
    Archived,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDelete => "PendingDelete",
            KeyState::PendingImport => "PendingImport",
            KeyState::Archived => "Archived",
        }
    }
}

/// What a key is for. Variants are only appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeyUsage {
    EncryptDecrypt,
    AsymmetricDecryptRsa2048,
    AsymmetricDecryptSm2,
    AsymmetricSignVerifySm2,
    AsymmetricSignVerifyEcc,
    AsymmetricSignVerifyRsa2048,
    AsymmetricSignVerifyEcdsa384,
    AsymmetricSignVerifyRsa3072,
    AsymmetricSignVerifyRsa4096,
    AsymmetricSignVerifySecp256k1,
    /// ML-DSA-65 (cluster feature level 2).
    AsymmetricSignVerifyDilithium,
    /// ML-KEM-768 with AES-256-GCM (cluster feature level 2).
    AsymmetricEncryptDecryptKyberAes,
}

impl KeyUsage {
    /// Every usage, in ListAlgorithms order.
    pub const ALL: [KeyUsage; 12] = [
        KeyUsage::EncryptDecrypt,
        KeyUsage::AsymmetricDecryptRsa2048,
        KeyUsage::AsymmetricDecryptSm2,
        KeyUsage::AsymmetricSignVerifySm2,
        KeyUsage::AsymmetricSignVerifyEcc,
        KeyUsage::AsymmetricSignVerifyRsa2048,
        KeyUsage::AsymmetricSignVerifyEcdsa384,
        KeyUsage::AsymmetricSignVerifyRsa3072,
        KeyUsage::AsymmetricSignVerifyRsa4096,
        KeyUsage::AsymmetricSignVerifySecp256k1,
        KeyUsage::AsymmetricSignVerifyDilithium,
        KeyUsage::AsymmetricEncryptDecryptKyberAes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyUsage::EncryptDecrypt => "ENCRYPT_DECRYPT",
            KeyUsage::AsymmetricDecryptRsa2048 => "ASYMMETRIC_DECRYPT_RSA_2048",
            KeyUsage::AsymmetricDecryptSm2 => "ASYMMETRIC_DECRYPT_SM2",
            KeyUsage::AsymmetricSignVerifySm2 => "ASYMMETRIC_SIGN_VERIFY_SM2",
            KeyUsage::AsymmetricSignVerifyEcc => "ASYMMETRIC_SIGN_VERIFY_ECC",
            KeyUsage::AsymmetricSignVerifyRsa2048 => "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
            KeyUsage::AsymmetricSignVerifyEcdsa384 => "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
            KeyUsage::AsymmetricSignVerifyRsa3072 => "ASYMMETRIC_SIGN_VERIFY_RSA_3072",
            KeyUsage::AsymmetricSignVerifyRsa4096 => "ASYMMETRIC_SIGN_VERIFY_RSA_4096",
            KeyUsage::AsymmetricSignVerifySecp256k1 => "ASYMMETRIC_SIGN_VERIFY_SECP256K1",
            KeyUsage::AsymmetricSignVerifyDilithium => "ASYMMETRIC_SIGN_VERIFY_DILITHIUM",
            // Mixed case exactly as Tencent publishes it.
            KeyUsage::AsymmetricEncryptDecryptKyberAes => "ASYMMETRIC_Encrypt_Decrypt_Kyber_AES",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        KeyUsage::ALL.into_iter().find(|u| u.as_str() == s)
    }

    /// The key pair kind of an asymmetric usage (None for symmetric keys).
    pub fn asymmetric_spec(self) -> Option<AsymmetricSpec> {
        Some(match self {
            KeyUsage::EncryptDecrypt => return None,
            KeyUsage::AsymmetricDecryptRsa2048 | KeyUsage::AsymmetricSignVerifyRsa2048 => {
                AsymmetricSpec::Rsa2048
            }
            KeyUsage::AsymmetricDecryptSm2 | KeyUsage::AsymmetricSignVerifySm2 => {
                AsymmetricSpec::Sm2
            }
            KeyUsage::AsymmetricSignVerifyEcc => AsymmetricSpec::EccP256,
            KeyUsage::AsymmetricSignVerifyEcdsa384 => AsymmetricSpec::EccP384,
            KeyUsage::AsymmetricSignVerifyRsa3072 => AsymmetricSpec::Rsa3072,
            KeyUsage::AsymmetricSignVerifyRsa4096 => AsymmetricSpec::Rsa4096,
            KeyUsage::AsymmetricSignVerifySecp256k1 => AsymmetricSpec::Secp256k1,
            KeyUsage::AsymmetricSignVerifyDilithium => AsymmetricSpec::MlDsa65,
            KeyUsage::AsymmetricEncryptDecryptKyberAes => AsymmetricSpec::MlKem768,
        })
    }

    /// Post-quantum keys: the PostQuantumCrypto* actions only (cluster feature level 2).
    pub fn is_post_quantum(self) -> bool {
        matches!(
            self,
            KeyUsage::AsymmetricSignVerifyDilithium | KeyUsage::AsymmetricEncryptDecryptKyberAes
        )
    }

    pub fn is_sign_verify(self) -> bool {
        self.as_str().starts_with("ASYMMETRIC_SIGN_VERIFY_")
    }

    /// Asymmetric encryption keys (ListAlgorithms' AsymmetricAlgorithms).
    pub fn is_asymmetric_decrypt(self) -> bool {
        self.as_str().starts_with("ASYMMETRIC_DECRYPT_")
            || self == KeyUsage::AsymmetricEncryptDecryptKyberAes
    }
}

/// Where the material came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Origin {
    TencentKms,
    External,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::TencentKms => "TENCENT_KMS",
            Origin::External => "EXTERNAL",
        }
    }
}

/// One version of a key's material, wrapped by the root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialVersion {
    pub version: u32,
    pub created_at: u64,
    /// `RootKey::wrap(material_aad(..), material)`.
    pub wrapped: Vec<u8>,
}

/// The AAD binding wrapped material to its key, version and owner (not the region: replicas in
/// other regions share the material).
pub fn material_aad(key_id: &str, version: u32, uin: u64) -> Vec<u8> {
    format!("raftkms/material/{uin}/{key_id}/{version}").into_bytes()
}

/// A customer master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub region: String,
    pub owner_uin: u64,
    pub alias: String,
    pub description: String,
    pub usage: KeyUsage,
    /// The symmetric algorithm (meaningful for `ENCRYPT_DECRYPT` keys only).
    pub algorithm: SymmetricAlgorithm,
    /// SubjectPublicKeyInfo DER of an asymmetric key (empty for symmetric keys); the private key
    /// is the wrapped material.
    pub public_key: Vec<u8>,
    pub origin: Origin,
    pub state: KeyState,
    pub created_at: u64,
    /// When a pending deletion happens (0 unless PendingDelete).
    pub deletion_date: u64,
    pub rotation_enabled: bool,
    pub rotate_days: u32,
    pub last_rotate_time: u64,
    pub next_rotate_time: u64,
    pub last_manual_rotate: u64,
    pub tags: Vec<(String, String)>,
    pub versions: Vec<MaterialVersion>,
    /// The pending BYOK import parameters (EXTERNAL keys); a newer request replaces them.
    pub import: Option<ImportSession>,
    /// When imported material expires (0 = never).
    pub material_valid_to: u64,
    /// Key check value of imported material: SHA-256 over a fixed label and the material, so a
    /// re-import can be checked for identical material without storing it in clear.
    pub material_fingerprint: Vec<u8>,
}

/// Wrapping algorithms of GetParametersForImport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WrappingAlgorithm {
    RsaesPkcs1V15,
    RsaesOaepSha1,
    RsaesOaepSha256,
}

impl WrappingAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RSAES_PKCS1_V1_5" => WrappingAlgorithm::RsaesPkcs1V15,
            "RSAES_OAEP_SHA_1" => WrappingAlgorithm::RsaesOaepSha1,
            "RSAES_OAEP_SHA_256" => WrappingAlgorithm::RsaesOaepSha256,
            _ => return None,
        })
    }
}

/// One GetParametersForImport: a fresh RSA-2048 wrapping key pair and its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSession {
    pub token: String,
    pub algorithm: WrappingAlgorithm,
    /// SubjectPublicKeyInfo DER of the wrapping key.
    pub public_key: Vec<u8>,
    /// The wrapping private key (PKCS#8), wrapped by the root key under `import_aad`.
    pub wrapped_private: Vec<u8>,
    /// The token and wrapping key are valid until this time (seconds).
    pub valid_to: u64,
}

/// The AAD binding a wrapping private key to its key and token.
pub fn import_aad(key_id: &str, token: &str, uin: u64) -> Vec<u8> {
    format!("raftkms/import/{uin}/{key_id}/{token}").into_bytes()
}

/// The key check value stored for imported material.
pub fn material_fingerprint(material: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"raftkms/material-check/v1");
    h.update(material);
    h.finalize().to_vec()
}

impl KeyRecord {
    /// The newest material version, used for encryption.
    pub fn current(&self) -> Option<&MaterialVersion> {
        self.versions.last()
    }

    pub fn version(&self, v: u32) -> Option<&MaterialVersion> {
        self.versions.iter().find(|m| m.version == v)
    }

    /// Every value of this record wrapped by the root key: its material versions and the
    /// wrapping private key of a pending import.
    pub fn wrapped_values(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.versions
            .iter()
            .map(|m| m.wrapped.as_slice())
            .chain(self.import.iter().map(|i| i.wrapped_private.as_slice()))
    }
}

/// Alias rules: 1–60 characters of letters, digits, `-` and `_`, starting with a letter or
/// digit; `kms-` is reserved for cloud products.
pub fn validate_alias(alias: &str) -> Result<(), RegistryError> {
    let ok_chars = alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let ok_start = alias
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if alias.is_empty() || alias.len() > 60 || !ok_chars || !ok_start || alias.starts_with("kms-") {
        return Err(RegistryError::InvalidAlias);
    }
    Ok(())
}

/// Description: at most 1024 bytes.
pub fn validate_description(d: &str) -> Result<(), RegistryError> {
    if d.len() > 1024 {
        return Err(RegistryError::InvalidDescription);
    }
    Ok(())
}

/// Operations on existing keys. Variants are only appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    Enable,
    Disable,
    UpdateAlias {
        alias: String,
    },
    UpdateDescription {
        description: String,
    },
    EnableRotation {
        rotate_days: u32,
    },
    DisableRotation,
    /// A new material version. `manual` rotations are rate-limited by `min_manual_interval`;
    /// automatic ones must be due (`next_rotate_time` reached by the proposer's clock).
    Rotate {
        material: MaterialVersion,
        manual: bool,
        min_manual_interval: u64,
    },
    ScheduleDeletion {
        pending_days: u32,
    },
    /// Brings a key back from PendingDelete, subject to the quota again.
    CancelDeletion {
        cmk_limit: u32,
    },
    Archive,
    CancelArchive,
    /// Removes a key whose deletion date has passed (proposed by the leader).
    DeleteDue,
    /// Stores new import parameters, replacing (and so invalidating) any earlier token.
    SetImportParameters {
        session: ImportSession,
    },
    /// Installs imported material (already wrapped), checked against the current token.
    ImportMaterial {
        token: String,
        material: MaterialVersion,
        fingerprint: Vec<u8>,
        valid_to: u64,
    },
    /// Removes imported material at once; the key returns to PendingImport.
    DeleteImportedMaterial,
    /// Removes imported material whose ValidTo has passed (proposed by the leader).
    ExpireMaterial,
    /// Sets tags (adding keys or giving existing ones new values) and removes others
    /// (ModifyResourceTags, feature level 2); apply works out the new set (`registry::tags`).
    ModifyTags {
        set: Vec<(String, String)>,
        remove: Vec<String>,
    },
}

/// A checked, encoded key mutation (see `Registry::apply`).
pub(super) enum Staged {
    /// Creates or replaces the record (its alias index entry follows the record's alias).
    Put {
        key: Box<KeyRecord>,
        stored: Vec<u8>,
    },
    /// Removes the record and its alias.
    Delete { region: String, key_id: String },
}

impl Staged {
    /// Encodes `key` for storage.
    fn put(key: KeyRecord) -> Result<Self, RegistryError> {
        let stored = super::encode("key", &key)?;
        Ok(Staged::Put {
            key: Box::new(key),
            stored,
        })
    }

    /// The record a `Put` stores.
    pub(super) fn record(&self) -> Option<&KeyRecord> {
        match self {
            Staged::Put { key, .. } => Some(key),
            Staged::Delete { .. } => None,
        }
    }
}

/// The key table and its alias index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    by_id: BTreeMap<(String, String), KeyRecord>,
    aliases: BTreeMap<(u64, String, String), String>,
    /// Keys counting against the quota per (region, uin), kept in step with `by_id` so the quota
    /// check is not a scan of every key.
    counted: RegionCounts,
    /// Wrapped values per root-key version, kept in step with `by_id` (derived).
    root_uses: RootUses,
}

/// Whether a key counts against its account's quota in its region.
fn counts(k: &KeyRecord) -> bool {
    k.state != KeyState::PendingDelete
}

fn storage_key(region: &str, key_id: &str) -> Vec<u8> {
    regional_storage_key(PREFIX, region, key_id)
}

impl Keys {
    /// A key of `uin` in `region`; another account's key is reported as absent.
    pub fn get(&self, region: &str, uin: u64, key_id: &str) -> Option<&KeyRecord> {
        self.by_id
            .get(&(region.to_string(), key_id.to_string()))
            .filter(|k| k.owner_uin == uin)
    }

    /// All keys of an account in a region, newest first.
    pub fn list(&self, region: &str, uin: u64) -> Vec<&KeyRecord> {
        let mut v: Vec<&KeyRecord> = self
            .by_id
            .values()
            .filter(|k| k.region == region && k.owner_uin == uin)
            .collect();
        v.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.key_id.cmp(&b.key_id))
        });
        v
    }

    /// Every key (for the leader's schedulers).
    pub fn all(&self) -> impl Iterator<Item = &KeyRecord> {
        self.by_id.values()
    }

    /// Keys that count against the quota: all of the account's keys in the region except those
    /// pending deletion (they are on their way out and can no longer be used).
    pub fn count(&self, region: &str, uin: u64) -> usize {
        self.counted.get(region, uin)
    }

    /// Adjusts the quota count for `k` entering (`+1`) or leaving (`-1`) the table.
    fn recount(&mut self, k: &KeyRecord, entering: bool) {
        if !counts(k) {
        } else if entering {
            self.counted.add(&k.region, k.owner_uin);
        } else {
            self.counted.remove(&k.region, k.owner_uin);
        }
    }

    /// Inserts or replaces a record in the in-memory indexes (not storage).
    fn insert(&mut self, key: KeyRecord) {
        self.recount(&key, true);
        for w in key.wrapped_values() {
            self.root_uses.add(w);
        }
        if let Some(old) = self
            .by_id
            .insert((key.region.clone(), key.key_id.clone()), key)
        {
            self.forget(&old);
        }
    }

    /// Takes a record that left `by_id` out of the derived counts.
    fn forget(&mut self, old: &KeyRecord) {
        self.recount(old, false);
        for w in old.wrapped_values() {
            self.root_uses.remove(w);
        }
    }

    /// The record of `key_id` in `region`, whoever owns it.
    pub fn get_any(&self, region: &str, key_id: &str) -> Option<&KeyRecord> {
        self.by_id.get(&(region.to_string(), key_id.to_string()))
    }

    /// Wrapped values of every key record per root-key version.
    pub fn root_uses(&self) -> &RootUses {
        &self.root_uses
    }

    /// Key records after the (region, KeyId) `after` (from the first with `None`), in that order:
    /// a resumable scan of every record (the leader's re-wrap).
    pub fn after<'a>(
        &'a self,
        after: Option<&(String, String)>,
    ) -> impl Iterator<Item = &'a KeyRecord> + 'a {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        };
        self.by_id.range((lower, Bound::Unbounded)).map(|(_, k)| k)
    }

    /// Stages the key items of a re-wrap: each material version or import key whose wrapped
    /// bytes are still the item's `old` gets the `new` ones; one `Put` per changed record.
    pub(super) fn stage_rewrap(&self, items: &[RewrapItem]) -> Result<Vec<Staged>, RegistryError> {
        let mut changed: BTreeMap<(String, String), KeyRecord> = BTreeMap::new();
        for item in items {
            let (region, key_id) = match &item.target {
                RewrapTarget::Material { region, key_id, .. }
                | RewrapTarget::Import { region, key_id } => (region, key_id),
                RewrapTarget::Credential { .. } => continue,
            };
            let id = (region.clone(), key_id.clone());
            let earlier = changed.remove(&id);
            let had_earlier = earlier.is_some();
            let Some(mut k) = earlier.or_else(|| self.by_id.get(&id).cloned()) else {
                continue;
            };
            let slot = match &item.target {
                RewrapTarget::Material { version, .. } => k
                    .versions
                    .iter_mut()
                    .find(|m| m.version == *version)
                    .map(|m| &mut m.wrapped),
                _ => k.import.as_mut().map(|i| &mut i.wrapped_private),
            };
            let hit = match slot {
                Some(w) if *w == item.old => {
                    *w = item.new.clone();
                    true
                }
                _ => false,
            };
            // Keep the record if this item or an earlier one of the batch changed it.
            if hit || had_earlier {
                changed.insert(id, k);
            }
        }
        changed.into_values().map(Staged::put).collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Stages creating `key` (see [`Keys::check_create`]).
    pub(super) fn stage_create(
        &self,
        key: &KeyRecord,
        cmk_limit: u32,
    ) -> Result<Staged, RegistryError> {
        self.check_create(key, cmk_limit)?;
        Staged::put(key.clone())
    }

    /// Whether `key` could be created: valid alias and description, KeyId and alias free in its
    /// region, quota not reached. Changes nothing.
    pub(super) fn check_create(
        &self,
        key: &KeyRecord,
        cmk_limit: u32,
    ) -> Result<(), RegistryError> {
        validate_alias(&key.alias)?;
        validate_description(&key.description)?;
        if self
            .by_id
            .contains_key(&(key.region.clone(), key.key_id.clone()))
        {
            return Err(RegistryError::KeyExists);
        }
        let alias_key = (key.owner_uin, key.region.clone(), key.alias.clone());
        if self.aliases.contains_key(&alias_key) {
            return Err(RegistryError::AliasExists);
        }
        if self.count(&key.region, key.owner_uin) >= cmk_limit as usize {
            return Err(RegistryError::CmkLimitExceeded);
        }
        Ok(())
    }

    /// Stages copying the shared material and rotation schedule of a primary (as it will be)
    /// onto its replica in `region` (a replica that no longer exists is skipped: `None`).
    pub(super) fn stage_mirror(
        &self,
        region: &str,
        primary: &KeyRecord,
    ) -> Result<Option<Staged>, RegistryError> {
        let Some(mut k) = self
            .get(region, primary.owner_uin, &primary.key_id)
            .cloned()
        else {
            return Ok(None);
        };
        k.versions = primary.versions.clone();
        k.rotation_enabled = primary.rotation_enabled;
        k.rotate_days = primary.rotate_days;
        k.next_rotate_time = primary.next_rotate_time;
        k.last_rotate_time = primary.last_rotate_time;
        k.last_manual_rotate = primary.last_manual_rotate;
        Staged::put(k).map(Some)
    }

    /// A key a cloud product now uses does not expire: its imported material's expiry (if any)
    /// is cancelled (`BindCloudResource`). `None` when there is nothing to change.
    pub(super) fn stage_keep_material(
        &self,
        region: &str,
        uin: u64,
        key_id: &str,
    ) -> Result<Option<Staged>, RegistryError> {
        let k = self
            .get(region, uin, key_id)
            .ok_or(RegistryError::KeyNotFound)?;
        if k.material_valid_to == 0 {
            return Ok(None);
        }
        let mut k = k.clone();
        k.material_valid_to = 0;
        Staged::put(k).map(Some)
    }

    /// Stages `op` on every key in `key_ids` (all or nothing), at time `now` (seconds, from the
    /// proposer's clock carried in the envelope). One staged mutation per key, in `key_ids` order.
    pub(super) fn stage_op(
        &self,
        region: &str,
        uin: u64,
        key_ids: &[String],
        op: &KeyOp,
        now: u64,
    ) -> Result<Vec<Staged>, RegistryError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut claimed = std::collections::BTreeSet::new();
        let mut updated = Vec::with_capacity(key_ids.len());
        for id in key_ids {
            if !seen.insert(id) {
                return Err(RegistryError::DuplicatedKeyId);
            }
            let mut k = self
                .get(region, uin, id)
                .cloned()
                .ok_or(RegistryError::KeyNotFound)?;
            if let KeyOp::CancelDeletion { cmk_limit } = op {
                // Keys pending deletion do not count against the quota, so bringing one back must.
                if k.state == KeyState::PendingDelete
                    && self.count(region, uin) >= *cmk_limit as usize
                {
                    return Err(RegistryError::CmkLimitExceeded);
                }
            }
            let alias_change = transition(&mut k, op, now)?;
            if let Some(new_alias) = &alias_change {
                validate_alias(new_alias)?;
                let owner = self
                    .aliases
                    .get(&(uin, region.to_string(), new_alias.clone()));
                // Unique against other keys and against the other keys of this same batch.
                if owner.is_some_and(|o| o != id) || !claimed.insert(new_alias.clone()) {
                    return Err(RegistryError::AliasExists);
                }
            }
            updated.push(k);
        }
        // Encode only once every key has passed its checks (a refusal is reported as such).
        updated
            .into_iter()
            .map(|k| {
                if matches!(op, KeyOp::DeleteDue) {
                    Ok(Staged::Delete {
                        region: k.region,
                        key_id: k.key_id,
                    })
                } else {
                    Staged::put(k)
                }
            })
            .collect()
    }

    /// Commits a staged mutation: the record, the alias index and the quota counts. Infallible.
    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::Put { key, stored } => {
                changes.push(Change::Put(storage_key(&key.region, &key.key_id), stored));
                let old = self
                    .by_id
                    .get(&(key.region.clone(), key.key_id.clone()))
                    .map(|o| (o.owner_uin, o.alias.clone()));
                let new_alias = (key.owner_uin, key.region.clone(), key.alias.clone());
                match old {
                    Some((uin, alias)) if uin == key.owner_uin && alias == key.alias => {}
                    Some((uin, alias)) => {
                        self.aliases.remove(&(uin, key.region.clone(), alias));
                        self.aliases.insert(new_alias, key.key_id.clone());
                    }
                    None => {
                        self.aliases.insert(new_alias, key.key_id.clone());
                    }
                }
                self.insert(*key);
            }
            Staged::Delete { region, key_id } => {
                if let Some(old) = self.by_id.remove(&(region.clone(), key_id.clone())) {
                    self.aliases
                        .remove(&(old.owner_uin, region.clone(), old.alias.clone()));
                    self.forget(&old);
                }
                changes.push(Change::Delete(storage_key(&region, &key_id)));
            }
        }
    }

    pub(super) fn load(&mut self, value: &[u8]) -> Result<(), CodecError> {
        let k: KeyRecord = codec::decode("key", value)?;
        self.aliases.insert(
            (k.owner_uin, k.region.clone(), k.alias.clone()),
            k.key_id.clone(),
        );
        self.insert(k);
        Ok(())
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        for k in self.by_id.values() {
            out.push((storage_key(&k.region, &k.key_id), codec::encode("key", k)?));
        }
        Ok(())
    }
}
