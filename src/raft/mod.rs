//! Consensus: openraft's type configuration, the RocksDB log store and state machine,
//! snapshots, the read gate, the leader's read lease and follower read leases. No wire format lives here: the peer
//! transport is `transport`, the internal HTTP handlers are `http::internal`.

pub mod acks;
pub mod backup;
pub mod error;
pub mod lease;
pub mod log_store;
pub mod read_gate;
pub mod read_lease;
pub mod snapshot;
pub mod state_machine;
pub mod types;
