//! Backups (docs/operations.md, "Backups and restore"): a point-in-time copy of the replicated
//! state at a known applied log id, in a file that can be checked offline.
//!
//! Layout (format 1): `b"RKMSBKUP"` ‖ `1` ‖ u32 LE header length ‖ versioned bincode
//! [`BackupHeader`] ‖ the state as a snapshot (`raft/snapshot.rs`, layout 2, with its own
//! checksum) ‖ a 32-byte authentication tag ‖ SHA-256 of everything before. Key material stays
//! wrapped under the root key, as in the data directory: a backup is exactly as sensitive as a
//! data directory without the unseal key. The header repeats what the body must hold (position,
//! counts per table, the state's digest) so that [`decode`] can check the body against it.
//!
//! The SHA-256 catches accidents (truncation, a flipped bit) and is checked offline. It proves
//! nothing about who wrote the file: the tag does. It is an HMAC over everything before it, under
//! a key derived from the root-key version current in the backed-up state
//! (`BackupHeader::mac_root_version`), so only a holder of the cluster's root key can make one,
//! and `raftkms restore` (which opens the root key anyway) refuses a file whose tag does not
//! check: an edited policy or credential cannot be slipped into a restore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::snapshot::{self, SnapshotBody};
use super::types::{LogId, StoredMembership};
use crate::codec;
use crate::registry::Registry;
use crate::storage::db::StoreError;

const MAGIC: &[u8; 8] = b"RKMSBKUP";
const SUM_LEN: usize = 32;
/// The backup format written today.
pub const FORMAT_V1: u8 = 1;

/// What a backup says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The cluster it was taken from.
    pub cluster_id: String,
    /// The node that served it.
    pub source_node: u64,
    /// When the node took it, ms since the Unix epoch (the node's clock).
    pub created_at_ms: u64,
    /// The raftkms release that wrote it.
    pub raftkms_version: String,
    /// The last log entry the state includes: every write acknowledged before the backup was
    /// asked for is at or below it.
    pub last_applied: LogId,
    /// The membership at that point (for information: a restore starts a new one).
    pub membership: StoredMembership,
    /// Entries per table of the registry (records, keys, accounts, …).
    pub counts: BTreeMap<String, u64>,
    /// The state's digest, as `GET /admin/digest` reports it for a node at `last_applied`.
    pub digest: String,
    /// Length of the snapshot part.
    pub snapshot_bytes: u64,
    /// The root-key version whose derived key made the authentication tag.
    pub mac_root_version: u32,
}

/// What the authentication tag is made for (the HMAC key is derived from the root key with it).
pub const MAC_PURPOSE: &[u8] = b"raftkms/backup/v1";
const MAC_LEN: usize = 32;

/// A decoded and checked backup.
pub struct Backup {
    pub header: BackupHeader,
    pub state: SnapshotBody,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pairs hold wrapped key material: never printed.
        f.debug_struct("Backup")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

fn bad(why: impl Into<String>) -> StoreError {
    StoreError::CorruptBackup(why.into())
}

/// Entries per table of `reg`.
pub fn counts(reg: &Registry) -> BTreeMap<String, u64> {
    let accounts: Vec<u64> = reg.accounts().accounts().map(|a| a.uin).collect();
    let n = |x: usize| x as u64;
    BTreeMap::from([
        ("records".into(), n(reg.records().len())),
        ("request_ids".into(), n(reg.dedup().len())),
        ("accounts".into(), n(accounts.len())),
        (
            "credentials".into(),
            n(reg.accounts().credentials().count()),
        ),
        ("keys".into(), n(reg.keys().len())),
        ("replica_sets".into(), n(reg.replicas().len())),
        (
            "identities".into(),
            n(accounts
                .iter()
                .map(|u| reg.iam().identities(*u).count())
                .sum()),
        ),
        (
            "policies".into(),
            n(accounts
                .iter()
                .map(|u| reg.iam().policies(*u).count())
                .sum()),
        ),
        (
            "audit_checkpoints".into(),
            n(reg.audit_heads().all().count()),
        ),
        (
            "root_key_versions".into(),
            n(reg.root_keys().versions().count()),
        ),
    ])
}

/// The state's counts, digest and current root-key version. The pairs must be exactly the
/// registry's canonical form (what a node writes): a row that loads as something else, or that
/// loading would ignore, is refused, so what a restore writes is what the digest covers.
fn summarize(state: &SnapshotBody) -> Result<Summary, StoreError> {
    let reg = Registry::load(state.pairs.iter().cloned())?;
    if reg.dump()? != state.pairs {
        return Err(bad(
            "its state is not in the registry's canonical form (rows that do not load as \
             themselves)",
        ));
    }
    Ok(Summary {
        counts: counts(&reg),
        digest: reg.digest()?,
        root: reg.root_keys().current(),
    })
}

/// What [`summarize`] finds in a state.
struct Summary {
    counts: BTreeMap<String, u64>,
    digest: String,
    /// The current root-key version, if any.
    root: Option<u32>,
}

/// What [`make`] needs besides the state.
pub struct Origin {
    pub cluster_id: String,
    pub source_node: u64,
    pub created_at_ms: u64,
}

/// The authentication tag of a backup: `mac(root_version, data)` is the HMAC of `data` under the
/// key derived for [`MAC_PURPOSE`] from that root-key version (the caller holds the keys).
pub type Mac<'a> = &'a dyn Fn(u32, &[u8]) -> Result<[u8; 32], StoreError>;

/// A backup file of `state` (a point-in-time view of the registry at an applied position),
/// authenticated with `mac`.
pub fn make(
    origin: Origin,
    state: &SnapshotBody,
    mac: Mac<'_>,
) -> Result<(BackupHeader, Vec<u8>), StoreError> {
    let last_applied = state
        .last_applied
        .ok_or_else(|| bad("the node has applied nothing yet: there is nothing to back up"))?;
    let Summary {
        counts,
        digest,
        root,
    } = summarize(state)?;
    let mac_root_version =
        root.ok_or_else(|| bad("the cluster has no root key yet: there is nothing to back up"))?;
    let snap = snapshot::encode(state)?;
    let header = BackupHeader {
        cluster_id: origin.cluster_id,
        source_node: origin.source_node,
        created_at_ms: origin.created_at_ms,
        raftkms_version: env!("CARGO_PKG_VERSION").to_string(),
        last_applied,
        membership: state.membership.clone(),
        counts,
        digest,
        snapshot_bytes: snap.len() as u64,
        mac_root_version,
    };
    let head = codec::encode("backup header", &header)?;
    let head_len = u32::try_from(head.len()).map_err(|_| bad("backup header too large"))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 5 + head.len() + snap.len() + MAC_LEN + SUM_LEN);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_V1);
    out.extend_from_slice(&head_len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&snap);
    let tag = mac(mac_root_version, &out)?;
    out.extend_from_slice(&tag);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok((header, out))
}

/// The header of a backup file from its first bytes, without checking the rest (for a quick
/// look; [`decode`] checks everything).
pub fn read_header(bytes: &[u8]) -> Result<BackupHeader, StoreError> {
    header_and_end(bytes).map(|(h, _)| h)
}

/// The header and where it ends (as the file declares it).
fn header_and_end(bytes: &[u8]) -> Result<(BackupHeader, usize), StoreError> {
    if bytes.len() < MAGIC.len() + 5 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not a raftkms backup (bad magic or too short)"));
    }
    let format = bytes[MAGIC.len()];
    if format != FORMAT_V1 {
        return Err(bad(format!(
            "backup format {format} is {} this build reads ({FORMAT_V1}): use a raftkms release \
             that reads it",
            if format > FORMAT_V1 {
                "newer than what"
            } else {
                "not one"
            }
        )));
    }
    let at = MAGIC.len() + 1;
    let len_bytes = bytes
        .get(at..at + 4)
        .ok_or_else(|| bad("backup ends inside its header"))?;
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    let start = at + 4;
    let end = start
        .checked_add(len as usize)
        .ok_or_else(|| bad("backup header length overflows"))?;
    let head = bytes
        .get(start..end)
        .ok_or_else(|| bad("backup ends inside its header"))?;
    Ok((codec::decode("backup header", head)?, end))
}

/// What the authentication tag covers, and the tag (of a file whose checksum [`decode`] checked).
pub fn signed(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let content_end = bytes
        .len()
        .checked_sub(SUM_LEN + MAC_LEN)
        .ok_or_else(|| bad("backup too short"))?;
    Ok((
        &bytes[..content_end],
        &bytes[content_end..content_end + MAC_LEN],
    ))
}

/// Decodes a backup and checks all of it: magic, format, the file's checksum, the snapshot's own
/// layout and checksum, and that the state matches the header (position, counts, digest).
pub fn decode(bytes: &[u8]) -> Result<Backup, StoreError> {
    let (header, start) = header_and_end(bytes)?;
    if bytes.len() < start + MAC_LEN + SUM_LEN {
        return Err(bad("backup too short"));
    }
    let (content, sum) = bytes.split_at(bytes.len() - SUM_LEN);
    if Sha256::digest(content).as_slice() != sum {
        return Err(bad(
            "checksum mismatch: the file is truncated or was changed after it was written",
        ));
    }
    let snap = &content[start..content.len() - MAC_LEN];
    if snap.len() as u64 != header.snapshot_bytes {
        return Err(bad(format!(
            "the state is {} bytes but the header says {}",
            snap.len(),
            header.snapshot_bytes
        )));
    }
    let state = snapshot::decode(snap).map_err(|e| bad(format!("its state: {e}")))?;
    if state.last_applied != Some(header.last_applied) {
        return Err(bad(format!(
            "the state is at {:?} but the header says {}",
            state.last_applied, header.last_applied
        )));
    }
    let Summary { counts, digest, .. } = summarize(&state)?;
    if counts != header.counts {
        return Err(bad(format!(
            "the state holds {counts:?} but the header says {:?}",
            header.counts
        )));
    }
    if digest != header.digest {
        return Err(bad(format!(
            "the state's digest is {digest} but the header says {}",
            header.digest
        )));
    }
    Ok(Backup { header, state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Node, NodeId};
    use crate::registry::{Command, Envelope, RequestId};
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::BTreeSet;

    fn state() -> SnapshotBody {
        let mut reg = Registry::default();
        let mut commands = vec![Command::InstallRootKey {
            sealed: vec![7; 60],
        }];
        for i in 0..3u8 {
            commands.push(Command::PutRecord {
                name: format!("r{i}"),
                value: vec![i; 4],
            });
        }
        for (i, command) in commands.into_iter().enumerate() {
            let env = Envelope {
                request_id: RequestId([i as u8; 16]),
                issued_at_ms: 1_700_000_000_000,
                command,
            };
            reg.apply(i as u64 + 1, &env).unwrap();
        }
        let log_id = LogId::new(CommittedLeaderId::new(2, 1), 4);
        let membership = StoredMembership::new(
            Some(log_id),
            Membership::<NodeId, Node>::new(vec![BTreeSet::from([1])], None),
        );
        SnapshotBody {
            snapshot_id: "t".into(),
            last_applied: Some(log_id),
            membership,
            pairs: reg.dump().unwrap(),
        }
    }

    fn origin() -> Origin {
        Origin {
            cluster_id: "c1".into(),
            source_node: 1,
            created_at_ms: 5,
        }
    }

    /// A stand-in for the root key's HMAC: a hash of the version and the data.
    fn tag(version: u32, data: &[u8]) -> Result<[u8; 32], StoreError> {
        let mut h = Sha256::new();
        h.update(version.to_le_bytes());
        h.update(data);
        Ok(h.finalize().into())
    }

    #[test]
    fn a_backup_round_trips_with_its_counts_digest_and_tag() {
        let s = state();
        let (h, bytes) = make(origin(), &s, &tag).unwrap();
        assert_eq!(h.counts["records"], 3);
        assert_eq!(h.counts["root_key_versions"], 1);
        assert_eq!(h.mac_root_version, 1);
        assert_eq!(h.last_applied.index, 4);
        let b = decode(&bytes).unwrap();
        assert_eq!(b.header, h);
        assert_eq!(b.state, s);
        assert_eq!(read_header(&bytes).unwrap(), h);
        assert_eq!(
            h.digest,
            Registry::load(s.pairs.clone()).unwrap().digest().unwrap()
        );
        let (content, t) = signed(&bytes).unwrap();
        assert_eq!(t, tag(1, content).unwrap());
    }

    fn assemble(h: &BackupHeader, snap: &[u8]) -> Vec<u8> {
        let head = codec::encode("backup header", h).unwrap();
        let mut out = MAGIC.to_vec();
        out.push(FORMAT_V1);
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(snap);
        let t = tag(h.mac_root_version, &out).unwrap();
        out.extend_from_slice(&t);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    #[test]
    fn truncated_edited_newer_or_foreign_files_are_refused() {
        let (_, bytes) = make(origin(), &state(), &tag).unwrap();
        let err = |b: &[u8]| decode(b).unwrap_err().to_string();
        assert!(err(&bytes[..bytes.len() - 1]).contains("checksum"));
        assert!(err(&bytes[..20]).contains("backup"));
        let mut edited = bytes.clone();
        let mid = edited.len() / 2;
        edited[mid] ^= 1;
        assert!(err(&edited).contains("checksum"));
        let mut newer = bytes.clone();
        newer[MAGIC.len()] = FORMAT_V1 + 1;
        assert!(err(&newer).contains("newer"));
        assert!(err(b"RKMSSNAP\x02xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
            .contains("not a raftkms backup"));
        // A header that lies about the state, with recomputed checksums, is refused too.
        let (mut h, _) = make(origin(), &state(), &tag).unwrap();
        let snap = snapshot::encode(&state()).unwrap();
        h.counts.insert("records".into(), 4);
        assert!(err(&assemble(&h, &snap)).contains("header says"));
        // So is a state with a row that does not load as itself.
        let (h, _) = make(origin(), &state(), &tag).unwrap();
        let mut odd = state();
        // A record name that is not UTF-8 loads (lossily) under another name: sorted last, so
        // only the content differs from the canonical form.
        let v = odd
            .pairs
            .iter()
            .find(|(k, _)| k.starts_with(b"r/"))
            .unwrap()
            .1
            .clone();
        odd.pairs.push((b"r/\xff".to_vec(), v));
        let snap = snapshot::encode(&odd).unwrap();
        let mut h = h;
        h.snapshot_bytes = snap.len() as u64;
        let e = err(&assemble(&h, &snap));
        assert!(e.contains("canonical"), "{e}");
    }

    #[test]
    fn nothing_applied_or_no_root_key_is_nothing_to_back_up() {
        let mut s = state();
        s.last_applied = None;
        assert!(make(origin(), &s, &tag)
            .unwrap_err()
            .to_string()
            .contains("nothing to back up"));
        let mut s = state();
        s.pairs.retain(|(k, _)| !k.starts_with(b"R/"));
        assert!(make(origin(), &s, &tag)
            .unwrap_err()
            .to_string()
            .contains("no root key"));
    }
}
