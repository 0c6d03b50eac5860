//! The internal listener's decoders: Raft RPC bodies, forwarded writes, snapshot chunks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::codec;
use raftkms::raft::types::typ::{AppendEntriesRequest, VoteRequest};
use raftkms::registry::Envelope;
use raftkms::transport::raft_network::decode_snapshot_chunk;

fuzz_target!(|data: &[u8]| {
    let _ = codec::decode::<AppendEntriesRequest>("append entries", data);
    let _ = codec::decode::<VoteRequest>("vote", data);
    let _ = codec::decode::<Envelope>("forwarded write", data);
    let _ = decode_snapshot_chunk(data);
});
