//! Opening the node's RocksDB and checking that it belongs to this cluster and node.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};

pub const CF_LOG: &str = "raft_log";
pub const CF_RAFT_META: &str = "raft_meta";
pub const CF_REGISTRY: &str = "registry";
pub const CF_SM_META: &str = "sm_meta";
pub const CF_NODE: &str = "node";
const ALL_CFS: [&str; 5] = [CF_LOG, CF_RAFT_META, CF_REGISTRY, CF_SM_META, CF_NODE];

/// Storage-layer failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("unreadable record: {0}")]
    Codec(#[from] CodecError),
    #[error("column family `{0}` is missing")]
    MissingColumnFamily(&'static str),
    #[error(
        "data directory {dir} belongs to cluster `{found_cluster}` node {found_node}, \
         but this node is configured as cluster `{want_cluster}` node {want_node}; \
         refusing to start (use an empty data-dir for a new member)"
    )]
    ForeignDataDir {
        dir: String,
        found_cluster: String,
        found_node: u64,
        want_cluster: String,
        want_node: u64,
    },
    #[error("I/O on {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("corrupt snapshot: {0}")]
    CorruptSnapshot(String),
    #[error("backup refused: {0}")]
    CorruptBackup(String),
    #[error(
        "data directory {path} has mode {mode:04o}: others must have no access to a KMS's \
         data, and its group no write access (chmod 700 {path})"
    )]
    OpenDataDir { path: String, mode: u32 },
    #[error(
        "the cluster's feature level is {level}, this build (raftkms {release}) knows up to \
         {supported}: the cluster was upgraded past this release; run the release the other \
         members run (docs/operations.md, \"Rolling upgrades\")"
    )]
    FeatureLevelTooNew {
        level: u32,
        supported: u32,
        release: &'static str,
    },
}

/// Which cluster and node a data directory was created for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: u64,
}

/// Returns the handle of a column family that `open` created.
pub fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily, StoreError> {
    db.cf_handle(name)
        .ok_or(StoreError::MissingColumnFamily(name))
}

/// Write options for writes that must be on disk before they are acknowledged.
pub fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Creates the data directory 0700 if it is missing, and refuses one that others may read or enter
/// or that its group may write (as PostgreSQL refuses a data directory beyond 0750). Idempotent.
pub fn prepare_data_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |error| StoreError::Io {
        path: dir.display().to_string(),
        error,
    };
    crate::durable_fs::create_dir_all_private(dir).map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o027 != 0 {
        return Err(StoreError::OpenDataDir {
            path: dir.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Whether the data directory already holds a database (a node that has run before).
pub fn has_database(dir: &Path) -> bool {
    dir.join("db").join("CURRENT").exists()
}

/// Opens (creating if needed) the database under `dir/db` and checks its identity.
pub fn open(dir: &Path, identity: &Identity) -> Result<Arc<DB>, StoreError> {
    prepare_data_dir(dir)?;
    let path = dir.join("db");
    // The directory's name must survive a power loss too: RocksDB syncs what is inside it.
    crate::durable_fs::create_dir_all(&path).map_err(|error| StoreError::Io {
        path: path.display().to_string(),
        error,
    })?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(3);
    opts.set_max_log_file_size(4 << 20);
    opts.set_paranoid_checks(true);
    let cfs = ALL_CFS
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
    let db = DB::open_cf_descriptors(&opts, &path, cfs)?;

    let node_cf = cf(&db, CF_NODE)?;
    match db.get_cf(node_cf, b"identity")? {
        Some(bytes) => {
            let found: Identity = codec::decode("identity", &bytes)?;
            if &found != identity {
                return Err(StoreError::ForeignDataDir {
                    dir: dir.display().to_string(),
                    found_cluster: found.cluster_id,
                    found_node: found.node_id,
                    want_cluster: identity.cluster_id.clone(),
                    want_node: identity.node_id,
                });
            }
        }
        None => {
            db.put_cf_opt(
                node_cf,
                b"identity",
                codec::encode("identity", identity)?,
                &synced(),
            )?;
        }
    }
    Ok(Arc::new(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_data_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // A new data directory inside the temporary one (which others may read).
        let dir = tmp.path().join("data");
        let a = Identity {
            cluster_id: "a".into(),
            node_id: 1,
        };
        drop(open(&dir, &a).unwrap());
        drop(open(&dir, &a).unwrap());
        let b = Identity {
            cluster_id: "b".into(),
            node_id: 1,
        };
        let err = open(&dir, &b).unwrap_err();
        assert!(matches!(err, StoreError::ForeignDataDir { .. }), "{err}");
        let other_node = Identity {
            cluster_id: "a".into(),
            node_id: 2,
        };
        assert!(matches!(
            open(&dir, &other_node),
            Err(StoreError::ForeignDataDir { .. })
        ));
    }

    #[test]
    fn a_data_directory_others_may_read_is_refused_and_a_new_one_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let a = Identity {
            cluster_id: "a".into(),
            node_id: 1,
        };
        let open_dir = tmp.path().join("open");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = open(&open_dir, &a).unwrap_err();
        assert!(
            matches!(err, StoreError::OpenDataDir { mode: 0o755, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 700"));
        let new = tmp.path().join("new/data");
        drop(open(&new, &a).unwrap());
        let mode = std::fs::metadata(&new).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn corrupt_database_is_an_error_not_a_reset() {
        let tmp = tempfile::tempdir().unwrap();
        // A new data directory inside the temporary one (which others may read).
        let dir = tmp.path().join("data");
        let a = Identity {
            cluster_id: "a".into(),
            node_id: 1,
        };
        drop(open(&dir, &a).unwrap());
        // Overwrite every file of the database with garbage.
        for entry in std::fs::read_dir(dir.join("db")).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("MANIFEST") || name == "CURRENT" {
                std::fs::write(&p, b"garbage garbage garbage").unwrap();
            }
        }
        assert!(open(&dir, &a).is_err());
    }
}
