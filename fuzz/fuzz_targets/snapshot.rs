//! Snapshot files (both layouts), bare and behind a valid magic and checksum so the parser
//! behind the checksum is reached.
#![no_main]
use libfuzzer_sys::fuzz_target;
use raftkms::raft::snapshot;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let _ = snapshot::decode(data);
    let _ = snapshot::read_header(data);
    let mut framed = b"RKMSSNAP".to_vec();
    framed.extend_from_slice(data);
    let sum = Sha256::digest(&framed);
    framed.extend_from_slice(&sum);
    let _ = snapshot::decode(&framed);
    let _ = snapshot::read_header(&framed);
});
