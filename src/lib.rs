//! raftkms: a Raft-replicated Key Management Service speaking the Tencent Cloud KMS API.
//!
//! Layers, lowest first (docs/architecture.md opens with the module map and the import rule):
//! [`codec`], [`clock`], [`crypto`] → [`registry`] (pure replicated domain) → [`storage`] →
//! [`raft`] (consensus) → [`transport`] (peer calls) → [`node`] (the node split by concern) →
//! [`kms`] (the dialect-neutral KMS core) and [`scheduler`] → [`http`] (API dialects and the
//! internal listener) → [`server`] (the process) → the operator tools ([`admin`], [`client`],
//! [`dev`], [`drill`], [`bench`]).

pub mod admin;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod drill;
pub mod durable_fs;
pub mod http;
pub mod kms;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod raft;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod wire;

pub use config::NodeConfig;
pub use server::run;
