//! How long ago this node last heard from a leader that had a quorum: feeds `/readyz` and the
//! `X-Raftkms-Leader-Contact-Ms` header of stale answers.

use std::sync::atomic::{AtomicU64, Ordering};

use super::leader::LeaderView;
use crate::clock::SharedClock;

/// The last accepted append from a leader, on the injected monotonic clock.
pub struct LeaderContact {
    leader: LeaderView,
    clock: SharedClock,
    /// When this node last accepted an append (heartbeat) from a leader, in monotonic ms; 0 =
    /// never.
    last: AtomicU64,
}

impl LeaderContact {
    pub fn new(leader: LeaderView, clock: SharedClock) -> Self {
        LeaderContact {
            leader,
            clock,
            last: AtomicU64::new(0),
        }
    }

    /// Records an accepted append (or heartbeat) from a leader that a quorum acknowledged
    /// `quorum_age_ms` ago: the contact is dated back to that acknowledgement. It never moves
    /// backwards (appends on parallel connections may arrive out of order).
    pub fn note(&self, quorum_age_ms: u64) {
        let at = self
            .clock
            .monotonic_ms()
            .saturating_sub(quorum_age_ms)
            .max(1);
        self.last.fetch_max(at, Ordering::Relaxed);
    }

    /// Milliseconds since this node last heard from a leader: for the leader, since a quorum
    /// last acknowledged it; for a follower, since the last append it accepted plus how long the
    /// sending leader had then gone without a quorum acknowledgement. `None` = never.
    pub fn millis_since(&self) -> Option<u64> {
        {
            let m = self.leader.raft().metrics();
            let m = m.borrow();
            if m.current_leader == Some(self.leader.id()) {
                return m.millis_since_quorum_ack;
            }
        }
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            t => Some(self.clock.monotonic_ms().saturating_sub(t)),
        }
    }
}
