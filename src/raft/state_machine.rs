//! The Raft state machine: applies log entries to the registry and persists the result.
//!
//! The registry lives in memory (reads and crypto are served from it) and in the `registry`
//! column family. Each `apply` batch writes the registry changes, the last-applied log id and the
//! membership in one atomic RocksDB write batch. That write is not synced on its own: the entries
//! it applies are already durable in the log, the next synced log append persists it (shared
//! WAL), and `purge` syncs the WAL before deleting any entry.

// openraft's error types (dictated by its storage and network traits) are large; they travel
// on cold paths only.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder,
    StorageIOError,
};
use rocksdb::{IteratorMode, WriteBatch, DB};

use super::snapshot::{self, SnapshotBody, SnapshotDir};
use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::codec;
use crate::metrics::Metrics;
use crate::registry::features::FEATURE_LEVEL;
use crate::registry::{Change, Outcome, Registry};
use crate::storage::db::{cf, synced, StoreError};
use crate::storage::{CF_REGISTRY, CF_SM_META};

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";

/// The applied state that readers see.
#[derive(Debug, Default)]
pub struct Applied {
    pub registry: Registry,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// Shared, read-mostly handle on the applied state.
#[derive(Clone, Debug)]
pub struct AppliedState {
    applied: Arc<RwLock<Applied>>,
    /// The registry's feature level, readable without the lock (every write checks it, and
    /// apply holds the lock for a whole batch).
    level: Arc<AtomicU32>,
}

impl Default for AppliedState {
    fn default() -> Self {
        AppliedState::new(Applied::default())
    }
}

impl AppliedState {
    fn new(applied: Applied) -> Self {
        let level = applied.registry.feature_level();
        AppliedState {
            applied: Arc::new(RwLock::new(applied)),
            level: Arc::new(AtomicU32::new(level)),
        }
    }

    /// A read guard; a poisoned lock still holds consistent data (apply never panics midway by
    /// design), so poisoning is ignored.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The applied registry's feature level (`registry::features`), without the lock.
    pub fn feature_level(&self) -> u32 {
        self.level.load(Ordering::Acquire)
    }

    /// Publishes the level of `applied` (called with the write lock held, after a change).
    fn publish_level(&self, applied: &Applied) {
        self.level
            .store(applied.registry.feature_level(), Ordering::Release);
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> Option<u64> {
        self.read().last_applied.map(|l| l.index)
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

/// The state machine handed to openraft.
pub struct StateMachine {
    db: Arc<DB>,
    state: AppliedState,
    snapshots: SnapshotDir,
    current: Arc<Mutex<Option<SnapshotMeta>>>,
    metrics: Arc<Metrics>,
    /// Which committed entries may be applied yet (follower read leases; off by default).
    visibility: Arc<super::lease::Visibility>,
}

impl StateMachine {
    /// Loads the persisted registry and applied position.
    pub fn open(
        db: Arc<DB>,
        snapshots: SnapshotDir,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let reg_cf = cf(&db, CF_REGISTRY)?;
        let mut pairs = Vec::new();
        for item in db.iterator_cf(reg_cf, IteratorMode::Start) {
            let (k, v) = item?;
            pairs.push((k.into_vec(), v.into_vec()));
        }
        let registry = Registry::load(pairs)?;
        check_feature_level(registry.feature_level())?;
        let meta = cf(&db, CF_SM_META)?;
        let last_applied: Option<LogId> = match db.get_cf(meta, KEY_APPLIED)? {
            Some(b) => codec::decode("applied id", &b)?,
            None => None,
        };
        let membership: StoredMembership = match db.get_cf(meta, KEY_MEMBERSHIP)? {
            Some(b) => codec::decode("membership", &b)?,
            None => StoredMembership::default(),
        };
        let current = snapshots.load_header()?.map(|h| SnapshotMeta {
            last_log_id: h.last_applied,
            last_membership: h.membership,
            snapshot_id: h.snapshot_id,
        });
        let state = AppliedState::new(Applied {
            registry,
            last_applied,
            membership,
        });
        Ok(StateMachine {
            db,
            state,
            snapshots,
            current: Arc::new(Mutex::new(current)),
            metrics,
            visibility: Arc::default(),
        })
    }

    /// The handle readers use.
    pub fn applied_state(&self) -> AppliedState {
        self.state.clone()
    }

    /// The apply gate of follower read leases (started by the node once Raft runs).
    pub fn visibility(&self) -> Arc<super::lease::Visibility> {
        self.visibility.clone()
    }

    /// Applies `entries` in order and persists the outcome in one write batch.
    async fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<Vec<Outcome>, StorageError> {
        // Follower read leases: nothing becomes readable here before it is visible (in the log
        // of every lease holder the leader counts); see raft/lease.rs.
        if let Some(last) = entries.last() {
            let waited = Instant::now();
            self.visibility.wait_applicable(last.log_id.index).await;
            if self.visibility.enabled() {
                self.metrics
                    .apply_gate_seconds
                    .observe(waited.elapsed().as_secs_f64());
            }
        }
        let started = Instant::now();
        let mut batch = WriteBatch::default();
        let reg_cf = cf(&self.db, CF_REGISTRY).map_err(|e| sm_err(ErrorVerb::Write, e))?;
        let mut outcomes = Vec::new();
        let mut state = self.state.write();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Outcome::NoCommand,
                EntryPayload::Normal(env) => match env.command {
                    // The leader's write batching: each write applied as if it were an entry
                    // of its own at this index.
                    crate::registry::Command::Batch { writes } => {
                        let mut each = Vec::with_capacity(writes.len());
                        for (position, w) in (0u32..).zip(writes) {
                            each.push(apply_one(
                                &mut state.registry,
                                entry.log_id,
                                position,
                                w,
                                &mut batch,
                                reg_cf,
                            )?);
                        }
                        Outcome::Batch(each)
                    }
                    _ => apply_one(
                        &mut state.registry,
                        entry.log_id,
                        0,
                        env,
                        &mut batch,
                        reg_cf,
                    )?,
                },
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    Outcome::NoCommand
                }
            };
            outcomes.push(outcome);
        }
        Self::meta_batch(&mut batch, &self.db, &state.last_applied, &state.membership)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.db
            .write(batch)
            .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        self.state.publish_level(&state);
        drop(state);
        self.metrics
            .apply_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(outcomes)
    }

    fn meta_batch(
        batch: &mut WriteBatch,
        db: &DB,
        applied: &Option<LogId>,
        m: &StoredMembership,
    ) -> Result<(), StoreError> {
        let meta = cf(db, CF_SM_META)?;
        batch.put_cf(meta, KEY_APPLIED, codec::encode("applied id", applied)?);
        batch.put_cf(meta, KEY_MEMBERSHIP, codec::encode("membership", m)?);
        Ok(())
    }
}

/// Builds snapshots from a RocksDB point-in-time view, without blocking apply.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    snapshots: SnapshotDir,
    current: Arc<Mutex<Option<SnapshotMeta>>>,
}

/// The applied state as of now, from a RocksDB point-in-time view (apply writes the registry,
/// the applied id and the membership in one batch, so the view is consistent), with a new
/// snapshot id. Apply goes on meanwhile.
pub fn point_in_time(db: &DB) -> Result<SnapshotBody, StoreError> {
    let view = db.snapshot();
    let meta_cf = cf(db, CF_SM_META)?;
    let last_applied: Option<LogId> = match view.get_cf(meta_cf, KEY_APPLIED)? {
        Some(b) => codec::decode("applied id", &b)?,
        None => None,
    };
    let membership: StoredMembership = match view.get_cf(meta_cf, KEY_MEMBERSHIP)? {
        Some(b) => codec::decode("membership", &b)?,
        None => StoredMembership::default(),
    };
    let reg_cf = cf(db, CF_REGISTRY)?;
    let mut pairs = Vec::new();
    for item in view.iterator_cf(reg_cf, IteratorMode::Start) {
        let (k, v) = item?;
        pairs.push((k.into_vec(), v.into_vec()));
    }
    let snapshot_id = match last_applied {
        Some(l) => format!(
            "{}-{}-{}",
            l.leader_id.term,
            l.index,
            uuid::Uuid::new_v4().simple()
        ),
        None => format!("none-{}", uuid::Uuid::new_v4().simple()),
    };
    Ok(SnapshotBody {
        snapshot_id,
        last_applied,
        membership,
        pairs,
    })
}

impl SnapshotBuilder {
    fn build_blocking(&self) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
        let body = point_in_time(&self.db)?;
        let bytes = snapshot::encode(&body)?;
        let meta = SnapshotMeta {
            last_log_id: body.last_applied,
            last_membership: body.membership,
            snapshot_id: body.snapshot_id,
        };
        save_if_newer(&self.snapshots, &self.current, &meta, &bytes)?;
        Ok((meta, bytes))
    }
}

/// Makes `bytes` the current snapshot unless a newer one is already current (a build and an
/// install may race). The lock is held across the file write so file and metadata agree.
fn save_if_newer(
    dir: &SnapshotDir,
    current: &Mutex<Option<SnapshotMeta>>,
    meta: &SnapshotMeta,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let mut cur = current.lock().unwrap_or_else(|p| p.into_inner());
    if cur
        .as_ref()
        .is_some_and(|c| c.last_log_id > meta.last_log_id)
    {
        return Ok(());
    }
    dir.save(bytes)?;
    *cur = Some(meta.clone());
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let this = SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            current: self.current.clone(),
        };
        let started = Instant::now();
        let (meta, bytes) = tokio::task::spawn_blocking(move || this.build_blocking())
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, std::io::Error::other(e)))?
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = bytes.len(),
            millis = started.elapsed().as_millis() as u64,
            "built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

/// PLANTED BUGS (jepsen/README.md), compiled only with `--features planted-bugs` and chosen at run
/// time by `RAFTKMS_PLANT`: `apply-reads-wall-clock` stamps the entry with this node's clock
/// instead of the proposer's; `rotation-applied-only-locally` makes the nodes started with it
/// skip key rotations (answering as if applied); `forwarded-write-applied-twice` (with its other
/// half in `node::writes`) hides a retried request id from the registry's idempotency table by
/// giving the retry an id of its own, derived from its log index. The plants live here, never
/// in the pure registry.
#[cfg(feature = "planted-bugs")]
fn planted(
    mut env: crate::registry::Envelope,
    index: u64,
    position: u32,
    registry: &crate::registry::Registry,
) -> Result<crate::registry::Envelope, Outcome> {
    match std::env::var("RAFTKMS_PLANT").as_deref() {
        Ok("forwarded-write-applied-twice") if registry.dedup().get(&env.request_id).is_some() => {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&index.to_be_bytes());
            id[8..12].copy_from_slice(&position.to_be_bytes());
            id[12..].copy_from_slice(b"PLNT");
            env.request_id = crate::registry::RequestId(id);
        }
        Ok("apply-reads-wall-clock") => {
            env.issued_at_ms = crate::clock::Clock::wall_ms(&crate::clock::SystemClock)
        }
        Ok("rotation-applied-only-locally")
            if matches!(
                &env.command,
                crate::registry::Command::KeyOp {
                    op: crate::registry::key::KeyOp::Rotate { .. },
                    ..
                }
            ) =>
        {
            return Err(Outcome::Applied { index });
        }
        _ => {}
    }
    Ok(env)
}

/// Applies one write (an entry's, or the one at `position` in a batch) to the registry and
/// stages its storage changes in `batch`.
fn apply_one(
    registry: &mut crate::registry::Registry,
    log_id: LogId,
    position: u32,
    env: crate::registry::Envelope,
    batch: &mut WriteBatch,
    reg_cf: &rocksdb::ColumnFamily,
) -> Result<Outcome, StorageError> {
    #[cfg(not(feature = "planted-bugs"))]
    let _ = position;
    #[cfg(feature = "planted-bugs")]
    let env = match planted(env, log_id.index, position, registry) {
        Ok(env) => env,
        Err(outcome) => return Ok(outcome),
    };
    let (outcome, changes) = registry
        .apply(log_id.index, &env)
        .map_err(|e| StorageIOError::apply(log_id, AnyError::new(&e)))?;
    for c in changes {
        match c {
            Change::Put(k, v) => batch.put_cf(reg_cf, k, v),
            Change::Delete(k) => batch.delete_cf(reg_cf, k),
        }
    }
    Ok(outcome)
}

/// Refuses a feature level above this build's: the cluster was upgraded past this release, and
/// what follows may use commands or formats this build cannot read.
pub fn check_feature_level(level: u32) -> Result<(), StoreError> {
    if level <= FEATURE_LEVEL {
        return Ok(());
    }
    Err(too_new(level))
}

fn too_new(level: u32) -> StoreError {
    StoreError::FeatureLevelTooNew {
        level,
        supported: FEATURE_LEVEL,
        release: env!("CARGO_PKG_VERSION"),
    }
}

/// The level an entry raises the cluster to, when that is beyond this build (a raise inside a
/// batch of writes counts too).
fn raises_past_this_build(entry: &Entry) -> Option<u32> {
    use crate::registry::Command;
    let EntryPayload::Normal(env) = &entry.payload else {
        return None;
    };
    fn raised(command: &Command) -> Option<u32> {
        match command {
            Command::SetFeatureLevel { level } => Some(*level),
            Command::Batch { writes } => writes.iter().find_map(|w| raised(&w.command)),
            _ => None,
        }
    }
    raised(&env.command).filter(|l| *l > FEATURE_LEVEL)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.state.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        // A raise of the feature level past what this build understands: what follows it may use
        // commands this build cannot decode. The entries before it are applied and persisted;
        // then this node stops, the raise still unapplied (in the log, for a newer build).
        if let Some((at, level)) = entries
            .iter()
            .enumerate()
            .find_map(|(i, e)| raises_past_this_build(e).map(|l| (i, l)))
        {
            let raise = entries.split_off(at);
            if !entries.is_empty() {
                self.apply_entries(entries).await?;
            }
            let log_id = raise.first().map(|e| e.log_id).unwrap_or_default();
            return Err(StorageIOError::apply(log_id, AnyError::new(&too_new(level))).into());
        }
        self.apply_entries(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let meta = meta.clone();
        let db = self.db.clone();
        let state = self.state.clone();
        let snapshots = self.snapshots.clone();
        let current = self.current.clone();
        // Hundreds of MB to verify, decode and write at a million entries: off the async
        // runtime, whose threads must keep answering heartbeats and votes meanwhile.
        tokio::task::spawn_blocking(move || {
            install_blocking(&db, &state, &snapshots, &current, &meta, bytes)
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, std::io::Error::other(e)))?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // Metadata and bytes under one lock: a concurrent build may replace the file, and a
        // mismatched pair would make the receiving follower's install fail (fatal for it).
        let current = self.current.clone();
        let snapshots = self.snapshots.clone();
        tokio::task::spawn_blocking(move || {
            let current = current.lock().unwrap_or_else(|p| p.into_inner());
            let Some(meta) = current.clone() else {
                return Ok(None);
            };
            let bytes = snapshots.load().map_err(|e| snap_err(ErrorVerb::Read, e))?;
            drop(current);
            // A damaged file stops this node (a storage error), not every follower it would be
            // sent to: their install would fail, and openraft treats that as fatal.
            if let Some(b) = &bytes {
                snapshot::verify(b).map_err(|e| snap_err(ErrorVerb::Read, e))?;
            }
            Ok(bytes.map(|bytes| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }))
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Read, std::io::Error::other(e)))?
    }
}

/// Verifies `bytes`, replaces the registry column family and the applied position in one synced
/// batch, then swaps the in-memory state (readers are held only for the swap).
fn install_blocking(
    db: &DB,
    state: &AppliedState,
    snapshots: &SnapshotDir,
    current: &Mutex<Option<SnapshotMeta>>,
    meta: &SnapshotMeta,
    bytes: Vec<u8>,
) -> Result<(), StorageError> {
    let started = Instant::now();
    let body = snapshot::decode(&bytes).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    if body.last_applied != meta.last_log_id {
        let e = StoreError::CorruptSnapshot(format!(
            "snapshot body is at {:?} but its metadata says {:?}",
            body.last_applied, meta.last_log_id
        ));
        return Err(snap_err(ErrorVerb::Read, e));
    }
    let reg_cf = cf(db, CF_REGISTRY).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(reg_cf, [0u8].as_slice(), [0xffu8; 9].as_slice());
    for (k, v) in &body.pairs {
        batch.put_cf(reg_cf, k, v);
    }
    StateMachine::meta_batch(&mut batch, db, &body.last_applied, &body.membership)
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let registry = Registry::load(body.pairs).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    check_feature_level(registry.feature_level()).map_err(|e| snap_err(ErrorVerb::Read, e))?;
    // openraft runs one state-machine call at a time, so no apply can slip in between the
    // write and the swap.
    db.write_opt(batch, &synced())
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let old = {
        let mut guard = state.write();
        let old = std::mem::replace(
            &mut *guard,
            Applied {
                registry,
                last_applied: body.last_applied,
                membership: body.membership,
            },
        );
        state.publish_level(&guard);
        old
    };
    // Freeing the old registry (a million allocations) happens after the lock is released.
    drop(old);
    save_if_newer(snapshots, current, meta, &bytes).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    tracing::info!(
        snapshot = %meta.snapshot_id,
        bytes = bytes.len(),
        millis = started.elapsed().as_millis() as u64,
        "installed snapshot"
    );
    Ok(())
}
