//! Starting a DR drill from the console on a `raftkms dev` cluster (`[console] dev-drill-dir`):
//! `raftkms drill --dev DIR --region R` runs as a child process of this node, with the dev
//! cluster's coordinates from `DIR/dev.env`, its output appended to `DIR/console-drills.log`.
//! The drill stores its report in the registry when it ends (as every `raftkms drill` does), where
//! the DR view reads it. One drill at a time on the whole dev cluster: every dev node shares the
//! directory, and a drill holds an exclusive lock on `DIR/console-drill.lock` while it runs.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::KmsError;

/// Keys the console's drills create and encrypt under before the cut.
pub const KEYS: &str = "4";
/// Seconds of writes through the survivors once they are acknowledged again.
pub const OUTAGE_SECS: &str = "2";
/// Upper bound of each waiting phase.
pub const TIMEOUT_SECS: &str = "60";

/// What of `dev.env` the drill needs: its target (the admin listener and credential) and the
/// KMS credential. Nothing else of the file or of this node's environment reaches it.
const PASSED_ON: [&str; 9] = [
    "KMS_SECRET_ID",
    "KMS_SECRET_KEY",
    "KMS_CA_BUNDLE",
    "RAFTKMS_NODE",
    "RAFTKMS_CLUSTER_ID",
    "RAFTKMS_CA",
    "RAFTKMS_ADMIN_CERT",
    "RAFTKMS_ADMIN_KEY",
    "RAFTKMS_ADMIN_TOKEN",
];

/// The drill this node started, if one is running.
#[derive(Default)]
pub struct DrillRunner {
    running: Arc<AtomicBool>,
}

/// The `KEY=VALUE` lines of a dev cluster's `dev.env` that the drill needs (comments, blank
/// lines and other keys skipped); values are wiped when dropped.
pub fn parse_env(text: &str) -> Vec<(String, Zeroizing<String>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| PASSED_ON.contains(&k.trim()))
        .map(|(k, v)| (k.trim().to_string(), Zeroizing::new(v.to_string())))
        .collect()
}

/// Takes the dev cluster's drill lock without waiting (`None`: another node's drill holds it).
/// Released when the file is closed, also when this process dies.
fn try_lock(dir: &Path) -> std::io::Result<Option<File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("console-drill.lock"))?;
    // SAFETY: flock(2) on a descriptor this function owns (the file stays open for as long as
    // the returned File lives); no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(err)
    }
}

impl DrillRunner {
    /// Whether a console drill runs on the dev cluster in `dir`: this node's, or another's (it
    /// holds the lock).
    pub async fn running(&self, dir: Option<&Path>) -> bool {
        if self.running.load(Ordering::SeqCst) {
            return true;
        }
        let Some(dir) = dir.map(Path::to_path_buf) else {
            return false;
        };
        // Taking the lock for a moment tells whether another node holds it.
        tokio::task::spawn_blocking(move || matches!(try_lock(&dir), Ok(None)))
            .await
            .unwrap_or(false)
    }

    /// Starts `raftkms drill --dev dir --region region`; refused while one is running.
    pub async fn start(&self, dir: &Path, region: &str) -> Result<(), KmsError> {
        let busy = || {
            KmsError::Unsupported(
                "a drill started from the console is still running; wait for its report".into(),
            )
        };
        if self
            .running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(busy());
        }
        let started = {
            let dir = dir.to_path_buf();
            let region = region.to_string();
            tokio::task::spawn_blocking(move || -> std::io::Result<Option<_>> {
                let Some(lock) = try_lock(&dir)? else {
                    return Ok(None);
                };
                Ok(Some((lock, spawn(&dir, &region)?)))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        };
        match started {
            Ok(Some((lock, mut child))) => {
                tracing::info!(%region, "a console drill started");
                let running = self.running.clone();
                let region = region.to_string();
                tokio::spawn(async move {
                    match child.wait().await {
                        Ok(status) => tracing::info!(%region, %status, "a console drill ended"),
                        Err(e) => tracing::warn!(%region, error = %e, "a console drill"),
                    }
                    drop(lock);
                    running.store(false, Ordering::SeqCst);
                });
                Ok(())
            }
            Ok(None) => {
                self.running.store(false, Ordering::SeqCst);
                Err(busy())
            }
            Err(e) => {
                self.running.store(false, Ordering::SeqCst);
                Err(KmsError::Internal(format!("cannot start the drill: {e}")))
            }
        }
    }
}

fn spawn(dir: &Path, region: &str) -> std::io::Result<tokio::process::Child> {
    let env = Zeroizing::new(std::fs::read_to_string(dir.join("dev.env"))?);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("console-drills.log"))?;
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("drill")
        .arg("--dev")
        .arg(dir)
        .args([
            "--region",
            region,
            "--keys",
            KEYS,
            "--outage-secs",
            OUTAGE_SECS,
        ])
        .args(["--timeout-secs", TIMEOUT_SECS])
        // The drill freezes and resumes processes with `kill`: it needs PATH, nothing else.
        .env_clear()
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in parse_env(&env) {
        cmd.env(k, v.as_str());
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_drill_needs_is_taken_from_dev_env() {
        let env = parse_env(
            "# x\nKMS_REGION=ap-guangzhou\n\nRAFTKMS_ADMIN_TOKEN=a=b\nbroken\nKMS_SECRET_KEY=k\n",
        );
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![("RAFTKMS_ADMIN_TOKEN", "a=b"), ("KMS_SECRET_KEY", "k")]
        );
    }

    #[test]
    fn the_drill_lock_is_exclusive_and_released_when_closed() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_lock(dir.path()).unwrap();
        assert!(first.is_some());
        // flock locks belong to the open file: a second open of the same file is refused.
        assert!(try_lock(dir.path()).unwrap().is_none());
        drop(first);
        assert!(try_lock(dir.path()).unwrap().is_some());
    }
}
