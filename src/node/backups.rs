//! Scheduled backups (`[backup]`, docs/operations.md "Scheduled backups"): every `interval-s`
//! this node takes a backup of the replicated state (as `GET /admin/backup`
//! does: read barrier, point-in-time view, authenticated file) and writes it into `dir` as
//! `<cluster-id>-<UTC time>-<log index>.rkbak` (0600, published whole or not at all), then deletes
//! all but the newest `keep` of this cluster's backups there. A failure is logged and counted in
//! `raftkms_backup_failures_total`; the next interval tries again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Node;
use crate::raft::error::ClusterError;

const SUFFIX: &str = ".rkbak";

impl Node {
    /// Runs scheduled backups until the task is aborted (nothing without `backup.dir`).
    pub async fn run_backups(self: Arc<Self>) {
        let Some(dir) = self.config.backup.dir.clone() else {
            return;
        };
        let every = Duration::from_secs(self.config.backup.interval_s);
        loop {
            tokio::time::sleep(every).await;
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
    /// were deleted.
    pub async fn scheduled_backup(
        &self,
        dir: &Path,
    ) -> Result<(PathBuf, u64, usize), ClusterError> {
        let (header, bytes) = self.backup().await?;
        let prefix = format!("{}-", self.config.cluster_id);
        let name = format!(
            "{prefix}{}-{:020}{SUFFIX}",
            utc_stamp(header.created_at_ms),
            header.last_applied.index
        );
        let (dir, keep) = (dir.to_path_buf(), self.config.backup.keep);
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
            let removed = prune(&dir, &prefix, keep).map_err(|e| io("cannot prune", e))?;
            Ok((file, bytes.len() as u64, removed))
        })
        .await
        .map_err(|e| ClusterError::Backup(e.to_string()))?
    }
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time in ms (sorts as it reads).
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

/// Deletes all but the newest `keep` backups named `<prefix>*.rkbak` in `dir` (names sort by
/// time); other files are never touched. Returns how many were deleted.
fn prune(dir: &Path, prefix: &str, keep: usize) -> std::io::Result<usize> {
    let mut ours: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(prefix) && n.ends_with(SUFFIX) && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    for old in &ours[..excess] {
        std::fs::remove_file(old)?;
    }
    if excess > 0 {
        crate::durable_fs::sync_dir(dir)?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_sort_as_times_and_pruning_keeps_the_newest_of_this_cluster_only() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_796_492_370_761), "20261205T173930Z");
        let dir = tempfile::tempdir().unwrap();
        for (i, stamp) in ["20261205T100000Z", "20261205T110000Z", "20261205T120000Z"]
            .iter()
            .enumerate()
        {
            let name = format!("c1-{stamp}-{i:020}{SUFFIX}");
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::write(dir.path().join("c2-20261205T090000Z-1.rkbak"), b"x").unwrap();
        std::fs::write(dir.path().join("c1-notes.txt"), b"x").unwrap();
        assert_eq!(prune(dir.path(), "c1-", 2).unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "c1-20261205T110000Z-00000000000000000001.rkbak",
                "c1-20261205T120000Z-00000000000000000002.rkbak",
                "c1-notes.txt",
                "c2-20261205T090000Z-1.rkbak",
            ]
        );
        assert_eq!(prune(dir.path(), "c1-", 2).unwrap(), 0);
    }
}
