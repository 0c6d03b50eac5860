//! `raftkms restore` (docs/operations.md, "Backups and restore"): seeds a new data directory from
//! a backup, so that `raftkms serve` starts a one-voter cluster holding the backup's state; other
//! nodes then join it as usual.
//!
//! Everything is checked before anything is written: the whole file (`raft::backup::decode`), an
//! absent or empty data directory, the cluster id, and that this node's unseal key opens every
//! root-key version in the backup (the unseal key is never created here). The directory is
//! built beside the data directory and renamed into place once complete, so a failed restore
//! leaves nothing behind.
//!
//! What is rewritten: the membership (this node alone, at the backup's position), the vote (the
//! backup's term, so the first election and entry sort after its log id), and the log (empty,
//! purged up to the backup's position, which keeps the index, and so the request-id window,
//! where it was). What is dropped: the audit checkpoints of the old cluster's nodes (`h/`): the
//! restored node starts a new trail, which the old chain heads would refuse.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{Membership, Vote};

use super::StartError;
use crate::config::NodeConfig;
use crate::crypto::SecretString;
use crate::metrics::Metrics;
use crate::raft::backup::{self, BackupHeader};
use crate::raft::log_store::LogStore;
use crate::raft::snapshot::{self, SnapshotDir};
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{Node, SnapshotMeta, StoredMembership};
use crate::registry::{audit_heads, Registry};
use crate::storage::{self, Identity};

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub header: BackupHeader,
    /// The digest of the installed state (the backup's, less the dropped audit checkpoints).
    pub digest: String,
    pub dropped_audit_checkpoints: usize,
}

fn refuse(why: impl Into<String>) -> StartError {
    StartError::Config(format!(
        "restore refused, nothing was written: {}",
        why.into()
    ))
}

/// Restores `file` into `config`'s data directory (see the module docs). `keep_cluster_id`:
/// the backup's cluster id must then equal the configuration's (restoring a cluster under its
/// own id, e.g. after losing every node); otherwise they must differ (a new cluster: the old one
/// may still run, and its nodes must never reach this one).
pub async fn restore(
    config: &NodeConfig,
    unseal_secret: Option<&SecretString>,
    file: &Path,
    keep_cluster_id: bool,
) -> Result<Restored, StartError> {
    let bytes =
        std::fs::read(file).map_err(|e| refuse(format!("cannot read {}: {e}", file.display())))?;
    let b = backup::decode(&bytes).map_err(|e| refuse(format!("{}: {e}", file.display())))?;
    let header = b.header;
    let mut state = b.state;
    match (keep_cluster_id, header.cluster_id == config.cluster_id) {
        (false, true) => {
            return Err(refuse(format!(
                "the backup is of cluster `{}`, the id this node is configured with: a restored \
                 cluster gets a new cluster-id (and new certificates) so that nodes of the old \
                 one can never reach it; pass --same-cluster-id to restore it under its own id \
                 (only when none of its old nodes will run again)",
                header.cluster_id
            )))
        }
        (true, false) => {
            return Err(refuse(format!(
                "--same-cluster-id, but the backup is of cluster `{}` and this node is \
                 configured as `{}`",
                header.cluster_id, config.cluster_id
            )))
        }
        _ => {}
    }
    let data_dir = config.data_dir.clone();
    if storage::has_database(&data_dir) || dir_has_entries(&data_dir) {
        return Err(refuse(format!(
            "{} is not empty: restore only into a new data directory",
            data_dir.display()
        )));
    }
    // The unseal key must already exist and open every root-key version of the backup.
    let unseal = super::open_unseal_key_existing(config, unseal_secret)
        .map_err(|e| refuse(e.to_string()))?;
    let registry = Registry::load(state.pairs.iter().cloned())
        .map_err(|e| refuse(format!("the backup's state: {e}")))?;
    crate::raft::state_machine::check_feature_level(registry.feature_level())
        .map_err(|e| refuse(format!("the backup was taken from a newer cluster: {e}")))?;
    let mut tag_key = None;
    for v in registry.root_keys().versions() {
        let sealed = registry.root_keys().sealed(v).unwrap_or_default();
        let root = unseal.unseal(v, sealed).map_err(|e| {
            refuse(format!(
                "this node's unseal key does not open root-key version {v} of the backup ({e}): \
                 install the unseal key of the cluster the backup was taken from"
            ))
        })?;
        if v == header.mac_root_version {
            tag_key = Some(root);
        }
    }
    drop(registry);
    drop(unseal);
    // The tag proves the file was made by a holder of this root key, unchanged since.
    let (signed, tag) = backup::signed(&bytes)?;
    let authentic = tag_key.is_some_and(|root| root.verify_mac(backup::MAC_PURPOSE, signed, tag));
    if !authentic {
        return Err(refuse(format!(
            "{}: its authentication tag does not check under the backup's root key (version {}): \
             the file was not written by a node of that cluster, or was changed since",
            file.display(),
            header.mac_root_version
        )));
    }
    drop(bytes);

    // The state as this cluster will hold it.
    let before = state.pairs.len();
    state
        .pairs
        .retain(|(k, _)| !k.starts_with(audit_heads::PREFIX));
    let dropped_audit_checkpoints = before - state.pairs.len();
    let at = header.last_applied;
    let me = Node {
        raft_addr: config.raft_advertise(),
        api_addr: config.api_advertise(),
        region: config.region.clone(),
    };
    state.membership = StoredMembership::new(
        Some(at),
        Membership::new(
            vec![std::collections::BTreeSet::from([config.node_id])],
            std::collections::BTreeMap::from([(config.node_id, me)]),
        ),
    );
    state.snapshot_id = format!("restored-{}-{}", at.leader_id.term, at.index);
    let digest = Registry::load(state.pairs.iter().cloned())
        .and_then(|r| r.digest())
        .map_err(|e| refuse(format!("the backup's state: {e}")))?;
    let snap = snapshot::encode(&state)?;

    let tmp = staging_dir(&data_dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .map_err(|e| refuse(format!("cannot remove the leftover {}: {e}", tmp.display())))?;
    }
    let built = build(config, &tmp, &state, snap).await;
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // An empty data directory (checked above) is replaced by the rename.
    std::fs::rename(&tmp, &data_dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        refuse(format!(
            "cannot move {} to {}: {e}",
            tmp.display(),
            data_dir.display()
        ))
    })?;
    crate::durable_fs::sync_parent(&data_dir).map_err(|error| {
        StartError::Store(storage::StoreError::Io {
            path: data_dir.display().to_string(),
            error,
        })
    })?;
    Ok(Restored {
        header,
        digest,
        dropped_audit_checkpoints,
    })
}

/// Where the new data directory is built: beside the final one, on the same file system (a
/// trailing `/` or `.` in the configured path does not put it inside).
fn staging_dir(data_dir: &Path) -> PathBuf {
    let clean: PathBuf = data_dir.components().collect();
    let mut name = clean.as_os_str().to_os_string();
    name.push(".restoring");
    PathBuf::from(name)
}

fn dir_has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Writes a complete data directory into `dir`: identity, the state installed as a snapshot,
/// the vote and the purged log.
async fn build(
    config: &NodeConfig,
    dir: &Path,
    state: &snapshot::SnapshotBody,
    snap: Vec<u8>,
) -> Result<(), StartError> {
    let identity = Identity {
        cluster_id: config.cluster_id.clone(),
        node_id: config.node_id,
    };
    let db = storage::open(dir, &identity)?;
    let metrics = Arc::new(Metrics::new());
    let raft_err = |e: openraft::StorageError<u64>| StartError::Raft(e.to_string());
    let at = state
        .last_applied
        .ok_or_else(|| refuse("the backup holds no applied position"))?;
    {
        let mut sm = StateMachine::open(db.clone(), SnapshotDir::new(dir)?, metrics.clone())?;
        let meta = SnapshotMeta {
            last_log_id: Some(at),
            last_membership: state.membership.clone(),
            snapshot_id: state.snapshot_id.clone(),
        };
        sm.install_snapshot(&meta, Box::new(std::io::Cursor::new(snap)))
            .await
            .map_err(raft_err)?;
        let mut log = LogStore::new(db.clone(), metrics)?;
        log.save_vote(&Vote::new(at.leader_id.term, config.node_id))
            .await
            .map_err(raft_err)?;
        log.save_committed(Some(at)).await.map_err(raft_err)?;
        log.purge(at).await.map_err(raft_err)?;
    }
    db.flush_wal(true)
        .map_err(|e| StartError::Store(storage::StoreError::Rocks(e)))?;
    drop(db);
    crate::durable_fs::sync_dir(dir).map_err(|error| {
        StartError::Store(storage::StoreError::Io {
            path: dir.display().to_string(),
            error,
        })
    })?;
    Ok(())
}
