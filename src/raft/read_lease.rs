//! The leader's read lease (docs/architecture.md §6).
//!
//! A quorum confirmed this node's leadership in `term` by acknowledging appends sent after
//! `from`; each of those followers then refuses to vote for anyone for `election-max-ms`. The
//! leader itself does not (openraft leaves its own vote time at its election), so any candidate
//! must win this leader's vote: every vote request first voids the leases of lower terms
//! ([`ReadLease::fence`]). Hence no other leader can commit anything before `from` +
//! `election-max-ms` while the lease is in force, and until `from + read-lease-ms` (shorter, for
//! clock-rate margin) the leader's commit index is the cluster's: a read index is
//! `max(index, commit index now)` without another round. `index` is the confirmed round's read
//! index, which covers the leader's first entry of its term.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Grant {
    term: u64,
    until: Instant,
    index: u64,
}

/// The lease a leader holds, and the fence that vote requests raise against it.
#[derive(Debug)]
pub struct ReadLease {
    length: Duration,
    grant: Mutex<Option<Grant>>,
    /// The highest term of any vote request received.
    fence: AtomicU64,
    /// A renewal started early (before the lease ran out) is under way.
    renewing: AtomicBool,
}

impl ReadLease {
    /// A lease of `length` after each confirmed round; zero never grants one.
    pub fn new(length: Duration) -> Self {
        ReadLease {
            length,
            grant: Mutex::new(None),
            fence: AtomicU64::new(0),
            renewing: AtomicBool::new(false),
        }
    }

    /// Whether a read served from the lease at `now` in `term` should start a round in the
    /// background: the lease is in its last third and no such round is under way (then it is
    /// marked as started; [`ReadLease::renewal_done`] clears it). Steady reads then keep the
    /// lease in force instead of one of them waiting for a round each time it runs out.
    pub fn start_early_renewal(&self, now: Instant, term: u64) -> bool {
        let Some(g) = *self.grant.lock().unwrap_or_else(|p| p.into_inner()) else {
            return false;
        };
        if g.term != term || now >= g.until || g.until - now > self.length / 3 {
            return false;
        }
        !self.renewing.swap(true, Ordering::SeqCst)
    }

    /// The round started by [`ReadLease::start_early_renewal`] ended (renewed or not).
    pub fn renewal_done(&self) {
        self.renewing.store(false, Ordering::SeqCst);
    }

    /// Voids every lease of a term below `term`: called before a vote request reaches openraft,
    /// which may grant it.
    pub fn fence(&self, term: u64) {
        self.fence.fetch_max(term, Ordering::SeqCst);
    }

    /// Whether a vote request of a term above `term` has been received (and so may have been
    /// granted: the fence is raised before openraft decides).
    pub fn fenced_above(&self, term: u64) -> bool {
        self.fence.load(Ordering::SeqCst) > term
    }

    /// Records a read-index round in `term` that started at `from` and was confirmed with
    /// `index`; the later-ending lease wins.
    pub fn renew(&self, term: u64, from: Instant, index: u64) {
        if self.length.is_zero() {
            return;
        }
        let until = from + self.length;
        let mut g = self.grant.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none_or(|g| g.term != term || g.until < until) {
            *g = Some(Grant { term, until, index });
        }
    }

    /// The read index the lease allows at `now` for a node that leads in `term` (as its metrics
    /// say) and knows `committed`; `None` when there is no lease in force for that term.
    pub fn read_index(&self, now: Instant, term: u64, committed: u64) -> Option<u64> {
        let g = (*self.grant.lock().unwrap_or_else(|p| p.into_inner()))?;
        if now >= g.until || g.term != term || self.fence.load(Ordering::SeqCst) > g.term {
            return None;
        }
        Some(g.index.max(committed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_renewal_starts_once_in_the_last_third_of_a_lease() {
        let lease = ReadLease::new(Duration::from_millis(300));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(!lease.start_early_renewal(t0, 1), "no lease yet");
        lease.renew(1, t0, 10);
        assert!(
            !lease.start_early_renewal(at(150), 1),
            "not yet in its last third"
        );
        assert!(!lease.start_early_renewal(at(250), 2), "another term");
        assert!(lease.start_early_renewal(at(250), 1));
        assert!(!lease.start_early_renewal(at(260), 1), "one under way");
        lease.renewal_done();
        assert!(!lease.start_early_renewal(at(300), 1), "ended");
        assert!(lease.start_early_renewal(at(299), 1));
    }

    #[test]
    fn a_lease_runs_for_its_length_in_its_term_only() {
        let lease = ReadLease::new(Duration::from_millis(250));
        let t0 = Instant::now();
        assert_eq!(lease.read_index(t0, 3, 10), None, "no round yet");
        lease.renew(3, t0, 12);
        assert_eq!(
            lease.read_index(t0 + Duration::from_millis(100), 3, 10),
            Some(12)
        );
        // The commit index moves on: writes acknowledged since the round are covered.
        assert_eq!(
            lease.read_index(t0 + Duration::from_millis(100), 3, 20),
            Some(20)
        );
        assert_eq!(
            lease.read_index(t0 + Duration::from_millis(250), 3, 20),
            None
        );
        assert_eq!(
            lease.read_index(t0 + Duration::from_millis(100), 4, 20),
            None
        );
        // An older round finishing late does not shorten a newer lease.
        lease.renew(3, t0 + Duration::from_millis(200), 30);
        lease.renew(3, t0 + Duration::from_millis(50), 31);
        assert_eq!(
            lease.read_index(t0 + Duration::from_millis(400), 3, 0),
            Some(30)
        );
    }

    #[test]
    fn a_vote_request_of_a_higher_term_voids_the_lease() {
        let lease = ReadLease::new(Duration::from_millis(250));
        let t0 = Instant::now();
        lease.renew(5, t0, 7);
        lease.fence(5);
        assert_eq!(
            lease.read_index(t0, 5, 7),
            Some(7),
            "same term: cannot be granted"
        );
        lease.fence(6);
        assert_eq!(lease.read_index(t0, 5, 7), None);
        // A round confirmed afterwards in the old term does not bring it back.
        lease.renew(5, t0 + Duration::from_millis(10), 8);
        assert_eq!(lease.read_index(t0 + Duration::from_millis(20), 5, 8), None);
        // The next term's lease is not affected by the fence of its own term.
        lease.renew(6, t0, 9);
        assert_eq!(lease.read_index(t0, 6, 9), Some(9));
    }

    #[test]
    fn a_zero_length_never_grants() {
        let lease = ReadLease::new(Duration::ZERO);
        let t0 = Instant::now();
        lease.renew(1, t0, 1);
        assert_eq!(lease.read_index(t0, 1, 1), None);
    }
}
