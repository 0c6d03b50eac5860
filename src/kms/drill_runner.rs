//! Starting a DR drill from the console on a `raftkms dev` cluster (`[console] dev-drill-dir`):
//! `raftkms drill --dev DIR --region R` runs as a child process of this node, with the dev
//! cluster's coordinates from `DIR/dev.env`, its output appended to `DIR/console-drills.log`.
//! The drill stores its report in the registry when it ends (as every `raftkms drill` does), where
//! the DR view reads it. One drill at a time per node.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::KmsError;

/// Keys the console's drills create and encrypt under before the cut.
const KEYS: &str = "4";
/// Seconds of writes through the survivors once they are acknowledged again.
const OUTAGE_SECS: &str = "2";
/// Upper bound of each waiting phase.
const TIMEOUT_SECS: &str = "60";

/// The drill this node started, if one is running.
#[derive(Default)]
pub struct DrillRunner {
    running: Arc<AtomicBool>,
}

/// The `KEY=VALUE` lines of a dev cluster's `dev.env` (comments and blank lines skipped).
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

impl DrillRunner {
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Starts `raftkms drill --dev dir --region region`; refused while one is running.
    pub fn start(&self, dir: &Path, region: &str) -> Result<(), KmsError> {
        if self
            .running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(KmsError::Unsupported(
                "a drill started from the console is still running; wait for its report".into(),
            ));
        }
        match spawn(dir, region) {
            Ok(mut child) => {
                tracing::info!(%region, "a console drill started");
                let running = self.running.clone();
                let region = region.to_string();
                tokio::spawn(async move {
                    match child.wait().await {
                        Ok(status) => tracing::info!(%region, %status, "a console drill ended"),
                        Err(e) => tracing::warn!(%region, error = %e, "a console drill"),
                    }
                    running.store(false, Ordering::SeqCst);
                });
                Ok(())
            }
            Err(e) => {
                self.running.store(false, Ordering::SeqCst);
                Err(KmsError::Internal(format!("cannot start the drill: {e}")))
            }
        }
    }
}

fn spawn(dir: &Path, region: &str) -> std::io::Result<tokio::process::Child> {
    let env = std::fs::read_to_string(dir.join("dev.env"))?;
    let env = zeroize::Zeroizing::new(env);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("console-drills.log"))?;
    let exe = std::env::current_exe()?;
    tokio::process::Command::new(exe)
        .arg("drill")
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
        .envs(parse_env(&env))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_env_lines_are_parsed() {
        let env = parse_env("# x\nKMS_REGION=ap-guangzhou\n\nRAFTKMS_ADMIN_TOKEN=a=b\nbroken\n");
        assert_eq!(
            env,
            vec![
                ("KMS_REGION".to_string(), "ap-guangzhou".to_string()),
                ("RAFTKMS_ADMIN_TOKEN".to_string(), "a=b".to_string()),
            ]
        );
    }
}
