//! The read gate (design §3): a linearizable read learns a read index confirmed by a quorum and
//! waits until the local state machine has applied that far.
//!
//! Concurrent readers share one confirmation: a reader joins the next round that starts after it
//! arrived (never one already in flight, whose index may predate writes acknowledged before the
//! reader began), so one heartbeat round serves a whole batch.
//!
//! Rounds run in lanes, one per leader the caller believes in, with up to [`MAX_IN_FLIGHT`]
//! rounds in flight per lane: a round stuck on a leader that has just been cut off (it waits for
//! its timeout) never holds back readers who already know the new leader, and two overlapping
//! rounds keep a follower's throughput from being bounded by one round trip at a time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::error::ClusterError;

type Waiter = oneshot::Sender<Result<u64, ClusterError>>;

/// Rounds of one lane that may be in flight at once.
pub const MAX_IN_FLIGHT: usize = 2;

#[derive(Default)]
struct Lane {
    in_flight: usize,
    waiters: Vec<Waiter>,
}

/// Coalesces concurrent read-index requests into rounds.
#[derive(Clone, Default)]
pub struct Coalescer {
    lanes: Arc<Mutex<HashMap<u64, Lane>>>,
}

impl Coalescer {
    /// Returns a read index obtained by a `fetch` call that started after this call began.
    /// `lane` groups callers that may share a round (the leader they would ask).
    pub async fn read_index<F, Fut>(&self, lane: u64, fetch: F) -> Result<u64, ClusterError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, ClusterError>> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            let l = lanes.entry(lane).or_default();
            l.waiters.push(tx);
            let start = l.in_flight < MAX_IN_FLIGHT;
            if start {
                l.in_flight += 1;
            }
            start
        };
        if start {
            let lanes = self.lanes.clone();
            tokio::spawn(async move {
                loop {
                    // Everyone queued now gets the result of a fetch that starts after this.
                    let batch = {
                        let mut all = lanes.lock().unwrap_or_else(|p| p.into_inner());
                        let Some(l) = all.get_mut(&lane) else { break };
                        if l.waiters.is_empty() {
                            l.in_flight -= 1;
                            if l.in_flight == 0 {
                                all.remove(&lane);
                            }
                            break;
                        }
                        std::mem::take(&mut l.waiters)
                    };
                    let result = fetch().await;
                    for w in batch {
                        let _ = w.send(result.clone());
                    }
                }
            });
        }
        rx.await
            .map_err(|_| ClusterError::Stopped("read gate task ended".into()))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_readers_share_rounds_and_never_reuse_an_older_round() {
        let rounds = Arc::new(AtomicU64::new(0));
        let gate = Coalescer::default();
        let fetch = {
            let rounds = rounds.clone();
            move || {
                let rounds = rounds.clone();
                async move {
                    // Each round "confirms" a read index equal to its sequence number.
                    let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(n)
                }
            }
        };
        let first = gate.read_index(1, fetch.clone()).await.unwrap();
        assert_eq!(first, 1);
        // 50 readers arriving together are served by a small number of rounds, each with an
        // index from a round that started after the first round completed.
        let mut handles = Vec::new();
        for _ in 0..50 {
            let g = gate.clone();
            let f = fetch.clone();
            handles.push(tokio::spawn(async move { g.read_index(1, f).await }));
        }
        for h in handles {
            assert!(h.await.unwrap().unwrap() > first);
        }
        let total = rounds.load(Ordering::SeqCst);
        assert!(total <= 6, "{total} rounds for 50 concurrent readers");
    }

    #[tokio::test]
    async fn a_stuck_round_for_one_leader_does_not_hold_back_another_lane() {
        let gate = Coalescer::default();
        // Lane 1: a leader that never answers (cut off); its rounds hang.
        for _ in 0..MAX_IN_FLIGHT + 1 {
            let g = gate.clone();
            tokio::spawn(async move {
                g.read_index(1, || async {
                    std::future::pending::<()>().await;
                    Ok(0)
                })
                .await
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Lane 2: the new leader answers at once.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            gate.read_index(2, || async { Ok(42) }),
        )
        .await
        .expect("lane 2 was held back by lane 1");
        assert_eq!(r.unwrap(), 42);
    }
}
