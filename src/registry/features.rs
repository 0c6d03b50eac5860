//! The cluster's feature level: which commands (and persisted formats) every member is known to
//! understand. A command newer than the level is never proposed (`Command::required_level`), so
//! a node of the previous release keeps applying the log during a rolling upgrade; the level is
//! raised by [`Command::SetFeatureLevel`](super::Command::SetFeatureLevel) once every member
//! reports a release that knows it (`raftkms cluster upgrade finalize`, docs/operations.md).
//!
//! A registry that never saw a raise is at [`BASE_LEVEL`] and stores nothing for it, exactly as
//! the first release did (whose snapshots and data directories therefore stay readable by it
//! until the level rises).

use serde::{Deserialize, Serialize};

use super::{Change, RegistryError};
use crate::codec::{self, CodecError};

/// The level of a registry that never saw a raise: the first release (0.1.0).
pub const BASE_LEVEL: u32 = 1;

/// The highest level this build understands. Level 2 adds `SetFeatureLevel` itself.
pub const FEATURE_LEVEL: u32 = 2;

/// The one key of the feature level in the registry column family.
pub const KEY: &[u8] = b"F/level";

/// The stored form (versioned by the codec's byte, like every registry value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    level: u32,
}

/// A checked raise (see `Registry::apply`).
pub(super) struct Staged {
    level: u32,
    stored: Vec<u8>,
}

/// The applied feature level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    level: u32,
}

impl Default for Features {
    fn default() -> Self {
        Features { level: BASE_LEVEL }
    }
}

impl Features {
    /// The cluster's feature level.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// The level only rises: a raise to the current level or below is refused (deterministically,
    /// whatever the applying node's own build supports; a node too old for the new level stops
    /// in the state machine instead of applying it).
    pub(super) fn stage_raise(&self, level: u32) -> Result<Staged, RegistryError> {
        if level <= self.level {
            return Err(RegistryError::FeatureLevelNotRaised {
                current: self.level,
            });
        }
        Ok(Staged {
            level,
            stored: super::encode("feature level", &Stored { level })?,
        })
    }

    pub(super) fn commit(&mut self, staged: Staged, changes: &mut Vec<Change>) {
        self.level = staged.level;
        changes.push(Change::Put(KEY.to_vec(), staged.stored));
    }

    /// Loads the stored level (`true`), or says the key is not this table's (`false`).
    pub(super) fn load(&mut self, key: &[u8], value: &[u8]) -> Result<bool, CodecError> {
        if key != KEY {
            return Ok(false);
        }
        let s: Stored = codec::decode("feature level", value)?;
        self.level = s.level;
        Ok(true)
    }

    /// Nothing at the base level, so a registry that never saw a raise dumps (and digests,
    /// and snapshots) exactly as the first release's does.
    pub(super) fn dump(&self, out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), CodecError> {
        if self.level != BASE_LEVEL {
            out.push((
                KEY.to_vec(),
                codec::encode("feature level", &Stored { level: self.level })?,
            ));
        }
        Ok(())
    }
}
