//! Scheduled backups (`[backup]`, docs/operations.md "Scheduled backups"): every `interval-s`
//! this node takes a backup of the replicated state (as `GET /admin/backup` does: read barrier,
//! point-in-time view, authenticated file) and writes it into `dir` as
//! `<cluster-id>-<UTC time>-<log index>-n<node id>.rkbak` (0600, published whole or not at all),
//! then deletes all but the newest `keep` of its own (this cluster's, this node's) backups there.
//! A failure is logged and counted in `raftkms_backup_failures_total`; the next interval tries
//! again. The first backup comes one interval after the newest one already in `dir` (at once if
//! that is overdue), so a node restarted more often than the interval still writes them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Node;
use crate::raft::error::ClusterError;

const SUFFIX: &str = ".rkbak";
/// A scheduled backup that finds another backup running on this node waits and tries again.
const BUSY_RETRIES: u32 = 5;
const BUSY_WAIT: Duration = Duration::from_secs(3);

impl Node {
    /// Runs scheduled backups until the task is aborted (nothing without `backup.dir`).
    pub async fn run_backups(self: Arc<Self>) {
        let Some(dir) = self.config.backup.dir.clone() else {
            return;
        };
        let every = Duration::from_secs(self.config.backup.interval_s);
        let naming = Naming::of(&self.config.cluster_id, self.id);
        let first = newest_age(&dir, &naming).map_or(every, |age| every.saturating_sub(age));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            match self.scheduled_backup(&dir).await {
                Ok((file, bytes, removed)) => {
                    self.metrics.backups_written.inc();
                    tracing::info!(
                        file = %file.display(),
                        bytes,
                        removed,
                        millis = started.elapsed().as_millis() as u64,
                        "scheduled backup written"
                    );
                }
                Err(e) => {
                    self.metrics.backup_failures.inc();
                    tracing::warn!(dir = %dir.display(), error = %e, "scheduled backup failed");
                }
            }
        }
    }

    /// One scheduled backup into `dir`: the file written, its size, and how many older backups
    /// were deleted. Waits for a backup already running on this node (`raftkms backup create`).
    pub async fn scheduled_backup(
        &self,
        dir: &Path,
    ) -> Result<(PathBuf, u64, usize), ClusterError> {
        let mut tries = 0;
        let (header, bytes) = loop {
            match self.backup().await {
                Err(ClusterError::Backup(why)) if why.contains("another backup") => {
                    tries += 1;
                    if tries > BUSY_RETRIES {
                        return Err(ClusterError::Backup(why));
                    }
                    tokio::time::sleep(BUSY_WAIT).await;
                }
                other => break other?,
            }
        };
        let naming = Naming::of(&self.config.cluster_id, self.id);
        let name = naming.name(header.created_at_ms, header.last_applied.index);
        let (dir, keep, every) = (
            dir.to_path_buf(),
            self.config.backup.keep,
            Duration::from_secs(self.config.backup.interval_s),
        );
        tokio::task::spawn_blocking(move || {
            let io = |what: &str, e: std::io::Error| {
                ClusterError::Backup(format!("{what} in {}: {e}", dir.display()))
            };
            crate::durable_fs::create_dir_all_private(&dir).map_err(|e| io("cannot create", e))?;
            let file = dir.join(&name);
            match crate::durable_fs::publish_new(&file, &bytes, 0o600) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ClusterError::Backup(format!(
                        "{} exists already",
                        file.display()
                    )))
                }
                Err(e) => return Err(io("cannot write a backup", e)),
            }
            // The backup is written: a failure to prune is logged, not a failed backup.
            let removed = match prune(&dir, &naming, keep, &file, every) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot prune old backups");
                    0
                }
            };
            Ok((file, bytes.len() as u64, removed))
        })
        .await
        .map_err(|e| ClusterError::Backup(e.to_string()))?
    }
}

/// The names of one node's scheduled backups of one cluster.
struct Naming {
    prefix: String,
    node_suffix: String,
}

impl Naming {
    fn of(cluster_id: &str, node: u64) -> Self {
        Naming {
            prefix: format!("{cluster_id}-"),
            node_suffix: format!("-n{node}{SUFFIX}"),
        }
    }

    fn name(&self, created_at_ms: u64, index: u64) -> String {
        format!(
            "{}{}-{index:020}{}",
            self.prefix,
            utc_stamp(created_at_ms),
            self.node_suffix
        )
    }

    /// The log index and stamp of one of our backups (`None`: not ours). The whole middle must
    /// be `<YYYYMMDDTHHMMSSZ>-<20 digits>`, so the backups of a cluster whose id merely starts
    /// with this one's (`prod`, `prod-eu`) or of another node are never taken for ours.
    fn parse<'a>(&self, name: &'a str) -> Option<(u64, &'a str)> {
        let mid = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.node_suffix)?;
        let b = mid.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = b.len() == 16 + 1 + 20
            && digits(0..8)
            && b[8] == b'T'
            && digits(9..15)
            && b[15] == b'Z'
            && b[16] == b'-'
            && digits(17..37);
        if !ok {
            return None;
        }
        Some((mid[17..].parse().ok()?, &mid[..16]))
    }
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time in ms.
fn utc_stamp(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// How long ago the newest of our backups in `dir` was written (by its modification time).
fn newest_age(dir: &Path, naming: &Naming) -> Option<Duration> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| naming.parse(&e.file_name().to_string_lossy()).is_some())
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
        .map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
        })
}

/// Deletes all but the newest `keep` of our backups in `dir`, never `just_written` (ordered by
/// log index, which only grows within a cluster, then by stamp: a clock stepped back cannot make
/// the new file look oldest), and our temporary files older than `stale` (left by a crash while
/// writing). Other files are never touched; a file another process removed first is fine.
/// Returns how many backups were deleted.
fn prune(
    dir: &Path,
    naming: &Naming,
    keep: usize,
    just_written: &Path,
    stale: Duration,
) -> std::io::Result<usize> {
    let mut ours: Vec<((u64, String), PathBuf)> = Vec::new();
    let mut temps = Vec::new();
    for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((index, stamp)) = naming.parse(&name) {
            ours.push(((index, stamp.to_string()), e.path()));
        } else if let Some((base, _)) = name.split_once(".tmp.") {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > stale);
            if old && naming.parse(base).is_some() {
                temps.push(e.path());
            }
        }
    }
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    let mut removed = 0;
    for (_, old) in ours.iter().take(excess) {
        if old == just_written {
            continue;
        }
        match std::fs::remove_file(old) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for t in &temps {
        let _ = std::fs::remove_file(t);
    }
    if removed > 0 || !temps.is_empty() {
        crate::durable_fs::sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_only_for_this_cluster_and_node() {
        let n = Naming::of("c1", 3);
        let name = n.name(1_796_492_370_761, 42);
        assert_eq!(name, "c1-20261205T173930Z-00000000000000000042-n3.rkbak");
        assert_eq!(n.parse(&name), Some((42, "20261205T173930Z")));
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        for other in [
            Naming::of("c1-eu", 3).name(0, 1),
            Naming::of("c1", 4).name(0, 1),
            Naming::of("c", 3).name(0, 1),
            "c1-notes.rkbak".to_string(),
            "c1-20261205T173930Z-42-n3.rkbak".to_string(),
        ] {
            assert_eq!(n.parse(&other), None, "{other}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_by_index_and_never_the_file_just_written() {
        let dir = tempfile::tempdir().unwrap();
        let n = Naming::of("c1", 1);
        let touch = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            p
        };
        for i in 1..=3 {
            touch(&n.name(1_796_000_000_000 + i * 3_600_000, i * 10));
        }
        let foreign = [
            touch(&Naming::of("c1-eu", 1).name(0, 7)),
            touch(&Naming::of("c1", 2).name(0, 7)),
            touch("c1-notes.txt"),
        ];
        // The clock stepped back: the newest backup (highest index) carries the oldest stamp.
        let newest = touch(&n.name(1_700_000_000_000, 40));
        let removed = prune(dir.path(), &n, 2, &newest, Duration::from_secs(3600)).unwrap();
        assert_eq!(removed, 2);
        assert!(newest.exists());
        assert!(dir
            .path()
            .join(n.name(1_796_000_000_000 + 3 * 3_600_000, 30))
            .exists());
        assert!(!dir
            .path()
            .join(n.name(1_796_000_000_000 + 3_600_000, 10))
            .exists());
        for f in &foreign {
            assert!(f.exists(), "{}", f.display());
        }
        // A fresh temporary file of ours stays; an old one goes.
        let tmp = touch(&format!("{}.tmp.0123456789abcdef", n.name(0, 50)));
        prune(dir.path(), &n, 2, &newest, Duration::from_secs(3600)).unwrap();
        assert!(tmp.exists());
        prune(dir.path(), &n, 2, &newest, Duration::ZERO).unwrap();
        assert!(!tmp.exists());
        assert!(newest.exists());
    }
}
