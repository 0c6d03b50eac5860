//! Plain named records: cluster-level settings and the probes operators and tests use to check
//! that writes replicate. The key registry (accounts, keys, versions) builds on the same rules.

use std::collections::BTreeMap;

use super::{Change, RegistryError};
use crate::codec;

/// Key prefix of record entries in the registry column family.
pub const PREFIX: &[u8] = b"r/";
/// Longest accepted record name, in bytes.
pub const MAX_NAME: usize = 256;
/// Largest accepted record value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

/// Checks a record name and value before proposing and again inside apply.
pub fn validate(name: &str, value: Option<&[u8]>) -> Result<(), RegistryError> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(|c| c.is_control()) {
        return Err(RegistryError::InvalidName);
    }
    if value.is_some_and(|v| v.len() > MAX_VALUE) {
        return Err(RegistryError::ValueTooLarge);
    }
    Ok(())
}

/// A checked, encoded record mutation (see `Registry::apply`).
pub(super) enum Staged {
    Put {
        name: String,
        value: Vec<u8>,
        stored: Vec<u8>,
    },
    Delete {
        name: String,
    },
}

/// The record table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    map: BTreeMap<String, Vec<u8>>,
}

impl Records {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.map.get(name).map(Vec::as_slice)
    }

    /// The records whose names start with `prefix`, in name order.
    pub fn with_prefix<'a>(&'a self, prefix: &str) -> Vec<(&'a str, &'a [u8])> {
        self.map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Stages creating or replacing `name` (already validated).
    pub(super) fn stage_put(&self, name: &str, value: &[u8]) -> Result<Staged, RegistryError> {
        let value = value.to_vec();
        let stored = super::encode("record", &value)?;
        Ok(Staged::Put {
            name: name.to_string(),
            value,
            stored,
        })
    }

    /// Stages removing `name`, which must exist.
    pub(super) fn stage_delete(&self, name: &str) -> Result<Staged, RegistryError> {
        if !self.map.contains_key(name) {
            return Err(RegistryError::RecordNotFound);
        }
        Ok(Staged::Delete {
            name: name.to_string(),
        })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::Put {
                name,
                value,
                stored,
            } => {
                changes.push(Change::Put(key(&name), stored));
                self.map.insert(name, value);
            }
            Staged::Delete { name } => {
                self.map.remove(&name);
                changes.push(Change::Delete(key(&name)));
            }
        }
    }

    pub(super) fn load(&mut self, key_rest: &[u8], value: &[u8]) -> Result<(), codec::CodecError> {
        let name = String::from_utf8_lossy(key_rest).into_owned();
        let v: Vec<u8> = codec::decode("record", value)?;
        self.map.insert(name, v);
        Ok(())
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), codec::CodecError> {
        for (name, value) in &self.map {
            out.push((key(name), codec::encode("record", value)?));
        }
        Ok(())
    }
}

fn key(name: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}
