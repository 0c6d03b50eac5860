//! The writing side: [`AuditLog`] chains and buffers records under one mutex; one writer thread
//! writes each batch, syncs it and then reports it durable.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::read::newest_at_ms;
use super::record::{self, Event};
use super::segment::{self, list_segments, Segment};
use super::syslog::Syslog;
use super::{lock, AuditError, Head, Options, MAX_LINE_BYTES};
use crate::clock::{Clock, SystemClock};
use crate::durable_fs;

/// The room a line needs beyond its event's JSON (`v`, `seq`, `prev`, `hash`, the newline).
const LINE_OVERHEAD: usize = 192;

/// A node's audit trail, open for appending. Share it (`Arc<AuditLog>`): every method takes
/// `&self`. Dropping it closes it (best-effort; call [`AuditLog::close`] to see errors).
pub struct AuditLog {
    dir: PathBuf,
    node_id: u64,
    options: Options,
    shared: Arc<Shared>,
    writer: Mutex<WriterSlot>,
    /// Held by [`AuditLog::try_recover`] and [`AuditLog::close`]: one at a time.
    recovering: Mutex<()>,
}

/// The writer thread, or where the last one stopped.
enum WriterSlot {
    Running(JoinHandle<Option<DurableEnd>>),
    /// The durable end of the segment the stopped writer last wrote, if any.
    Stopped(Option<DurableEnd>),
}

/// A segment and its length after the last successful sync.
#[derive(Clone, Debug)]
struct DurableEnd {
    path: PathBuf,
    len: u64,
}

/// What appenders, the writer thread and tickets share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (a durable append, close).
    wake: Condvar,
    /// What is on disk; tickets wait on it.
    durable: watch::Sender<Durable>,
    healthy: AtomicBool,
    refusals: AtomicU64,
    syslog_sent: AtomicU64,
    syslog_failed: AtomicU64,
    /// Test hook: the writer fails (ENOSPC) once this many more bytes are written; `u64::MAX`
    /// is off.
    #[cfg(test)]
    fail_after_bytes: AtomicU64,
    /// Test hook: the next sync fails (EIO) after its write succeeded.
    #[cfg(test)]
    fail_next_sync: AtomicBool,
}

/// The chain's end and the records not yet handed to the writer.
struct State {
    /// The last appended record.
    seq: u64,
    prev: [u8; 32],
    /// Counts recoveries: a ticket of an earlier epoch may name a seq that was lost and reused.
    epoch: u64,
    /// Complete lines, seq `buf_first_seq..=seq`.
    buf: Vec<u8>,
    buf_first_seq: u64,
    /// When the oldest record in `buf` was appended.
    buf_since: Option<Instant>,
    /// A durable append is waiting: write now.
    flush_now: bool,
    closing: bool,
    /// Why the trail failed.
    failed: Option<Arc<str>>,
}

/// What is on disk, as tickets see it.
#[derive(Debug)]
struct Durable {
    /// The last synced record.
    head: Head,
    epoch: u64,
    failed: Option<Arc<str>>,
    /// For each ended epoch, the last seq that was durable when it failed.
    durable_at_failure: Vec<u64>,
}

/// The receipt of one appended record.
pub struct Ticket {
    seq: u64,
    epoch: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).finish()
    }
}

impl Ticket {
    /// The record's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Waits until the record is on disk (written and synced), or the trail failed before it
    /// was: then the record is lost and the error says why.
    pub async fn durable(&self) -> Result<(), AuditError> {
        let mut rx = self.shared.durable.subscribe();
        let verdict = rx
            .wait_for(|d| d.epoch != self.epoch || d.head.seq >= self.seq || d.failed.is_some())
            .await
            .map(|d| self.judge(&d));
        match verdict {
            Ok(v) => v,
            // The sender lives in `shared`, which this ticket holds.
            Err(_) => Err(AuditError::Unavailable(
                "the audit writer has stopped".to_string(),
            )),
        }
    }

    /// `Some` once the record's fate is known: on disk, or lost.
    pub fn is_durable(&self) -> Option<Result<(), AuditError>> {
        let d = self.shared.durable.borrow();
        (d.epoch != self.epoch || d.head.seq >= self.seq || d.failed.is_some())
            .then(|| self.judge(&d))
    }

    fn judge(&self, d: &Durable) -> Result<(), AuditError> {
        if d.epoch == self.epoch {
            if d.head.seq >= self.seq {
                return Ok(());
            }
            let why = d.failed.as_deref().unwrap_or("the audit trail failed");
            return Err(AuditError::Unavailable(why.to_string()));
        }
        let durable_then = usize::try_from(self.epoch)
            .ok()
            .and_then(|e| d.durable_at_failure.get(e));
        match durable_then {
            Some(&last) if self.seq <= last => Ok(()),
            _ => Err(AuditError::Unavailable(format!(
                "audit record {} was lost when the trail failed",
                self.seq
            ))),
        }
    }
}

/// What [`AuditLog::prune`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub segments_deleted: usize,
    /// The seq the trail now starts at (the first segment's), if it has a segment.
    pub first_seq: Option<u64>,
}

impl AuditLog {
    /// Opens (creating it, mode 0700) the trail in `dir` and continues its chain; see
    /// [the module documentation](super) for what recovery does after a crash.
    pub fn open(
        dir: impl AsRef<Path>,
        node_id: u64,
        options: Options,
    ) -> Result<AuditLog, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        durable_fs::create_dir_all_private(&dir).map_err(|e| AuditError::io("create", &dir, e))?;
        let recovered = segment::recover(&dir, node_id)?;
        let head = recovered.head;
        let (durable, _) = watch::channel(Durable {
            head,
            epoch: 0,
            failed: None,
            durable_at_failure: Vec::new(),
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                seq: head.seq,
                prev: head.hash,
                epoch: 0,
                buf: Vec::new(),
                buf_first_seq: head.seq.saturating_add(1),
                buf_since: None,
                flush_now: false,
                closing: false,
                failed: None,
            }),
            wake: Condvar::new(),
            durable,
            healthy: AtomicBool::new(true),
            refusals: AtomicU64::new(0),
            syslog_sent: AtomicU64::new(0),
            syslog_failed: AtomicU64::new(0),
            #[cfg(test)]
            fail_after_bytes: AtomicU64::new(u64::MAX),
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
        });
        let log = AuditLog {
            dir,
            node_id,
            options,
            shared,
            writer: Mutex::new(WriterSlot::Stopped(None)),
            recovering: Mutex::new(()),
        };
        log.start_writer(recovered.current)?;
        Ok(log)
    }

    fn start_writer(&self, current: Option<(Segment, u64)>) -> Result<(), AuditError> {
        let current = match current {
            Some((seg, len)) => Some(Output::reopen(seg.path, len)?),
            None => None,
        };
        let syslog = match &self.options.syslog {
            Some(p) => Some(Syslog::new(p).map_err(|e| AuditError::io("open a socket for", p, e))?),
            None => None,
        };
        let writer = Writer {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
            current,
            segment_bytes: self.options.segment_bytes.max(1),
            flush_interval: self.options.flush_interval.max(Duration::from_millis(1)),
            syslog,
            spare: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::io("start the writer thread of", &self.dir, e))?;
        *lock(&self.writer) = WriterSlot::Running(handle);
        Ok(())
    }

    /// The trail's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record: gives it the next seq, chains it and buffers its line (the event's
    /// `node_id` is replaced by this trail's node). With `durable`, the writer writes and syncs
    /// at once, with everything buffered so far; otherwise the record reaches the disk within
    /// [`Options::flush_interval`]. The ticket tells when it is on disk.
    ///
    /// Fails with [`AuditError::Unavailable`] when the trail has failed or is closed, or when
    /// the event's line would be longer than [`super::MAX_LINE_BYTES`].
    pub fn append(&self, mut event: Event, durable: bool) -> Result<Ticket, AuditError> {
        event.node_id = self.node_id;
        // Encoded outside the lock; only the chaining (one SHA-256) happens under it.
        let encoded = record::encode_event(&event)?;
        let json = record::event_json(&event)?;
        if json.len() + LINE_OVERHEAD > MAX_LINE_BYTES {
            return Err(AuditError::Unavailable(format!(
                "an audit event of {} bytes is over the line limit of {MAX_LINE_BYTES} bytes",
                json.len()
            )));
        }
        let mut st = lock(&self.shared.state);
        if let Some(why) = &st.failed {
            return Err(AuditError::Unavailable(why.to_string()));
        }
        if st.closing {
            return Err(AuditError::Unavailable(
                "the audit trail is closed".to_string(),
            ));
        }
        let Some(seq) = st.seq.checked_add(1) else {
            return Err(AuditError::Unavailable(
                "the audit trail's sequence numbers are exhausted".to_string(),
            ));
        };
        let hash = record::chain_hash(seq, &st.prev, &encoded);
        let prev = st.prev;
        record::write_line(&mut st.buf, seq, &prev, &hash, &json);
        st.seq = seq;
        st.prev = hash;
        if st.buf_since.is_none() {
            st.buf_since = Some(Instant::now());
        }
        let wake = durable && !st.flush_now;
        st.flush_now |= durable;
        let epoch = st.epoch;
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(Ticket {
            seq,
            epoch,
            shared: self.shared.clone(),
        })
    }

    /// Waits until every record appended so far is on disk (the writer flushes at once): a
    /// reader of the files after this sees them.
    pub async fn sync(&self) -> Result<(), AuditError> {
        let ticket = {
            let mut st = lock(&self.shared.state);
            if let Some(why) = &st.failed {
                return Err(AuditError::Unavailable(why.to_string()));
            }
            let pending = !st.buf.is_empty();
            let wake = pending && !st.flush_now;
            st.flush_now |= pending;
            let ticket = Ticket {
                seq: st.seq,
                epoch: st.epoch,
                shared: self.shared.clone(),
            };
            drop(st);
            if wake {
                self.shared.wake.notify_one();
            }
            ticket
        };
        ticket.durable().await
    }

    /// The last appended record (it may not be on disk yet).
    pub fn head(&self) -> Head {
        let st = lock(&self.shared.state);
        Head {
            seq: st.seq,
            hash: st.prev,
        }
    }

    /// The last record known to be on disk: what may be checkpointed.
    pub fn durable_head(&self) -> Head {
        self.shared.durable.borrow().head
    }

    /// Whether the trail takes records (false once it failed, or was closed).
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Counts a request refused because the trail could not record it.
    pub fn note_refusal(&self) {
        self.shared.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests refused because of the trail ([`AuditLog::note_refusal`]), for `/metrics`.
    pub fn refusals(&self) -> u64 {
        self.shared.refusals.load(Ordering::Relaxed)
    }

    /// Records sent to syslog.
    pub fn syslog_sent(&self) -> u64 {
        self.shared.syslog_sent.load(Ordering::Relaxed)
    }

    /// Records that could not be sent to syslog (dropped).
    pub fn syslog_failures(&self) -> u64 {
        self.shared.syslog_failed.load(Ordering::Relaxed)
    }

    /// Writes and syncs everything appended, then stops the writer thread. Appends fail from
    /// then on. An error if the trail had failed (the records it names are lost).
    pub fn close(&self) -> Result<(), AuditError> {
        let _one_at_a_time = lock(&self.recovering);
        lock(&self.shared.state).closing = true;
        self.shared.healthy.store(false, Ordering::Release);
        self.shared.wake.notify_one();
        self.join_writer()?;
        match &lock(&self.shared.state).failed {
            Some(why) => Err(AuditError::Unavailable(why.to_string())),
            None => Ok(()),
        }
    }

    fn join_writer(&self) -> Result<(), AuditError> {
        let mut slot = lock(&self.writer);
        match std::mem::replace(&mut *slot, WriterSlot::Stopped(None)) {
            WriterSlot::Running(handle) => match handle.join() {
                Ok(end) => *slot = WriterSlot::Stopped(end),
                Err(_) => {
                    return Err(AuditError::Unavailable(
                        "the audit writer thread panicked".to_string(),
                    ))
                }
            },
            stopped => *slot = stopped,
        }
        Ok(())
    }

    /// After a failure, tries to continue: segments after the last durable record are removed,
    /// the segment holding it is cut back to it, the tail is read again (as [`AuditLog::open`]
    /// does) and must end at that record; then a new writer continues the chain from there.
    /// The lost records' seqs are given to new records; their tickets answer that they were
    /// lost. `Ok` at once if the trail has not failed; an error (and still failed) if the disk
    /// still refuses.
    pub fn try_recover(&self) -> Result<(), AuditError> {
        let _one_at_a_time = lock(&self.recovering);
        {
            let st = lock(&self.shared.state);
            if st.closing {
                return Err(AuditError::Unavailable(
                    "the audit trail is closed".to_string(),
                ));
            }
            if st.failed.is_none() {
                return Ok(());
            }
        }
        self.join_writer()?;
        let end = match &*lock(&self.writer) {
            WriterSlot::Stopped(end) => end.clone(),
            WriterSlot::Running(_) => None,
        };
        let durable = self.durable_head();
        let mut removed = false;
        for seg in list_segments(&self.dir)? {
            if seg.first_seq > durable.seq {
                std::fs::remove_file(&seg.path)
                    .map_err(|e| AuditError::io("remove", &seg.path, e))?;
                removed = true;
            }
        }
        if removed {
            durable_fs::sync_dir(&self.dir).map_err(|e| AuditError::io("sync", &self.dir, e))?;
        }
        if let Some(end) = end {
            if std::fs::symlink_metadata(&end.path).is_ok() {
                segment::truncate(&end.path, end.len)?;
            }
        }
        let recovered = segment::recover(&self.dir, self.node_id)?;
        if recovered.head != durable {
            return Err(AuditError::Unavailable(format!(
                "after the failure the trail ends at {}, not at its last durable record ({durable})",
                recovered.head
            )));
        }
        self.start_writer(recovered.current)?;
        let mut st = lock(&self.shared.state);
        st.seq = durable.seq;
        st.prev = durable.hash;
        st.epoch += 1;
        st.buf.clear();
        st.buf_first_seq = durable.seq.saturating_add(1);
        st.buf_since = None;
        st.flush_now = false;
        st.failed = None;
        let epoch = st.epoch;
        self.shared.durable.send_modify(|d| {
            d.epoch = epoch;
            d.failed = None;
        });
        self.shared.healthy.store(true, Ordering::Release);
        drop(st);
        tracing::warn!(dir = %self.dir.display(), head = %durable, "audit trail: recovered from a failure");
        Ok(())
    }

    /// Deletes the oldest segments whose newest record is older than
    /// [`Options::retention_days`] before `now_ms` (nothing if it is 0). Only whole segments,
    /// only from the start (the trail stays one chain), never the current segment, and only a
    /// segment whose successor holds a durable record (so the chain's end survives a crash).
    /// Pruning is visible: the trail then starts at a seq above 1, and [`super::verify`] trusts
    /// that first record as its anchor.
    pub fn prune(&self, now_ms: u64) -> Result<PruneReport, AuditError> {
        let segments = list_segments(&self.dir)?;
        let mut report = PruneReport {
            segments_deleted: 0,
            first_seq: segments.first().map(|s| s.first_seq),
        };
        if self.options.retention_days == 0 {
            return Ok(report);
        }
        let cutoff = now_ms.saturating_sub(u64::from(self.options.retention_days) * 86_400_000);
        let durable = self.durable_head().seq;
        for pair in segments.windows(2) {
            let (seg, next) = (&pair[0], &pair[1]);
            if next.first_seq > durable {
                break;
            }
            if newest_at_ms(seg)?.is_some_and(|newest| newest >= cutoff) {
                break;
            }
            std::fs::remove_file(&seg.path).map_err(|e| AuditError::io("remove", &seg.path, e))?;
            // One at a time: a crash leaves a trail that starts later, never one with a hole.
            durable_fs::sync_dir(&self.dir).map_err(|e| AuditError::io("sync", &self.dir, e))?;
            tracing::info!(file = %seg.path.display(), "audit trail: pruned a segment");
            report.segments_deleted += 1;
            report.first_seq = Some(next.first_seq);
        }
        Ok(report)
    }

    /// Test hook: the writer fails with ENOSPC after writing `bytes` more bytes (once).
    #[cfg(test)]
    pub(super) fn fail_writes_after(&self, bytes: u64) {
        self.shared.fail_after_bytes.store(bytes, Ordering::SeqCst);
    }

    /// Test hook: the next sync fails with EIO (its write went through).
    #[cfg(test)]
    pub(super) fn fail_next_sync(&self) {
        self.shared.fail_next_sync.store(true, Ordering::SeqCst);
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The segment being written.
struct Output {
    path: PathBuf,
    file: File,
    /// Bytes in it, all synced.
    len: u64,
}

impl Output {
    fn reopen(path: PathBuf, len: u64) -> Result<Output, AuditError> {
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::io("open", &path, e))?;
        Ok(Output { path, file, len })
    }

    fn create(path: PathBuf) -> std::io::Result<Output> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        durable_fs::sync_parent(&path)?;
        Ok(Output { path, file, len: 0 })
    }
}

/// Lines taken from the buffer, written and synced together.
struct Batch {
    bytes: Vec<u8>,
    first_seq: u64,
    last: Head,
}

struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    current: Option<Output>,
    segment_bytes: u64,
    flush_interval: Duration,
    syslog: Option<Syslog>,
    /// The previous batch's buffer, kept for its capacity.
    spare: Vec<u8>,
}

/// Fails the trail if the writer thread ends any other way than by returning (a panic), so no
/// ticket waits forever.
struct StopGuard {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        if self.armed {
            fail(
                &self.shared,
                "the audit writer thread stopped unexpectedly".to_string(),
            );
        }
    }
}

impl Writer {
    fn run(mut self) -> Option<DurableEnd> {
        let mut guard = StopGuard {
            shared: self.shared.clone(),
            armed: true,
        };
        while let Some(batch) = self.next_batch() {
            if let Err(why) = self.write(&batch) {
                fail(&self.shared, why);
                break;
            }
            self.shared.durable.send_modify(|d| d.head = batch.last);
            if let Some(syslog) = &mut self.syslog {
                syslog.send_lines(
                    &batch.bytes,
                    SystemClock.wall_ms(),
                    &self.shared.syslog_sent,
                    &self.shared.syslog_failed,
                );
            }
            self.spare = batch.bytes;
            self.spare.clear();
        }
        guard.armed = false;
        self.current.map(|o| DurableEnd {
            path: o.path,
            len: o.len,
        })
    }

    /// Waits until the buffer is due (a durable append, its oldest record's flush interval
    /// over, close) and takes it; `None` when closing with nothing left.
    fn next_batch(&mut self) -> Option<Batch> {
        let mut st = lock(&self.shared.state);
        loop {
            let due = st.flush_now
                || st.closing
                || st
                    .buf_since
                    .is_some_and(|t| t.elapsed() >= self.flush_interval);
            if due && !st.buf.is_empty() {
                let bytes = std::mem::replace(&mut st.buf, std::mem::take(&mut self.spare));
                let batch = Batch {
                    bytes,
                    first_seq: st.buf_first_seq,
                    last: Head {
                        seq: st.seq,
                        hash: st.prev,
                    },
                };
                st.buf_first_seq = st.seq.saturating_add(1);
                st.buf_since = None;
                st.flush_now = false;
                return Some(batch);
            }
            if st.closing {
                return None;
            }
            let wait = match st.buf_since {
                Some(t) => self.flush_interval.saturating_sub(t.elapsed()),
                None => self.flush_interval,
            };
            st = match self.shared.wake.wait_timeout(st, wait) {
                Ok((st, _)) => st,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Writes and syncs one batch, starting a new segment first if the current one is full.
    fn write(&mut self, batch: &Batch) -> Result<(), String> {
        let full = self
            .current
            .as_ref()
            .is_none_or(|o| o.len > 0 && o.len >= self.segment_bytes);
        if full {
            // The previous segment is complete and synced (each batch is).
            let path = self.dir.join(segment::segment_name(batch.first_seq));
            let out = Output::create(path.clone())
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            self.current = Some(out);
        }
        let Some(out) = self.current.as_mut() else {
            return Err("no segment to write to".to_string());
        };
        match write_and_sync(&self.shared, &mut out.file, &batch.bytes) {
            Ok(()) => {
                out.len += batch.bytes.len() as u64;
                Ok(())
            }
            Err(e) => Err(format!("cannot write {}: {e}", out.path.display())),
        }
    }
}

/// `write_all`, then `fdatasync`. Under test, the hooks can cut the write short (as a full
/// disk does) or fail the sync.
fn write_and_sync(shared: &Shared, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    #[cfg(test)]
    {
        let budget = shared.fail_after_bytes.load(Ordering::SeqCst);
        let len = bytes.len() as u64;
        if budget != u64::MAX {
            if len > budget {
                shared.fail_after_bytes.store(u64::MAX, Ordering::SeqCst);
                let cut = usize::try_from(budget).unwrap_or(bytes.len());
                file.write_all(&bytes[..cut])?;
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            shared
                .fail_after_bytes
                .store(budget - len, Ordering::SeqCst);
        }
    }
    #[cfg(not(test))]
    let _ = shared;
    file.write_all(bytes)?;
    #[cfg(test)]
    if shared.fail_next_sync.swap(false, Ordering::SeqCst) {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    file.sync_data()
}

/// Marks the trail failed: appends are refused, waiting tickets get `why`, and the records not
/// on disk are named lost.
fn fail(shared: &Shared, why: String) {
    let mut st = lock(&shared.state);
    let durable = shared.durable.borrow().head.seq;
    let why = if st.seq > durable {
        format!(
            "{why}; records {}..={} are not known to be on disk and are lost",
            durable + 1,
            st.seq
        )
    } else {
        why
    };
    tracing::error!(error = %why, "audit trail failed");
    let why: Arc<str> = why.into();
    st.failed = Some(why.clone());
    st.buf.clear();
    st.buf_since = None;
    st.flush_now = false;
    shared.healthy.store(false, Ordering::Release);
    shared.durable.send_modify(|d| {
        if d.durable_at_failure.len() as u64 == d.epoch {
            d.durable_at_failure.push(d.head.seq);
        }
        d.failed = Some(why);
    });
}
