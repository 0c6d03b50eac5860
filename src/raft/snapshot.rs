//! The snapshot format and the file that holds the current snapshot.
//!
//! Layout: `b"RKMSSNAP"` ‖ versioned bincode [`SnapshotBody`] ‖ SHA-256 of everything before.
//! A snapshot is verified (magic, version, checksum, decodable registry) before it is installed:
//! openraft treats a failed install as fatal, so garbage must be caught here, by us.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::types::{LogId, StoredMembership};
use crate::codec;
use crate::storage::db::StoreError;

const MAGIC: &[u8; 8] = b"RKMSSNAP";
const SUM_LEN: usize = 32;
const CURRENT: &str = "current.snap";

/// Everything a snapshot carries: the applied position, the membership and the registry's
/// canonical (key, value) pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub snapshot_id: String,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Serializes a snapshot with its checksum.
pub fn encode(body: &SnapshotBody) -> Result<Vec<u8>, StoreError> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&codec::encode("snapshot", body)?);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Verifies and parses a snapshot.
pub fn decode(bytes: &[u8]) -> Result<SnapshotBody, StoreError> {
    if bytes.len() < MAGIC.len() + 1 + SUM_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(StoreError::CorruptSnapshot(
            "not a raftkms snapshot (bad magic or too short)".into(),
        ));
    }
    let (content, sum) = bytes.split_at(bytes.len() - SUM_LEN);
    if Sha256::digest(content).as_slice() != sum {
        return Err(StoreError::CorruptSnapshot("checksum mismatch".into()));
    }
    Ok(codec::decode("snapshot", &content[MAGIC.len()..])?)
}

/// The directory holding the node's current snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    pub fn new(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join("snapshots");
        fs::create_dir_all(&dir).map_err(|error| StoreError::Io {
            path: dir.display().to_string(),
            error,
        })?;
        Ok(SnapshotDir { dir })
    }

    /// Atomically replaces the current snapshot: temp file, fsync, rename, fsync directory.
    pub fn save(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.dir.join("current.snap.tmp");
        let io = |error| StoreError::Io {
            path: tmp.display().to_string(),
            error,
        };
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, self.dir.join(CURRENT)).map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// The current snapshot's bytes, if one was ever saved.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(CURRENT);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::Io {
                path: path.display().to_string(),
                error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> SnapshotBody {
        SnapshotBody {
            snapshot_id: "1-5-x".into(),
            last_applied: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                5,
            )),
            membership: StoredMembership::default(),
            pairs: vec![
                (b"r/a".to_vec(), vec![1, 1, 2]),
                (b"r/b".to_vec(), vec![1, 0]),
            ],
        }
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let bytes = encode(&body()).unwrap();
        assert_eq!(decode(&bytes).unwrap(), body());
        for i in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn save_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let sd = SnapshotDir::new(dir.path()).unwrap();
        assert!(sd.load().unwrap().is_none());
        sd.save(b"one").unwrap();
        sd.save(b"two").unwrap();
        assert_eq!(sd.load().unwrap().unwrap(), b"two");
    }
}
