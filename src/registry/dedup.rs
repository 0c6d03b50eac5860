//! The idempotency table: request ids applied within the last `WINDOW` log indices (and at most
//! the last [`MAX_REMEMBERED`] of them), with the outcome each produced. Eviction depends only
//! on the applied entries, so every replica evicts the same ids.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{Outcome, RequestId};
use super::Change;
use crate::codec;

/// Key prefix of dedup entries in the registry column family.
pub const PREFIX: &[u8] = b"q/";
/// How many log indices a request id is remembered for.
pub const WINDOW: u64 = 100_000;
/// The most request ids remembered: a log entry may carry a batch of writes (each with its own
/// id), so the index window alone does not bound the table. Twice the window, so a log without
/// batches (at most one id per index) never reaches it and is evicted exactly as before.
pub const MAX_REMEMBERED: usize = 2 * WINDOW as usize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRequest {
    pub index: u64,
    pub outcome: Outcome,
}

/// An encoded dedup entry waiting to be committed (see `Registry::apply`).
pub(super) struct Staged {
    id: RequestId,
    applied: AppliedRequest,
    stored: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dedup {
    by_id: BTreeMap<RequestId, AppliedRequest>,
    by_index: BTreeSet<(u64, RequestId)>,
}

impl Dedup {
    pub fn get(&self, id: &RequestId) -> Option<&AppliedRequest> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The entry for `id` if [`Dedup::evict_before`]`(index)` would keep it: what a lookup right
    /// after that eviction finds, without changing anything.
    pub(super) fn get_live(&self, index: u64, id: &RequestId) -> Option<&AppliedRequest> {
        let horizon = index.checked_sub(WINDOW);
        self.get(id)
            .filter(|applied| horizon.is_none_or(|h| applied.index >= h))
    }

    /// Encodes the entry remembering `applied` for `id`; [`Dedup::commit`] stores it.
    pub(super) fn stage(
        &self,
        id: RequestId,
        applied: AppliedRequest,
    ) -> Result<Staged, codec::CodecError> {
        let stored = super::encode_raw("dedup entry", &applied)?;
        Ok(Staged {
            id,
            applied,
            stored,
        })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        let Staged {
            id,
            applied,
            stored,
        } = staged;
        changes.push(Change::Put(key(&id), stored));
        self.by_index.insert((applied.index, id));
        self.by_id.insert(id, applied);
        // The oldest first (lowest index, then id): never the one just remembered, which has
        // the highest index.
        while self.by_id.len() > MAX_REMEMBERED {
            let Some((_, old)) = self.by_index.pop_first() else {
                break;
            };
            self.by_id.remove(&old);
            changes.push(Change::Delete(key(&old)));
        }
    }

    /// Forgets ids applied more than `WINDOW` indices before `index`.
    pub(super) fn evict_before(&mut self, index: u64, changes: &mut Vec<Change>) {
        let Some(horizon) = index.checked_sub(WINDOW) else {
            return;
        };
        while let Some(&(i, id)) = self.by_index.first() {
            if i >= horizon {
                break;
            }
            self.by_index.pop_first();
            self.by_id.remove(&id);
            changes.push(Change::Delete(key(&id)));
        }
    }

    pub(super) fn load(&mut self, key_rest: &[u8], value: &[u8]) -> Result<(), codec::CodecError> {
        let id: [u8; 16] = key_rest
            .try_into()
            .map_err(|_| codec::CodecError::Trailing { what: "dedup key" })?;
        let applied: AppliedRequest = codec::decode("dedup entry", value)?;
        self.by_index.insert((applied.index, RequestId(id)));
        self.by_id.insert(RequestId(id), applied);
        Ok(())
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), codec::CodecError> {
        for (id, applied) in &self.by_id {
            out.push((key(id), codec::encode("dedup entry", applied)?));
        }
        Ok(())
    }
}

fn key(id: &RequestId) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&id.0);
    k
}
