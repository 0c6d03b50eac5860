//! Checkpoints of the nodes' audit-trail chain heads. Each node proposes its head (the sequence
//! number and hash of its newest record) now and then; once applied, the head is part of the
//! replicated state, so a trail edited, truncated or reordered afterwards no longer matches what
//! every node agreed on (`raftkms audit verify`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Change, RegistryError};
use crate::codec::{self, CodecError};

pub const PREFIX: &[u8] = b"h/";

/// Checkpoints kept per node: the newest ones (an older one adds little once a newer one covers
/// the records it covered).
pub const KEPT_PER_NODE: usize = 256;

/// One node's chain head at a point in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub node_id: u64,
    /// The sequence number of the node's newest record when the checkpoint was proposed.
    pub seq: u64,
    /// That record's hash.
    pub hash: [u8; 32],
    /// The proposer's wall clock.
    pub at_ms: u64,
}

pub(super) enum Staged {
    Put {
        checkpoint: Checkpoint,
        stored: Vec<u8>,
        evict: Option<u64>,
    },
}

/// The retained checkpoints, by node and sequence number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditHeads {
    heads: BTreeMap<(u64, u64), Checkpoint>,
}

fn key(node_id: u64, seq: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&node_id.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl AuditHeads {
    /// A node's retained checkpoints, oldest first.
    pub fn of_node(&self, node_id: u64) -> impl Iterator<Item = &Checkpoint> {
        self.heads
            .range((node_id, 0)..=(node_id, u64::MAX))
            .map(|(_, c)| c)
    }

    /// Every retained checkpoint.
    pub fn all(&self) -> impl Iterator<Item = &Checkpoint> {
        self.heads.values()
    }

    /// A checkpoint must move the node's chain forward: a head at or behind the newest one
    /// already checkpointed (a node whose trail was reset, or a replayed proposal) is refused.
    pub(super) fn stage(&self, c: &Checkpoint) -> Result<Staged, RegistryError> {
        if let Some(last) = self.of_node(c.node_id).last() {
            if c.seq <= last.seq {
                return Err(RegistryError::StaleAuditCheckpoint {
                    node_id: c.node_id,
                    seq: last.seq,
                });
            }
        }
        let evict = (self.of_node(c.node_id).count() >= KEPT_PER_NODE)
            .then(|| self.of_node(c.node_id).next().map(|o| o.seq))
            .flatten();
        Ok(Staged::Put {
            stored: super::encode("audit checkpoint", c)?,
            checkpoint: c.clone(),
            evict,
        })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        let Staged::Put {
            checkpoint,
            stored,
            evict,
        } = staged;
        if let Some(seq) = evict {
            self.heads.remove(&(checkpoint.node_id, seq));
            changes.push(Change::Delete(key(checkpoint.node_id, seq)));
        }
        changes.push(Change::Put(key(checkpoint.node_id, checkpoint.seq), stored));
        self.heads
            .insert((checkpoint.node_id, checkpoint.seq), checkpoint);
    }

    pub(super) fn load(&mut self, value: &[u8]) -> Result<(), CodecError> {
        let c: Checkpoint = codec::decode("audit checkpoint", value)?;
        self.heads.insert((c.node_id, c.seq), c);
        Ok(())
    }

    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        for c in self.heads.values() {
            out.push((key(c.node_id, c.seq), codec::encode("audit checkpoint", c)?));
        }
        Ok(())
    }
}
