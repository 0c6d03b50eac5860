//! `raftkms backup create|verify` (docs/operations.md, "Backups and restore"): a backup of the
//! replicated state downloaded from any node into a file that appears whole or not at all, and
//! the offline check of such a file. The format and its checks are `raft::backup`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::admin::{AdminClient, ClientError};
use crate::raft::backup::{self, BackupHeader};

/// Attempts at a backup before giving up, and the pause between them.
const ATTEMPTS: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_secs(1);

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { retryable, .. } => *retryable,
        ClientError::Transport { .. } => true,
        ClientError::Decode { .. } | ClientError::Write { .. } => false,
    }
}

/// What `create` saved.
#[derive(Debug)]
pub struct Saved {
    pub header: BackupHeader,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Downloads a backup from `client`'s node into `out` (mode 0600; refused if it exists): the
/// bytes are checked in full (`raft::backup::decode`) before the file is published, and a crash
/// leaves no partial file. `progress` is called with the bytes received so far.
pub async fn create(
    client: &AdminClient,
    out: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<Saved> {
    if out.exists() {
        anyhow::bail!(
            "{} exists: a backup never replaces a file (remove it, or choose another name)",
            out.display()
        );
    }
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut attempt = 1;
    let served_index = loop {
        bytes.clear();
        let got = client
            .backup(
                &mut |chunk| {
                    bytes.extend_from_slice(chunk);
                    Ok(())
                },
                progress,
            )
            .await;
        match got {
            Ok(index) => break index,
            // A leader change, a busy node or a broken download: the same request again.
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                eprintln!("backup: attempt {attempt} failed ({e}); retrying");
                attempt += 1;
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let header = backup::decode(&bytes)
        .context("the backup the node sent does not check out")?
        .header;
    if served_index.is_some_and(|i| i != header.last_applied.index) {
        anyhow::bail!(
            "the node said the backup holds index {served_index:?}, the file says {}",
            header.last_applied.index
        );
    }
    let published = crate::durable_fs::publish_new(out, &bytes, 0o600)
        .with_context(|| format!("cannot write {}", out.display()))?;
    if !published {
        anyhow::bail!(
            "{} appeared while the backup was taken: not replaced",
            out.display()
        );
    }
    Ok(Saved {
        header,
        bytes: bytes.len() as u64,
        elapsed: started.elapsed(),
    })
}

/// Reads and checks a backup file in full (offline).
pub fn verify(file: &Path) -> anyhow::Result<(BackupHeader, u64)> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let b = backup::decode(&bytes).with_context(|| format!("{}", file.display()))?;
    Ok((b.header, bytes.len() as u64))
}

/// A human summary of a backup's header (and the file's size, if known).
pub fn describe(h: &BackupHeader, bytes: Option<u64>) -> String {
    let counts: Vec<String> = h
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "cluster {} (from node {}, raftkms {}), at log index {} (term {}), taken at {} ms since \
         the epoch{}; {}; state digest {}",
        h.cluster_id,
        h.source_node,
        h.raftkms_version,
        h.last_applied.index,
        h.last_applied.leader_id.term,
        h.created_at_ms,
        bytes.map(|b| format!("; {b} bytes")).unwrap_or_default(),
        if counts.is_empty() {
            "empty".to_string()
        } else {
            counts.join(", ")
        },
        h.digest
    )
}
