//! Multi-region (replica) keys: which regions hold a replica of which primary key.
//!
//! A replica is an ordinary [`KeyRecord`](super::key::KeyRecord) in its own region with the
//! primary's KeyId, owner and material; its state, alias, description and tags are its own. This
//! table links them: one entry per (account, KeyId) naming the primary's region and the replica
//! regions. Commands that change the shared material (rotation and its schedule) are accepted on
//! the primary only and copied to every replica in the same apply, so every region has the new
//! version at the same log index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, RegistryError};
use crate::codec::{self, CodecError};

pub const PREFIX: &[u8] = b"m/";

/// The regions of one multi-region key. Stored under `m/<uin>\0<key_id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSet {
    pub uin: u64,
    pub key_id: String,
    pub primary_region: String,
    /// Replica regions, sorted, without the primary's.
    pub replicas: Vec<String>,
}

/// What one replica looks like when it is created (alias, description and tags are its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    pub region: String,
    pub alias: String,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

/// How a key record relates to other regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role<'a> {
    /// Not replicated.
    Single,
    /// A primary with at least one replica.
    Primary(&'a ReplicaSet),
    /// A replica of the primary in `set.primary_region`.
    Replica(&'a ReplicaSet),
}

/// A checked, encoded mutation of the link table (see `Registry::apply`).
pub(super) enum Staged {
    Put { set: ReplicaSet, stored: Vec<u8> },
    Delete { uin: u64, key_id: String },
}

impl Staged {
    fn put(set: ReplicaSet) -> Result<Self, RegistryError> {
        let stored = super::encode("replica set", &set)?;
        Ok(Staged::Put { set, stored })
    }
}

/// The replica-link table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    sets: BTreeMap<(u64, String), ReplicaSet>,
}

fn storage_key(uin: u64, key_id: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(uin.to_string().as_bytes());
    k.push(0);
    k.extend_from_slice(key_id.as_bytes());
    k
}

impl Replicas {
    pub fn get(&self, uin: u64, key_id: &str) -> Option<&ReplicaSet> {
        self.sets.get(&(uin, key_id.to_string()))
    }

    /// The role of the key `key_id` of `uin` in `region`.
    pub fn role(&self, region: &str, uin: u64, key_id: &str) -> Role<'_> {
        match self.get(uin, key_id) {
            Some(set) if set.primary_region == region => Role::Primary(set),
            Some(set) if set.replicas.iter().any(|r| r == region) => Role::Replica(set),
            _ => Role::Single,
        }
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Stages recording that each of `regions` now holds a replica of the primary `key_id` in
    /// `primary_region`: one write of the resulting set.
    pub(super) fn stage_add(
        &self,
        uin: u64,
        key_id: &str,
        primary_region: &str,
        regions: &[&str],
    ) -> Result<Staged, RegistryError> {
        let mut set = self
            .get(uin, key_id)
            .cloned()
            .unwrap_or_else(|| ReplicaSet {
                uin,
                key_id: key_id.to_string(),
                primary_region: primary_region.to_string(),
                replicas: Vec::new(),
            });
        for region in regions {
            if !set.replicas.iter().any(|r| r == region) {
                set.replicas.push(region.to_string());
            }
        }
        set.replicas.sort();
        Staged::put(set)
    }

    /// Stages forgetting a replica whose key record is being removed; the link goes when no
    /// replica is left. `None` if there is nothing to change.
    pub(super) fn stage_remove_replica(
        &self,
        uin: u64,
        key_id: &str,
        region: &str,
    ) -> Result<Option<Staged>, RegistryError> {
        let Some(set) = self.get(uin, key_id) else {
            return Ok(None);
        };
        let mut set = set.clone();
        set.replicas.retain(|r| r != region);
        if set.replicas.is_empty() {
            Ok(Some(Staged::Delete {
                uin,
                key_id: key_id.to_string(),
            }))
        } else {
            Staged::put(set).map(Some)
        }
    }

    /// Commits a staged mutation. Infallible.
    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        match staged {
            Staged::Put { set, stored } => {
                changes.push(Change::Put(storage_key(set.uin, &set.key_id), stored));
                self.sets.insert((set.uin, set.key_id.clone()), set);
            }
            Staged::Delete { uin, key_id } => {
                changes.push(Change::Delete(storage_key(uin, &key_id)));
                self.sets.remove(&(uin, key_id));
            }
        }
    }

    pub(super) fn load(&mut self, value: &[u8]) -> Result<(), CodecError> {
        let set: ReplicaSet = codec::decode("replica set", value)?;
        self.sets.insert((set.uin, set.key_id.clone()), set);
        Ok(())
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        for set in self.sets.values() {
            out.push((
                storage_key(set.uin, &set.key_id),
                codec::encode("replica set", set)?,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_links_and_the_last_replica_removes_the_set() {
        let mut r = Replicas::default();
        let mut changes = Vec::new();
        let s = r
            .stage_add(7, "k1", "ap-guangzhou", &["ap-shanghai"])
            .unwrap();
        r.commit(s, &mut changes);
        let s = r
            .stage_add(7, "k1", "ap-guangzhou", &["ap-beijing"])
            .unwrap();
        r.commit(s, &mut changes);
        assert!(matches!(r.role("ap-guangzhou", 7, "k1"), Role::Primary(_)));
        assert!(matches!(r.role("ap-shanghai", 7, "k1"), Role::Replica(_)));
        assert_eq!(r.role("ap-singapore", 7, "k1"), Role::Single);
        assert_eq!(r.role("ap-shanghai", 8, "k1"), Role::Single);
        assert_eq!(
            r.get(7, "k1").unwrap().replicas,
            vec!["ap-beijing".to_string(), "ap-shanghai".to_string()]
        );
        // Staging alone changes nothing.
        let before = r.clone();
        let s = r
            .stage_remove_replica(7, "k1", "ap-beijing")
            .unwrap()
            .unwrap();
        assert_eq!(r, before);
        r.commit(s, &mut changes);
        assert!(matches!(r.role("ap-guangzhou", 7, "k1"), Role::Primary(_)));
        let s = r
            .stage_remove_replica(7, "k1", "ap-shanghai")
            .unwrap()
            .unwrap();
        r.commit(s, &mut changes);
        assert_eq!(r.role("ap-guangzhou", 7, "k1"), Role::Single);
        assert!(matches!(changes.last(), Some(Change::Delete(_))));
        assert!(r
            .stage_remove_replica(7, "k1", "ap-shanghai")
            .unwrap()
            .is_none());

        // Several regions at once: one write of the sorted set.
        let mut r2 = Replicas::default();
        let mut changes = Vec::new();
        let s = r2.stage_add(9, "k2", "a", &["c", "b"]).unwrap();
        r2.commit(s, &mut changes);
        assert_eq!(changes.len(), 1);
        assert_eq!(r2.get(9, "k2").unwrap().replicas, vec!["b", "c"]);

        // Round trip through the persisted form.
        let mut out = Vec::new();
        r2.dump(&mut out).unwrap();
        let mut r3 = Replicas::default();
        for (_, v) in &out {
            r3.load(v).unwrap();
        }
        assert_eq!(r2, r3);
    }
}
