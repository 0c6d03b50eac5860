//! Follower read leases (quorum leases; docs/architecture.md §6a): a node with a lease serves
//! linearizable reads from its own applied state, without asking the leader.
//!
//! Three parts, all on the monotonic clock:
//! - [`HolderLease`], on a holder: granted by the leader for half of `holder-lease-ms`
//!   ([`holder_length`]), counted from when the holder *sent* its request (before the leader saw
//!   it), voided by a vote request of a higher term, and usable only once the holder has applied
//!   the index the grant named.
//! - [`Visibility`], on every node: an entry may be applied (and so become readable anywhere)
//!   only once it is *visible*: committed, and in the log of every holder whose lease the leader
//!   still counts. On the leader that is computed from openraft's replication progress; the
//!   leader sends it to followers with every append (`X-Raftkms-Visible`), and a follower's state
//!   machine waits for it. Because the leader's own apply waits too, a write is acknowledged only
//!   once every holder has it in its log.
//! - The leader's table of granted leases ([`Visibility::grant`]), each counted for the whole
//!   `holder-lease-ms` from when the leader handled the request: twice what the holder uses, so a
//!   holder whose clock runs up to 2× slower than the leader's still stops using its lease first,
//!   and a lost holder stalls writes for at most `holder-lease-ms`.
//!
//! A holder's read: lease in force for the current term, applied at least the grant's index, then
//! wait until everything in its log at the read's start is applied (an acknowledged write is in
//! that log: it was visible, so every holder had it). See the safety argument in the docs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::acks::AckClock;
use super::log_store::CommitMarker;

use super::types::{NodeId, RaftMetrics};

/// How long a holder uses a lease of `lease` (`timing.holder-lease-ms`, which the leader counts
/// in full): half of it, from when it sent its request. The other half is the margin for a holder
/// clock that runs slower than the leader's (up to 2×).
pub fn holder_length(lease: Duration) -> Duration {
    lease / 2
}

/// What a holder was granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    term: u64,
    until: Instant,
    /// The holder may serve reads only once it has applied this far (the leader's commit index
    /// once the grant counted, or the index that dated the grant if larger).
    min_applied: u64,
}

/// The read lease this node holds as a follower, if any.
#[derive(Debug)]
pub struct HolderLease {
    length: Duration,
    held: Mutex<Option<Held>>,
    /// The highest term of any vote request received.
    fence: AtomicU64,
}

impl HolderLease {
    /// Leases of `length` (zero: this node never holds one).
    pub fn new(length: Duration) -> Self {
        HolderLease {
            length,
            held: Mutex::new(None),
            fence: AtomicU64::new(0),
        }
    }

    pub fn length(&self) -> Duration {
        self.length
    }

    /// Records a grant in `term` for a request sent at `sent_at`, usable once `min_applied` is
    /// applied. A grant of the same term never shortens the lease.
    pub fn granted(&self, term: u64, sent_at: Instant, min_applied: u64) {
        if self.length.is_zero() {
            return;
        }
        let until = sent_at + self.length;
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let next = match *h {
            Some(old) if old.term == term => Held {
                term,
                until: old.until.max(until),
                min_applied: old.min_applied.max(min_applied),
            },
            _ => Held {
                term,
                until,
                min_applied,
            },
        };
        *h = Some(next);
    }

    /// Voids every lease of a term below `term` (called before a vote request reaches openraft).
    pub fn fence(&self, term: u64) {
        self.fence.fetch_max(term, Ordering::SeqCst);
    }

    /// Drops the lease (the leader refused to renew it, or changed).
    pub fn release(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The leader refused a request sent at `sent_at`: drops the lease unless it comes from a
    /// request sent later (renewals overlap, and answers may arrive out of order; a refusal of an
    /// older request says nothing about a newer grant, which the leader still counts).
    pub fn refused(&self, sent_at: Instant) {
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_some_and(|held| held.until <= sent_at + self.length) {
            *h = None;
        }
    }

    /// The index this node must have applied before it serves a read under its lease, if a lease
    /// of `term` is in force at `now`; also when it ends.
    pub fn check(&self, now: Instant, term: u64) -> Option<(u64, Instant)> {
        let h = (*self.held.lock().unwrap_or_else(|p| p.into_inner()))?;
        let ended = now >= h.until;
        #[cfg(feature = "planted-bugs")]
        // PLANTED BUG (jepsen/README.md): the holder never sees its lease end.
        let ended = ended
            && !std::env::var("RAFTKMS_PLANT").is_ok_and(|v| v == "holder-serves-after-lease");
        if ended || h.term != term || self.fence.load(Ordering::SeqCst) > h.term {
            return None;
        }
        Some((h.min_applied, h.until))
    }
}

/// A lease the leader granted: counted until `expires` in `term`; the holder was asked to have
/// applied `min_applied` (a renewal is refused until its log reaches that).
#[derive(Clone, Copy, Debug)]
struct Grant {
    term: u64,
    expires: Instant,
    min_applied: u64,
}

/// Which entries may be applied (and so read anywhere), and the leader's table of granted leases.
pub struct Visibility {
    /// Whether follower leases are configured (`timing.holder-lease-ms` > 0). Off: everything
    /// committed may be applied at once, as before leases existed.
    enabled: AtomicBool,
    /// How long the leader counts a lease it granted.
    counted: Mutex<Duration>,
    id: AtomicU64,
    grants: Mutex<BTreeMap<NodeId, Grant>>,
    /// When this process started: for the counted length after it, every replication target
    /// counts as a holder. openraft restores a restarted leader as leader without an election,
    /// and a lease this node granted before the restart may still run, unknown to it now.
    started: Instant,
    /// The highest index a leader announced visible (on followers).
    announced: AtomicU64,
    changed: Notify,
    metrics: OnceLock<watch::Receiver<RaftMetrics>>,
    /// The leader's commit index as its log store saved it (openraft tells followers of a new
    /// commit index a moment before saving it: an announcement never exceeds what is saved).
    committed: OnceLock<std::sync::Arc<CommitMarker>>,
    /// Serializes granting with voting: a vote is decided either before a grant counts (the
    /// grant then sees the vote's fence and confirms its term by a round, which fails if the vote
    /// was granted) or after (and the vote is refused).
    pub vote_gate: tokio::sync::Mutex<()>,
    /// On the leader: when its appends were last accepted, per follower (what a grant waits on
    /// instead of a confirmation round of its own).
    pub acks: AckClock,
}

impl Default for Visibility {
    fn default() -> Self {
        Visibility {
            enabled: AtomicBool::new(false),
            counted: Mutex::new(Duration::ZERO),
            id: AtomicU64::new(0),
            grants: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            announced: AtomicU64::new(0),
            changed: Notify::new(),
            metrics: OnceLock::new(),
            committed: OnceLock::new(),
            vote_gate: tokio::sync::Mutex::new(()),
            acks: AckClock::default(),
        }
    }
}

impl Visibility {
    /// Turns the gate on (at open, before the Raft core starts and re-applies anything): the
    /// leader counts each lease it grants for `lease` (`timing.holder-lease-ms`; the holder uses
    /// [`holder_length`] of it). Until [`Visibility::start`], a gated apply waits.
    pub fn configure(&self, lease: Duration, committed: std::sync::Arc<CommitMarker>) {
        let _ = self.committed.set(committed);
        *self.counted.lock().unwrap_or_else(|p| p.into_inner()) = lease;
        self.enabled.store(!lease.is_zero(), Ordering::SeqCst);
    }

    /// Connects the gate to node `id`'s Raft progress once the core runs.
    pub fn start(&self, id: NodeId, metrics: watch::Receiver<RaftMetrics>) {
        self.id.store(id, Ordering::SeqCst);
        let _ = self.metrics.set(metrics);
        self.changed.notify_waiters();
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// How long the leader counts each lease it grants (`timing.holder-lease-ms`).
    pub fn counted(&self) -> Duration {
        *self.counted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `holder` may have (or keep) a lease in `term`: its log must have reached what its
    /// last grant in this term asked it to apply (a holder that stopped following gets no more
    /// renewals, so writes wait for it at most one count).
    pub fn may_renew(&self, holder: NodeId, term: u64, matched: u64) -> bool {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&holder)
            .is_none_or(|g| g.term != term || matched >= g.min_applied)
    }

    /// Records a lease granted to `holder` in `term`, handled at `now`, asking it to apply
    /// `min_applied` first. A grant of the same term never shortens the count (a late answer to
    /// an older request must not).
    pub fn grant(&self, holder: NodeId, term: u64, now: Instant, min_applied: u64) {
        let counted = *self.counted.lock().unwrap_or_else(|p| p.into_inner());
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        let next = match grants.get(&holder) {
            Some(g) if g.term == term => Grant {
                term,
                expires: g.expires.max(now + counted),
                min_applied: g.min_applied.max(min_applied),
            },
            _ => Grant {
                term,
                expires: now + counted,
                min_applied,
            },
        };
        grants.insert(holder, next);
        drop(grants);
        self.changed.notify_waiters();
    }

    /// Whether this node still counts a lease it granted (in any term) at `now`: it then refuses
    /// to vote for a candidate of a higher term, so no other leader can be elected while a holder
    /// it granted may still read (openraft's own refusal covers the other members of the
    /// confirming quorum, but not the leader's own vote).
    pub fn counting(&self, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        // Just started: a lease granted before a restart may still run.
        let counted = *self.counted.lock().unwrap_or_else(|p| p.into_inner());
        if now < self.started + counted {
            return true;
        }
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|g| g.expires > now)
    }

    /// How many leases the leader counts at `now` in `term`.
    #[cfg(test)]
    fn holders(&self, term: u64, now: Instant) -> usize {
        self.grants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|g| g.term == term && g.expires > now)
            .count()
    }

    /// A leader's announcement that everything up to `index` is visible (from an append).
    pub fn announced(&self, index: u64) {
        if self.announced.fetch_max(index, Ordering::SeqCst) < index {
            self.changed.notify_waiters();
        }
    }

    /// On the leader at `now`: the lowest log index every counted holder has (`None`: no lease
    /// counted, nothing to wait for), and when the next counted lease ends.
    fn holders_have(&self, m: &RaftMetrics, now: Instant) -> (Option<u64>, Option<Instant>) {
        #[cfg(feature = "planted-bugs")]
        if std::env::var("RAFTKMS_PLANT").is_ok_and(|v| v == "leader-acks-without-holder") {
            // PLANTED BUG (jepsen/README.md): the leader does not wait for its lease holders.
            return (None, None);
        }
        let matched = |holder: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(holder))
                .and_then(|l| l.as_ref())
                .map_or(0, |l| l.index)
        };
        let mut lowest: Option<u64> = None;
        let mut next_end: Option<Instant> = None;
        let mut count = |have: u64, until: Instant| {
            lowest = Some(lowest.map_or(have, |x| x.min(have)));
            next_end = Some(next_end.map_or(until, |x| x.min(until)));
        };
        // Just started (a restored leader): every target counts for one full count.
        let counted = *self.counted.lock().unwrap_or_else(|p| p.into_inner());
        if now < self.started + counted {
            for target in m.replication.iter().flat_map(|r| r.keys()) {
                count(matched(target), self.started + counted);
            }
        }
        let grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        // Every grant still counted, of any term: a lease granted in an earlier term of this
        // node's may still run (its holder's progress is read from the current replication).
        for (holder, g) in grants.iter() {
            if g.expires <= now {
                continue;
            }
            count(matched(holder), g.expires);
        }
        (lowest, next_end)
    }

    fn is_leader(&self, m: &RaftMetrics) -> bool {
        let id = self.id.load(Ordering::SeqCst);
        m.current_leader == Some(id) && m.state == openraft::ServerState::Leader
    }

    /// The visible index to announce with an append that carries `leader_commit` (on the leader;
    /// `None` elsewhere): that commit index, lowered to what every counted holder has.
    pub fn to_announce(&self, leader_commit: Option<u64>) -> Option<u64> {
        let metrics = self.metrics.get()?;
        // The saved commit index first, then the grants (read in holders_have): a holder granted
        // in between was asked to apply at least this much.
        let saved = self.committed.get().and_then(|c| c.get()).unwrap_or(0);
        let committed = leader_commit?.min(saved);
        let m = metrics.borrow();
        if !self.is_leader(&m) {
            return None;
        }
        if !self.enabled() {
            return Some(committed);
        }
        let (have, _) = self.holders_have(&m, Instant::now());
        Some(have.map_or(committed, |h| h.min(committed)))
    }

    /// On the leader with leases on: what it would announce now (its saved commit index, lowered
    /// to what every counted holder has; `None` elsewhere). It rising is what makes the leader
    /// send a heartbeat, so followers learn at once that more is visible.
    pub fn announce_mark(&self) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        self.to_announce(Some(u64::MAX))
    }

    /// Waits until the entry at `index` (committed) may be applied on this node: at once with
    /// leases off; on the leader once every counted holder has it in its log (or its lease is no
    /// longer counted); on a follower once a leader announced it visible, or this node became
    /// the leader.
    pub async fn wait_applicable(&self, index: u64) {
        if !self.enabled() {
            return;
        }
        // Gated before the Raft core runs: nothing is applied until the gate knows the node's
        // progress (openraft re-applies nothing at start with the gate on: see log_store).
        let metrics = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(m) = self.metrics.get() {
                break m;
            }
            notified.await;
        };
        let mut rx = metrics.clone();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let m = rx.borrow_and_update();
                if self.is_leader(&m) {
                    let (have, next_end) = self.holders_have(&m, Instant::now());
                    if have.is_none_or(|h| h >= index) {
                        return;
                    }
                    next_end
                } else {
                    if self.announced.load(Ordering::SeqCst) >= index {
                        return;
                    }
                    None
                }
            };
            let sleep = async {
                match wake_at {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = &mut notified => {}
                r = rx.changed() => {
                    if r.is_err() {
                        // The Raft core stopped: nothing will be announced any more, and this
                        // batch must not be applied unannounced. The node is shutting down.
                        std::future::pending::<()>().await;
                    }
                }
                _ = sleep => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_lease_runs_from_the_request_for_its_term_until_fenced() {
        let lease = HolderLease::new(Duration::from_millis(200));
        let t0 = Instant::now();
        assert_eq!(lease.check(t0, 3), None);
        lease.granted(3, t0, 40);
        assert_eq!(
            lease.check(t0 + Duration::from_millis(100), 3),
            Some((40, t0 + Duration::from_millis(200)))
        );
        // Not in another term, not at or after its end.
        assert_eq!(lease.check(t0 + Duration::from_millis(100), 4), None);
        assert_eq!(lease.check(t0 + Duration::from_millis(200), 3), None);
        // A renewal extends it and never lowers the index to reach.
        lease.granted(3, t0 + Duration::from_millis(150), 30);
        assert_eq!(
            lease.check(t0 + Duration::from_millis(300), 3),
            Some((40, t0 + Duration::from_millis(350)))
        );
        // An older request answered late does not shorten it.
        lease.granted(3, t0, 50);
        assert_eq!(
            lease.check(t0 + Duration::from_millis(300), 3).map(|x| x.1),
            Some(t0 + Duration::from_millis(350))
        );
        // A refusal of an older request keeps a lease granted for a later one; a refusal of the
        // request that lease came from (or a later one) drops it.
        lease.refused(t0 + Duration::from_millis(100));
        assert!(lease.check(t0 + Duration::from_millis(300), 3).is_some());
        lease.refused(t0 + Duration::from_millis(150));
        assert_eq!(lease.check(t0 + Duration::from_millis(300), 3), None);
        lease.granted(3, t0 + Duration::from_millis(150), 50);
        // A vote request of a higher term voids it.
        lease.fence(4);
        assert_eq!(lease.check(t0 + Duration::from_millis(300), 3), None);
        // Zero length: never a lease.
        let off = HolderLease::new(Duration::ZERO);
        off.granted(1, t0, 0);
        assert_eq!(off.check(t0, 1), None);
    }

    #[test]
    fn the_leader_counts_a_grant_for_the_whole_lease_twice_the_holder_length_in_its_term() {
        let lease = Duration::from_millis(400);
        assert_eq!(holder_length(lease) * 2, lease);
        let v = Visibility::default();
        v.configure(lease, std::sync::Arc::new(CommitMarker::default()));
        assert!(v.enabled());
        let t0 = Instant::now();
        v.grant(2, 7, t0, 10);
        v.grant(3, 6, t0, 10);
        assert_eq!(v.holders(7, t0 + Duration::from_millis(399)), 1);
        assert_eq!(v.holders(7, t0 + Duration::from_millis(400)), 0);
        assert_eq!(v.holders(6, t0), 1);
        // A late answer to an older request does not shorten the count.
        v.grant(2, 7, t0 - Duration::from_millis(100), 12);
        assert_eq!(v.holders(7, t0 + Duration::from_millis(399)), 1);
        // A renewal needs the holder's log to have reached what its last grant asked for.
        assert!(!v.may_renew(2, 7, 11));
        assert!(v.may_renew(2, 7, 12));
        assert!(v.may_renew(2, 8, 0));
        assert!(v.may_renew(9, 7, 0));
    }

    #[tokio::test]
    async fn with_leases_off_nothing_waits() {
        let v = Visibility::default();
        tokio::time::timeout(Duration::from_millis(100), v.wait_applicable(1_000))
            .await
            .expect("waited with leases off");
    }
}
