//! RocksDB: one database per node, one column family per kind of data.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `raft_log` | log index, u64 big-endian | versioned `Entry` |
//! | `raft_meta` | `vote`, `purged`, `committed` | versioned value |
//! | `registry` | table prefix + id | versioned record (see `registry`) |
//! | `sm_meta` | `applied`, `membership` | versioned value |
//! | `node` | `identity` | versioned `Identity` |
//!
//! All column families share one write-ahead log, so a synced write makes every earlier write
//! durable too; the log store relies on that (see `raft::log_store`).

pub mod db;

pub use db::{
    has_database, open, prepare_data_dir, Identity, StoreError, CF_LOG, CF_NODE, CF_RAFT_META,
    CF_REGISTRY, CF_SM_META,
};
