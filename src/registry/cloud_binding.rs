//! Cloud-resource bindings (`BindCloudResource`): which cloud products use a key, for which of
//! their resources. A key bound to anything cannot be disabled, archived, scheduled for deletion
//! or lose its imported material (`FailedOperation.CmkUsedByCloudProduct`) until every binding is
//! removed. Added in cluster feature level 2.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Change, RegistryError};
use crate::codec::{self, CodecError};

pub const PREFIX: &[u8] = b"b/";

/// Longest product id and resource id, in bytes.
pub const MAX_ID: usize = 256;

/// One binding: product `product_id` uses key `key_id` (of account `uin`, in `region`) for its
/// resource `resource_id`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CloudBinding {
    pub region: String,
    pub uin: u64,
    pub key_id: String,
    pub product_id: String,
    pub resource_id: String,
}

impl CloudBinding {
    /// Its storage key: prefix, region, uin, key, product and resource, each NUL-terminated (no
    /// part may hold a NUL: `validate`), so one key's bindings are one key range.
    fn storage_key(&self) -> Vec<u8> {
        let mut k = PREFIX.to_vec();
        k.extend_from_slice(self.region.as_bytes());
        k.push(0);
        k.extend_from_slice(&self.uin.to_be_bytes());
        for part in [&self.key_id, &self.product_id, &self.resource_id] {
            k.extend_from_slice(part.as_bytes());
            k.push(0);
        }
        k
    }
}

/// Product and resource ids: 1 to [`MAX_ID`] bytes, no control characters.
pub fn validate(product_id: &str, resource_id: &str) -> Result<(), RegistryError> {
    for id in [product_id, resource_id] {
        if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
            return Err(RegistryError::InvalidCloudResource);
        }
    }
    Ok(())
}

pub(super) enum Staged {
    Put {
        binding: CloudBinding,
        stored: Vec<u8>,
    },
    Delete {
        binding: CloudBinding,
    },
    /// Binding an existing pair again: nothing to change.
    Unchanged,
}

/// Every binding, ordered so that one key's bindings are adjacent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudBindings {
    set: BTreeSet<CloudBinding>,
}

impl CloudBindings {
    /// The bindings of one key.
    pub fn of_key<'a>(
        &'a self,
        region: &'a str,
        uin: u64,
        key_id: &'a str,
    ) -> impl Iterator<Item = &'a CloudBinding> + 'a {
        // The set is ordered by (region, uin, key_id, ...): one key's bindings are adjacent, from
        // the one with the smallest product and resource ids on.
        let first = CloudBinding {
            region: region.to_string(),
            uin,
            key_id: key_id.to_string(),
            product_id: String::new(),
            resource_id: String::new(),
        };
        self.set
            .range(first..)
            .take_while(move |b| b.region == region && b.uin == uin && b.key_id == key_id)
    }

    /// Whether any product uses the key.
    pub fn is_bound(&self, region: &str, uin: u64, key_id: &str) -> bool {
        self.of_key(region, uin, key_id).next().is_some()
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Stages a binding (the key's existence is checked by the caller); binding an existing pair
    /// again succeeds and changes nothing.
    pub(super) fn stage_bind(&self, b: &CloudBinding) -> Result<Staged, RegistryError> {
        validate(&b.product_id, &b.resource_id)?;
        if self.set.contains(b) {
            return Ok(Staged::Unchanged);
        }
        Ok(Staged::Put {
            stored: super::encode("cloud binding", b)?,
            binding: b.clone(),
        })
    }

    /// Stages removing a binding, which must exist.
    pub(super) fn stage_unbind(&self, b: &CloudBinding) -> Result<Staged, RegistryError> {
        if !self.set.contains(b) {
            return Err(RegistryError::CloudBindingNotFound);
        }
        Ok(Staged::Delete { binding: b.clone() })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::Put { binding, stored } => {
                changes.push(Change::Put(binding.storage_key(), stored));
                self.set.insert(binding);
            }
            Staged::Delete { binding } => {
                changes.push(Change::Delete(binding.storage_key()));
                self.set.remove(&binding);
            }
            Staged::Unchanged => {}
        }
    }

    pub(super) fn load(&mut self, value: &[u8]) -> Result<(), CodecError> {
        let b: CloudBinding = codec::decode("cloud binding", value)?;
        self.set.insert(b);
        Ok(())
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        for b in &self.set {
            out.push((b.storage_key(), codec::encode("cloud binding", b)?));
        }
        Ok(())
    }
}
