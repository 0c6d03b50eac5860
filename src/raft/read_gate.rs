//! The read gate (design §3): a linearizable read learns a read index confirmed by a quorum and
//! waits until the local state machine has applied that far.
//!
//! Concurrent readers share one confirmation: a reader joins the next round that starts after it
//! arrived (never one already in flight, whose index may predate writes acknowledged before the
//! reader began), so one heartbeat round serves a whole batch.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::error::ClusterError;

type Waiter = oneshot::Sender<Result<u64, ClusterError>>;

#[derive(Default)]
struct State {
    running: bool,
    waiters: Vec<Waiter>,
}

/// Coalesces concurrent read-index requests into rounds.
#[derive(Clone, Default)]
pub struct Coalescer {
    state: Arc<Mutex<State>>,
}

impl Coalescer {
    /// Returns a read index obtained by a `fetch` call that started after this call began.
    pub async fn read_index<F, Fut>(&self, fetch: F) -> Result<u64, ClusterError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, ClusterError>> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.waiters.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            let state = self.state.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                        if s.waiters.is_empty() {
                            s.running = false;
                            break;
                        }
                        std::mem::take(&mut s.waiters)
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
        let first = gate.read_index(fetch.clone()).await.unwrap();
        assert_eq!(first, 1);
        // 50 readers arriving together are served by a small number of rounds, each with an
        // index from a round that started after the first round completed.
        let mut handles = Vec::new();
        for _ in 0..50 {
            let g = gate.clone();
            let f = fetch.clone();
            handles.push(tokio::spawn(async move { g.read_index(f).await }));
        }
        for h in handles {
            assert!(h.await.unwrap().unwrap() > first);
        }
        let total = rounds.load(Ordering::SeqCst);
        assert!(total <= 4, "{total} rounds for 50 concurrent readers");
    }
}
