//! raftkms: a Raft-replicated Key Management Service speaking the Tencent Cloud KMS API.
//!
//! The crate is organised as the design describes: [`registry`] (pure replicated domain),
//! [`raft`] (openraft glue over RocksDB), [`api`] (client listener), [`node`] (wiring),
//! plus the operator tools ([`admin`], [`dev`]).

pub mod admin;
pub mod api;
pub mod bench;
pub mod client;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod drill;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod registry;
pub mod scheduler;
pub mod storage;
pub mod telemetry;

pub use config::NodeConfig;
pub use node::run;
