//! The Raft log, vote and commit marker in RocksDB.
//!
//! Durability contract (openraft `RaftLogStorage`): an append is reported flushed only after a
//! WAL fsync that covers it returned (group commit, see [`Flusher`]); the vote is synced before `save_vote` returns. Because
//! every column family shares one WAL, each synced append also persists the state machine writes
//! made before it (those are written unsynced, see `state_machine`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::codec;
use crate::metrics::Metrics;
use crate::storage::db::{cf, synced, StoreError};
use crate::storage::{CF_LOG, CF_RAFT_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// Encoded as `index + 1`, with 0 for "none", so it fits an atomic.
#[derive(Debug, Default)]
pub struct CommitMarker(AtomicU64);

impl CommitMarker {
    pub fn get(&self) -> Option<u64> {
        self.0.load(Ordering::Acquire).checked_sub(1)
    }

    fn set(&self, v: Option<u64>) {
        self.0
            .fetch_max(v.map(|i| i + 1).unwrap_or(0), Ordering::AcqRel);
    }
}

/// The index of the last entry written to this node's log (0 before any this run; lowered by a
/// truncation). Set before the append is acknowledged, so a follower-lease holder reading it
/// knows every entry the leader could count it as having.
#[derive(Debug, Default)]
pub struct AppendMarker(AtomicU64);

impl AppendMarker {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, v: u64) {
        self.0.store(v, Ordering::Release);
    }
}

/// At most this many bytes of log entries go into one append request (at least one entry goes
/// all the same): see `limited_get_log_entries`.
pub const APPEND_BUDGET_BYTES: usize = 1 << 20;

/// RocksDB-backed log storage. Cheap to clone; clones share the database and the flusher.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    committed: Arc<CommitMarker>,
    appended: Arc<AppendMarker>,
    flusher: Arc<Flusher>,
    /// With follower read leases: report no commit index at start, so openraft re-applies
    /// nothing before it learns the commit index again (an entry committed but not yet visible
    /// must not be applied; the apply gate is not connected yet then).
    forget_commit_at_start: bool,
}

/// An append written to the WAL but not yet known to be on disk.
struct Pending {
    callback: LogFlushed<TypeConfig>,
    queued: Instant,
}

/// Group commit. `append` writes its entries to RocksDB at once (WAL written, not synced), so
/// they are readable for replication immediately, and hands the flush callback to this thread.
/// The thread takes every callback queued so far, syncs the WAL once (`flush_wal(true)` covers
/// every write issued before it), and only then reports those appends flushed, in order. Under
/// load one fsync serves many appends, and openraft's core never waits for an fsync.
struct Flusher {
    tx: std::sync::Mutex<std::sync::mpsc::Sender<Pending>>,
}

impl Flusher {
    fn start(db: &Arc<DB>, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<Pending>();
        // A weak handle: the database closes when the node drops its stores, not when this
        // thread notices that the channel has closed.
        let db = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let result = match db.upgrade() {
                        Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
                        None => Err("the database is closed".to_string()),
                    };
                    metrics.append_batch_size.observe(batch.len() as f64);
                    for p in batch {
                        metrics
                            .append_seconds
                            .observe(p.queued.elapsed().as_secs_f64());
                        // Only now, with the WAL fsynced, may openraft count the entries as
                        // persisted.
                        p.callback
                            .log_io_completed(result.clone().map_err(std::io::Error::other));
                    }
                }
            })
            .map_err(|error| StoreError::Io {
                path: "raft-log-flush thread".into(),
                error,
            })?;
        Ok(Flusher {
            tx: std::sync::Mutex::new(tx),
        })
    }

    fn submit(&self, p: Pending) -> Result<(), Pending> {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.send(p).map_err(|e| e.0)
    }
}

fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_logs_err(e: impl std::error::Error + 'static) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::CorruptSnapshot(format!("log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}

impl LogStore {
    /// Opens the log store on an open database; `committed` is shared with the read path.
    pub fn new(db: Arc<DB>, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let flusher = Arc::new(Flusher::start(&db, metrics)?);
        let store = LogStore {
            db,
            committed: Arc::new(CommitMarker::default()),
            appended: Arc::new(AppendMarker::default()),
            flusher,
            forget_commit_at_start: false,
        };
        let c: Option<Option<LogId>> = store.get_meta(KEY_COMMITTED)?;
        store.committed.set(c.flatten().map(|l| l.index));
        Ok(store)
    }

    /// The highest commit index this node has learned (persisted or in memory).
    pub fn commit_marker(&self) -> Arc<CommitMarker> {
        self.committed.clone()
    }

    /// With follower read leases on: openraft re-applies nothing at start (see the field).
    pub fn forget_commit_at_start(&mut self) {
        self.forget_commit_at_start = true;
    }

    /// The last index written to this node's log.
    pub fn append_marker(&self) -> Arc<AppendMarker> {
        self.appended.clone()
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let cf = cf(&self.db, CF_RAFT_META)?;
        match self.db.get_cf(cf, key)? {
            Some(bytes) => Ok(Some(codec::decode("raft meta", &bytes)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StoreError> {
        let cf = cf(&self.db, CF_RAFT_META)?;
        let bytes = codec::encode("raft meta", value)?;
        if sync {
            self.db.put_cf_opt(cf, key, bytes, &synced())?;
        } else {
            self.db.put_cf(cf, key, bytes)?;
        }
        Ok(())
    }

    fn last_entry(&self) -> Result<Option<Entry>, StoreError> {
        let cf = cf(&self.db, CF_LOG)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, v) = item?;
                Ok(Some(codec::decode("log entry", &v)?))
            }
            None => Ok(None),
        }
    }

    /// Reads entries from `start` up to `end`; with a `budget`, stops before the entry that would
    /// take the encoded total past it (at least one entry is always read).
    fn read_range(
        &self,
        start: u64,
        end: Bound<u64>,
        budget: Option<usize>,
    ) -> Result<Vec<Entry>, StoreError> {
        let cf = cf(&self.db, CF_LOG)?;
        let mut out = Vec::new();
        let mut used = 0usize;
        let from = index_key(start);
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (k, v) = item?;
            let idx = key_index(&k)?;
            let past_end = match end {
                Bound::Included(e) => idx > e,
                Bound::Excluded(e) => idx >= e,
                Bound::Unbounded => false,
            };
            if past_end {
                break;
            }
            used = used.saturating_add(v.len());
            if budget.is_some_and(|b| used > b) && !out.is_empty() {
                break;
            }
            out.push(codec::decode("log entry", &v)?);
        }
        Ok(out)
    }

    /// Writes `entries` in one batch to the WAL and the log column family, without syncing (the
    /// flusher syncs). Returns whether to acknowledge the append without waiting for the
    /// flusher's fsync (only with the planted bug).
    fn write_entries(db: &DB, entries: &[Entry]) -> Result<bool, StoreError> {
        let cf = cf(db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(
                cf,
                index_key(e.log_id.index),
                codec::encode("log entry", e)?,
            );
        }
        db.write(batch)?;
        #[cfg(feature = "planted-bugs")]
        if std::env::var("RAFTKMS_PLANT").is_ok_and(|v| v == "ack-before-fsync") {
            // PLANTED BUG (jepsen/README.md): the append is acknowledged once written to the
            // WAL, before any fsync: it survives a process crash (the page cache keeps it) and
            // is lost by a power cut.
            return Ok(true);
        }
        Ok(false)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        self.read_range(start, range.end_bound().cloned(), None)
            .map_err(read_logs_err)
    }

    /// What replication sends in one append: openraft bounds it by entry count only
    /// (`max_payload_entries`) and gives the request one heartbeat interval. Large entries (a
    /// 1,000-record batch is 300 kB) made catch-up requests of tens of MB that always timed out,
    /// so a lagging or new node never caught up (the 1M-entry scale run). Bounded by bytes here.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_range(start, Bound::Excluded(end), Some(APPEND_BUDGET_BYTES))
            .map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED).map_err(read_logs_err)?;
        let last = self.last_entry().map_err(read_logs_err)?.map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: the commit index can always be re-learned from the leader; the next synced
        // append carries it to disk anyway (shared WAL).
        self.put_meta(KEY_COMMITTED, &committed, false)
            .map_err(write_logs_err)?;
        self.committed.set(committed.map(|l| l.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if self.forget_commit_at_start {
            return Ok(None);
        }
        let c: Option<Option<LogId>> = self.get_meta(KEY_COMMITTED).map_err(read_logs_err)?;
        Ok(c.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let queued = Instant::now();
        let last = entries.last().map(|e| e.log_id.index);
        // An unsynced write is a memtable insert and a write(2) to the WAL: microseconds, so it
        // runs inline; the fsync happens on the flusher thread.
        let written = LogStore::write_entries(&self.db, &entries);
        if let (Ok(_), Some(last)) = (&written, last) {
            self.appended.set(last);
        }
        match written {
            Ok(true) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Ok(false) => self
                .flusher
                .submit(Pending { callback, queued })
                .map_err(|p| {
                    let e = std::io::Error::other("the log flusher thread has stopped");
                    p.callback
                        .log_io_completed(Err(std::io::Error::other(e.to_string())));
                    write_logs_err(e)
                }),
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let cf = cf(&self.db, CF_LOG).map_err(write_logs_err)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, index_key(log_id.index), index_key(u64::MAX));
        self.db
            .write_opt(batch, &synced())
            .map_err(write_logs_err)?;
        self.appended.set(log_id.index.saturating_sub(1));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Entries are about to disappear: everything the state machine wrote so far (unsynced)
        // must be on disk first, or a crash could leave it behind a purged log.
        self.db.flush_wal(true).map_err(write_logs_err)?;
        let cf = cf(&self.db, CF_LOG).map_err(write_logs_err)?;
        let meta = cf_meta(&self.db).map_err(write_logs_err)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            meta,
            KEY_PURGED,
            codec::encode("raft meta", &log_id).map_err(write_logs_err)?,
        );
        batch.delete_range_cf(cf, index_key(0), index_key(log_id.index + 1));
        self.db.write_opt(batch, &synced()).map_err(write_logs_err)
    }
}

fn cf_meta(db: &DB) -> Result<&rocksdb::ColumnFamily, StoreError> {
    cf(db, CF_RAFT_META)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, EntryPayload, Membership};

    use super::*;
    use crate::raft::types::Node;
    use crate::registry::{Command, Envelope, RequestId};

    fn log_id(term: u64, index: u64) -> LogId {
        openraft::LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn persisted_raft_records_round_trip_with_a_version_byte() {
        let normal = Entry {
            log_id: log_id(3, 7),
            payload: EntryPayload::Normal(Envelope {
                request_id: RequestId([7; 16]),
                issued_at_ms: 1_700_000_000_123,
                command: Command::PutRecords {
                    records: vec![("a".into(), vec![1, 2]), ("b".into(), vec![])],
                },
            }),
        };
        let nodes = BTreeMap::from([(
            1u64,
            Node {
                raft_addr: "r:1".into(),
                api_addr: "a:1".into(),
                region: "ap-x".into(),
            },
        )]);
        let membership = Entry {
            log_id: log_id(3, 8),
            payload: EntryPayload::Membership(Membership::new(vec![[1u64].into()], nodes)),
        };
        let blank = Entry {
            log_id: log_id(4, 9),
            payload: EntryPayload::Blank,
        };
        for e in [normal, membership, blank] {
            let bytes = codec::encode("log entry", &e).unwrap();
            assert_eq!(bytes[0], codec::FORMAT_V1);
            let back: Entry = codec::decode("log entry", &bytes).unwrap();
            assert_eq!(back, e);
        }
        let vote = Vote::new_committed(5, 2);
        let back: Vote =
            codec::decode("raft meta", &codec::encode("raft meta", &vote).unwrap()).unwrap();
        assert_eq!(back, vote);
        let committed = Some(log_id(5, 11));
        let back: Option<LogId> = codec::decode(
            "raft meta",
            &codec::encode("raft meta", &committed).unwrap(),
        )
        .unwrap();
        assert_eq!(back, committed);
    }

    fn record_entry(index: u64, value_len: usize) -> Entry {
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(Envelope {
                request_id: RequestId([index as u8; 16]),
                issued_at_ms: 0,
                command: Command::PutRecord {
                    name: format!("r{index}"),
                    value: vec![7; value_len],
                },
            }),
        }
    }

    #[tokio::test]
    async fn replication_reads_are_bounded_by_bytes_but_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let identity = crate::storage::Identity {
            cluster_id: "c".into(),
            node_id: 1,
        };
        let db = crate::storage::open(&dir.path().join("data"), &identity).unwrap();
        let mut store =
            LogStore::new(db.clone(), Arc::new(crate::metrics::Metrics::new())).unwrap();
        let big: Vec<Entry> = (1..=10).map(|i| record_entry(i, 300_000)).collect();
        LogStore::write_entries(&db, &big).unwrap();
        let got = store.limited_get_log_entries(1, 11).await.unwrap();
        assert_eq!(got.len(), 3, "3 x 300 kB fit in 1 MiB, 4 do not");
        assert_eq!(got, big[..3]);
        // A single entry over the budget still goes alone, or replication would stall.
        LogStore::write_entries(&db, &[record_entry(11, 3 << 20), record_entry(12, 10)]).unwrap();
        assert_eq!(
            store.limited_get_log_entries(11, 13).await.unwrap().len(),
            1
        );
        // Small entries: the whole range.
        let small: Vec<Entry> = (13..=60).map(|i| record_entry(i, 100)).collect();
        LogStore::write_entries(&db, &small).unwrap();
        assert_eq!(store.limited_get_log_entries(13, 61).await.unwrap(), small);
        // The unlimited read openraft uses elsewhere is unchanged.
        assert_eq!(store.try_get_log_entries(1..11).await.unwrap(), big);
    }

    #[test]
    fn index_keys_sort_like_indices() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 70_000, 1]
            .iter()
            .map(|i| index_key(*i))
            .collect();
        keys.sort();
        let back: Vec<u64> = keys.iter().map(|k| key_index(k).unwrap()).collect();
        assert_eq!(back, vec![1, 2, 300, 70_000]);
    }
}
