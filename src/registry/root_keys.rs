//! The versions of the cluster root key, each sealed under the unseal key, and how many stored
//! values each version still protects.
//!
//! Version 1 is installed at `cluster init` (`InstallRootKey`). Rotation installs the next version
//! (`InstallRootKeyVersion`), which every node then wraps new values under; the leader re-wraps
//! the values of older versions in batches (`Rewrap`, compare-and-set on the old bytes); a version
//! that protects nothing any more can be retired (`RetireRootKey`), which removes its sealed copy.
//! The current version is the newest installed one.
//!
//! Which version protects a value is read from the value's header
//! ([`crate::crypto::root_key::root_version_of`]), so the counts are derived state: kept in step
//! by every insert and removal of a key record or credential, and rebuilt by a load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, RegistryError};
use crate::codec::{self, CodecError};
use crate::crypto::root_key::root_version_of;

/// Version 1's sealed copy (the key it always had).
pub const ROOT_KEY: &[u8] = b"R/root";
/// Later versions: `R/rootv/` ‖ version (u32, big-endian).
pub const VERSION_PREFIX: &[u8] = b"R/rootv/";

/// At most this many values per `Rewrap` command.
pub const MAX_REWRAP_ITEMS: usize = 1024;

/// The root-key version `wrapped` was made under, from its header (see
/// [`crate::crypto::root_key::root_version_of`]).
pub fn version_of(wrapped: &[u8]) -> Option<u32> {
    root_version_of(wrapped)
}

/// A stand-in for a value wrapped under root `version` (tests): the header of its format, then
/// `body` and 28 zero bytes (the header is all apply reads).
#[cfg(test)]
pub(crate) fn stand_in(version: u32, body: &[u8]) -> Vec<u8> {
    let mut w = if version == 1 {
        vec![1]
    } else {
        let mut w = vec![2];
        w.extend_from_slice(&version.to_be_bytes());
        w
    };
    w.extend_from_slice(body);
    w.extend_from_slice(&[0; 28]);
    w
}

fn storage_key(version: u32) -> Vec<u8> {
    if version == 1 {
        return ROOT_KEY.to_vec();
    }
    let mut k = VERSION_PREFIX.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Which stored value a re-wrap replaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RewrapTarget {
    /// Material version `version` of the key `key_id` in `region`.
    Material {
        region: String,
        key_id: String,
        version: u32,
    },
    /// The wrapping private key of the pending import of `key_id` in `region`.
    Import { region: String, key_id: String },
    /// The secret key of a credential.
    Credential { secret_id: String },
}

/// One re-wrapped value: stored only if the value is still `old` (compare and set), so a re-wrap
/// that raced with a rotation, a re-import or a revocation changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapItem {
    pub target: RewrapTarget,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// How many stored values each root version protects (values of no known format are not
/// counted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootUses(BTreeMap<u32, u64>);

impl RootUses {
    pub(super) fn add(&mut self, wrapped: &[u8]) {
        if let Some(v) = root_version_of(wrapped) {
            *self.0.entry(v).or_insert(0) += 1;
        }
    }

    pub(super) fn remove(&mut self, wrapped: &[u8]) {
        if let Some(v) = root_version_of(wrapped) {
            if let Some(n) = self.0.get_mut(&v) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.0.remove(&v);
                }
            }
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merged(&self, other: &RootUses) -> RootUses {
        let mut out = self.clone();
        for (v, n) in &other.0 {
            *out.0.entry(*v).or_insert(0) += n;
        }
        out
    }

    /// Values wrapped under `version`.
    pub fn of(&self, version: u32) -> u64 {
        self.0.get(&version).copied().unwrap_or(0)
    }

    /// Every (version, values) with at least one value.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.0.iter().map(|(v, n)| (*v, *n))
    }
}

/// A checked, encoded mutation of the root-key versions (see `Registry::apply`).
pub(super) enum Staged {
    Install {
        version: u32,
        sealed: Vec<u8>,
        stored: Vec<u8>,
    },
    Retire {
        version: u32,
    },
}

/// The installed root-key versions, sealed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootKeys {
    sealed: BTreeMap<u32, Vec<u8>>,
}

impl RootKeys {
    /// The version new values are wrapped under (the newest installed), if any is.
    pub fn current(&self) -> Option<u32> {
        self.sealed.keys().next_back().copied()
    }

    /// Version `version`, sealed under the unseal key.
    pub fn sealed(&self, version: u32) -> Option<&[u8]> {
        self.sealed.get(&version).map(Vec::as_slice)
    }

    /// Every installed version, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.sealed.keys().copied()
    }

    /// Whether a value wrapped under `wrapped`'s root version may be stored: its version is
    /// installed (values of no known format, and any value before a root key exists, are not
    /// checked: the keyring cannot have made them, and tests store placeholders).
    pub(super) fn check_wrapped(&self, wrapped: &[u8]) -> Result<(), RegistryError> {
        match root_version_of(wrapped) {
            Some(v) if !self.sealed.is_empty() && !self.sealed.contains_key(&v) => {
                Err(RegistryError::RootKeyVersionUnknown { version: v })
            }
            _ => Ok(()),
        }
    }

    /// Installs version 1 at `cluster init` (once).
    pub(super) fn stage_install_first(&self, sealed: &[u8]) -> Result<Staged, RegistryError> {
        if !self.sealed.is_empty() {
            return Err(RegistryError::RootKeyAlreadyInstalled);
        }
        self.stage_install(1, sealed)
    }

    /// Installs `version`, which must be the next after the current one (two racing rotations:
    /// the second is refused).
    pub(super) fn stage_install_next(
        &self,
        version: u32,
        sealed: &[u8],
    ) -> Result<Staged, RegistryError> {
        let current = self.current().ok_or(RegistryError::RootKeyNotInstalled)?;
        if Some(version) != current.checked_add(1) {
            return Err(RegistryError::RootKeyVersionConflict { current });
        }
        self.stage_install(version, sealed)
    }

    fn stage_install(&self, version: u32, sealed: &[u8]) -> Result<Staged, RegistryError> {
        if sealed.is_empty() {
            return Err(RegistryError::RootKeyNotInstalled);
        }
        let sealed = sealed.to_vec();
        Ok(Staged::Install {
            stored: super::encode("root key", &sealed)?,
            version,
            sealed,
        })
    }

    /// Retires `version`: not the current one, and only once no stored value uses it.
    pub(super) fn stage_retire(&self, version: u32, uses: u64) -> Result<Staged, RegistryError> {
        if !self.sealed.contains_key(&version) {
            return Err(RegistryError::RootKeyVersionUnknown { version });
        }
        if self.current() == Some(version) {
            return Err(RegistryError::RootKeyIsCurrent { version });
        }
        if uses > 0 {
            return Err(RegistryError::RootKeyInUse {
                version,
                values: uses,
            });
        }
        Ok(Staged::Retire { version })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::Install {
                version,
                sealed,
                stored,
            } => {
                changes.push(Change::Put(storage_key(version), stored));
                self.sealed.insert(version, sealed);
            }
            Staged::Retire { version } => {
                changes.push(Change::Delete(storage_key(version)));
                self.sealed.remove(&version);
            }
        }
    }

    /// Loads a persisted pair if it is a root-key version (`Ok(false)` if it is not one).
    pub(super) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CodecError> {
        let version = if key == ROOT_KEY {
            1
        } else if let Some(rest) = key.strip_prefix(VERSION_PREFIX) {
            let bytes: [u8; 4] = rest.try_into().map_err(|_| CodecError::Version {
                what: "root key version",
                found: rest.len() as u8,
            })?;
            u32::from_be_bytes(bytes)
        } else {
            return Ok(false);
        };
        self.sealed
            .insert(version, codec::decode("root key", value)?);
        Ok(true)
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        for (v, sealed) in &self.sealed {
            out.push((storage_key(*v), codec::encode("root key", sealed)?));
        }
        Ok(())
    }
}
