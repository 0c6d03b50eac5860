//! The peer transport: openraft's network over HTTP ([`raft_network`]) and the node's other calls
//! to its peers ([`peer`]). The server side of these calls lives in `http::internal`.

pub mod peer;
pub mod raft_network;
pub mod version;

pub use peer::{http_client, PeerSecurity, Peers};
