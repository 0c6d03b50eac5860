//! openraft glue: types, RocksDB log store and state machine, snapshots, network, read gate.

pub mod error;
pub mod log_store;
pub mod network;
pub mod read_gate;
pub mod read_lease;
pub mod service;
pub mod snapshot;
pub mod state_machine;
pub mod types;
