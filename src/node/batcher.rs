//! Write batching on the leader: the writes waiting while earlier ones are being proposed go
//! into one log entry ([`Command::Batch`]), so one leader fsync, one append round trip and one
//! follower fsync serve all of them.
//!
//! openraft 0.9 makes each proposal its own entry and waits, on its core, for that entry's log
//! fsync before it handles the next proposal (docs/architecture.md §3): under concurrent writes
//! the leader's fsyncs run one after the other and bound the write rate. Here at most
//! [`IN_FLIGHT`] proposals are with openraft at a time; whatever arrives meanwhile waits and
//! leaves as one batch of up to [`MAX_WRITES`] writes ([`MAX_BYTES`]). A write that arrives while
//! fewer are in flight is proposed at once, alone: batching adds no latency to a lone write (a
//! write that arrives while both slots are busy waits for one of them, as it would have waited
//! for openraft's core).
//!
//! Each write of a batch keeps its request id, timestamp and outcome; apply treats it exactly
//! as an entry of its own (dedup included), so a retried write is still applied once. Writes
//! that carry many values (bulk record loads, re-wrap batches) are always proposed alone.

use std::sync::{Arc, OnceLock};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::Metrics;
use crate::raft::error::ClusterError;
use crate::raft::types::Raft;
use crate::registry::{Command, Envelope, Outcome, RequestId};

/// Proposals with openraft at once (each a batch or a lone write): one being fsynced on the
/// leader while the previous one is on its way to the followers.
pub const IN_FLIGHT: usize = 2;

/// The most writes in one batch (each is small: a key record, a flag, a description).
pub const MAX_WRITES: usize = 128;

/// The most bytes of writes in one batch: one append must reach a follower and be fsynced there
/// within `timing.heartbeat-ms` (openraft 0.9's limit for an append), so entries stay small.
pub const MAX_BYTES: usize = 256 * 1024;

/// A write larger than this is proposed alone.
const WRITE_BYTES: usize = 16 * 1024;

/// Waiting writes, beyond which a proposer is held back (backpressure, not an error).
const QUEUE: usize = 4096;

type Answer = Result<Outcome, ClusterError>;

struct Pending {
    env: Envelope,
    /// Its encoded size.
    bytes: usize,
    answer: oneshot::Sender<Answer>,
}

/// The leader's write batcher; started on first use (inside the runtime).
pub struct Batcher {
    raft: Raft,
    metrics: Arc<Metrics>,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

impl Batcher {
    pub fn new(raft: Raft, metrics: Arc<Metrics>) -> Self {
        Batcher {
            raft,
            metrics,
            queue: OnceLock::new(),
        }
    }

    /// Proposes `env` on this node (which must lead), batched with other writes waiting at the
    /// same time. The caller bounds the wait; a write given up on may still be applied (as a
    /// timed-out proposal always could).
    pub async fn propose(&self, env: Envelope) -> Answer {
        // Only the batcher makes batches: one proposed from outside (a forwarded write) would
        // carry writes stamped by another node's clock and slip past the checks made on each
        // write (e.g. that a node checkpoints only its own audit trail).
        if matches!(env.command, Command::Batch { .. }) {
            return Err(ClusterError::BadRequest(
                "a batch of writes is made by the leader, never proposed".into(),
            ));
        }
        let bytes = env.encoded_len();
        if !batchable(&env.command) || bytes > WRITE_BYTES {
            return propose_alone(&self.raft, env).await;
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.raft.clone(), self.metrics.clone(), rx));
            tx
        });
        let (answer, answered) = oneshot::channel();
        queue
            .send(Pending { env, bytes, answer })
            .await
            .map_err(|_| ClusterError::Stopped("the write batcher has stopped".into()))?;
        answered
            .await
            .map_err(|_| ClusterError::Stopped("the write batcher has stopped".into()))?
    }
}

/// Whether a command may share an entry with others: not the ones that carry many values, and
/// never a batch (writes larger than [`WRITE_BYTES`] are proposed alone too).
fn batchable(command: &Command) -> bool {
    !matches!(
        command,
        Command::PutRecords { .. } | Command::Rewrap { .. } | Command::Batch { .. }
    )
}

/// The batcher's loop: takes the first waiting write, waits for a free proposal slot, then
/// takes every write that arrived meanwhile (up to [`MAX_WRITES`]) and proposes them together.
async fn run(raft: Raft, metrics: Arc<Metrics>, mut queue: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // A write taken from the queue that did not fit the previous batch: it starts the next.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match queue.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.bytes;
        let mut writes = vec![first];
        while writes.len() < MAX_WRITES {
            match queue.try_recv() {
                Ok(p) if bytes + p.bytes > MAX_BYTES => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.bytes;
                    writes.push(p);
                }
                Err(_) => break,
            }
        }
        // A proposer that gave up (its deadline passed) no longer waits for an answer: its
        // write is not proposed now.
        writes.retain(|p| !p.answer.is_closed());
        if writes.is_empty() {
            continue;
        }
        metrics.write_batch_size.observe(writes.len() as f64);
        let raft = raft.clone();
        tokio::spawn(async move {
            propose_batch(&raft, writes).await;
            drop(slot);
        });
    }
}

async fn propose_batch(raft: &Raft, mut writes: Vec<Pending>) {
    if writes.len() == 1 {
        if let Some(p) = writes.pop() {
            let answer = propose_alone(raft, p.env).await;
            let _ = p.answer.send(answer);
        }
        return;
    }
    let (envs, answers): (Vec<Envelope>, Vec<oneshot::Sender<Answer>>) =
        writes.into_iter().map(|p| (p.env, p.answer)).unzip();
    let issued_at_ms = envs.iter().map(|e| e.issued_at_ms).max().unwrap_or(0);
    let batch = Envelope {
        // Apply never looks at the batch's own id or time (each write has its own).
        request_id: RequestId::random(),
        issued_at_ms,
        command: Command::Batch { writes: envs },
    };
    match propose_alone(raft, batch).await {
        Ok(Outcome::Batch(outcomes)) if outcomes.len() == answers.len() => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(Ok(outcome));
            }
        }
        Ok(other) => {
            let e = ClusterError::Codec(format!(
                "a batch of {} writes was answered {other:?}",
                answers.len()
            ));
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for answer in answers {
                let _ = answer.send(Err(e.clone()));
            }
        }
    }
}

/// One proposal to openraft, its errors in the cluster's terms.
async fn propose_alone(raft: &Raft, env: Envelope) -> Answer {
    match raft.client_write(env).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ClusterError::NotLeader {
                leader: f.leader_id,
            })
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(ClusterError::Membership(e.to_string()))
        }
        Err(RaftError::Fatal(f)) => Err(ClusterError::Stopped(f.to_string())),
    }
}
