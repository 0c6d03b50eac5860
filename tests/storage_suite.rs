//! openraft's storage conformance suite (vote, append, truncate, purge, membership recovery,
//! snapshot install, …) run against our RocksDB log store and state machine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use raftkms::metrics::Metrics;
use raftkms::raft::log_store::LogStore;
use raftkms::raft::snapshot::SnapshotDir;
use raftkms::raft::state_machine::StateMachine;
use raftkms::raft::types::{StorageError, TypeConfig};
use raftkms::storage::{open, Identity};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
        let identity = Identity {
            cluster_id: "suite".into(),
            node_id: 1,
        };
        // The data directory must be private (the temporary directory may be readable by others).
        let data = dir.path().join("data");
        let db = open(&data, &identity).map_err(|e| openraft::StorageIOError::write(&e))?;
        let metrics = Arc::new(Metrics::new());
        let log = LogStore::new(db.clone(), metrics.clone())
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        let snapshots = SnapshotDir::new(&data).map_err(|e| openraft::StorageIOError::write(&e))?;
        let sm = StateMachine::open(db, snapshots, metrics)
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(RocksBuilder)
}
