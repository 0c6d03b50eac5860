//! The leader's record of when its appends were accepted (docs/architecture.md §6a, "Grant"):
//! for each follower, the send time of the latest append of the leader's term that the follower
//! accepted. An accepted append (any answer but a higher vote: openraft touches the follower's
//! vote time before it checks the log) makes the follower refuse every vote request for
//! `election-max-ms` after it handled it, so a quorum whose acknowledged appends were all sent
//! after an instant *A* keeps any other leader from being elected until `election-max-ms` after
//! *A*. A lease grant needs exactly that for *A* = when its request arrived; every append and
//! heartbeat the leader sends anyway carries it, so a grant under write load needs no
//! confirmation round of its own.
//!
//! Times are the leader's monotonic clock, taken before each request is encoded and sent (never
//! later than the follower's handling of it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::types::NodeId;

/// The latest accepted append to one follower: its leader's term and node, and when it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Accepted {
    term: u64,
    leader: NodeId,
    sent: Instant,
}

/// Send times of accepted appends, per follower.
#[derive(Debug, Default)]
pub struct AckClock {
    accepted: Mutex<BTreeMap<NodeId, Accepted>>,
    noted: Notify,
}

impl AckClock {
    /// `target` accepted an append that `leader` sent in `term` at `sent`. Never moves a
    /// follower's record back in time within a term, nor to an older term.
    pub fn note(&self, target: NodeId, term: u64, leader: NodeId, sent: Instant) {
        let next = Accepted { term, leader, sent };
        let mut accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        let keep = match accepted.get(&target) {
            Some(old) if old.term > term => *old,
            Some(old) if old.term == term && old.leader == leader => Accepted {
                sent: old.sent.max(sent),
                ..next
            },
            _ => next,
        };
        accepted.insert(target, keep);
        drop(accepted);
        self.noted.notify_waiters();
    }

    /// The latest instant *A* such that, in every configuration of `configs` (one, or the two of
    /// a joint configuration), a majority of voters accepted appends that `me` sent in `term` at
    /// or after *A* (`me` counts as accepting everything, at `now`). `None` when some
    /// configuration has no such majority (or is empty).
    pub fn quorum_since(
        &self,
        me: NodeId,
        term: u64,
        configs: &[BTreeSet<NodeId>],
        now: Instant,
    ) -> Option<Instant> {
        if configs.is_empty() {
            return None;
        }
        let accepted = self.accepted.lock().unwrap_or_else(|p| p.into_inner());
        let mut since: Option<Instant> = None;
        for voters in configs {
            let mut times: Vec<Instant> = voters
                .iter()
                .filter_map(|v| {
                    if *v == me {
                        return Some(now);
                    }
                    accepted
                        .get(v)
                        .filter(|a| a.term == term && a.leader == me)
                        .map(|a| a.sent)
                })
                .collect();
            let majority = voters.len() / 2 + 1;
            if times.len() < majority {
                return None;
            }
            // The majority-th latest: that many voters accepted appends sent at or after it.
            times.sort_unstable_by(|a, b| b.cmp(a));
            let t = times[majority - 1];
            since = Some(since.map_or(t, |s| s.min(t)));
        }
        since
    }

    /// A future that completes at the next [`AckClock::note`] after this call (enabled at once,
    /// so a note between this call and the first poll is not missed).
    pub fn next_note(&self) -> impl std::future::Future<Output = ()> + '_ {
        let mut notified = Box::pin(self.noted.notified());
        notified.as_mut().enable();
        notified
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_majority_of_accepted_appends_of_this_term_and_leader_dates_the_quorum() {
        let c = AckClock::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let now = at(1_000);
        let five = [set(&[1, 2, 3, 4, 5])];
        // Only the leader itself: no majority of five.
        assert_eq!(c.quorum_since(1, 7, &five, now), None);
        c.note(2, 7, 1, at(100));
        assert_eq!(c.quorum_since(1, 7, &five, now), None);
        c.note(3, 7, 1, at(50));
        // Leader (now), 2 (100) and 3 (50): three of five since 50.
        assert_eq!(c.quorum_since(1, 7, &five, now), Some(at(50)));
        c.note(4, 7, 1, at(200));
        // The third latest of now, 200, 100, 50.
        assert_eq!(c.quorum_since(1, 7, &five, now), Some(at(100)));
        // An older request answered late never moves a follower back.
        c.note(4, 7, 1, at(10));
        assert_eq!(c.quorum_since(1, 7, &five, now), Some(at(100)));
        // Acceptances of another term or of another leader do not count for this one.
        assert_eq!(c.quorum_since(1, 8, &five, now), None);
        assert_eq!(c.quorum_since(2, 7, &five, now), None);
        // A newer term replaces, an older one is ignored.
        c.note(2, 8, 1, at(300));
        assert_eq!(c.quorum_since(1, 7, &five, now), Some(at(50)));
        c.note(2, 7, 1, at(900));
        assert_eq!(c.quorum_since(1, 7, &five, now), Some(at(50)));
    }

    #[test]
    fn a_joint_configuration_needs_a_majority_of_each() {
        let c = AckClock::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let now = at(1_000);
        let joint = [set(&[1, 2, 3]), set(&[3, 4, 5])];
        c.note(2, 3, 1, at(400));
        // A majority of the first only.
        assert_eq!(c.quorum_since(1, 3, &joint, now), None);
        c.note(4, 3, 1, at(500));
        c.note(5, 3, 1, at(200));
        // First: {1: now, 2: 400} → 400; second: {4: 500, 5: 200} → 200.
        assert_eq!(c.quorum_since(1, 3, &joint, now), Some(at(200)));
        assert_eq!(c.quorum_since(1, 3, &[], now), None);
        assert_eq!(c.quorum_since(1, 3, &[BTreeSet::new()], now), None);
        // A single voter (the leader itself).
        assert_eq!(c.quorum_since(1, 3, &[set(&[1])], now), Some(now));
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_the_next_note() {
        let c = std::sync::Arc::new(AckClock::default());
        let wait = c.next_note();
        c.note(2, 1, 1, Instant::now());
        tokio::time::timeout(Duration::from_secs(1), wait)
            .await
            .expect("woken by the note");
    }
}
