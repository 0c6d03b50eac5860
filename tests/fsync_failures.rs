//! The fsync property, checked from outside: with fsync failing on both followers (libfiu's POSIX
//! preload makes `fsync`/`fdatasync` return EIO), a write must not be acknowledged. A log store
//! that reported appends flushed before (or without) syncing would let the followers answer and
//! the leader acknowledge; ours fails the append and the write is refused.
//!
//! Needs `fiu-run` and `fiu-ctrl` (Debian package `fiu-utils`, installed by `.ci/run`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{get, put, TestCluster};
use raftkms::config::{SnapshotConfig, TimingConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_is_acknowledged_while_followers_cannot_fsync() {
    let fiu = Command::new("fiu-run").arg("-h").output();
    assert!(fiu.is_ok(), "fiu-run is missing: apt-get install fiu-utils");

    let timing = TimingConfig {
        write_timeout_ms: 2000,
        ..TimingConfig::default()
    };
    let mut c = TestCluster::configure(3, 25000, timing, SnapshotConfig::default());
    let ctrl = c.dir.path().join("fiu-ctrl");
    let ctrl = ctrl.to_str().unwrap().to_string();
    for i in 0..3 {
        c.spawn_wrapped(i, &["fiu-run", "-x", "-f", &ctrl]);
    }
    for i in 0..3 {
        c.wait_answering(i).await;
    }
    c.admin(1).init().await.unwrap();
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    put(&c, leader, "before", "acknowledged").await;

    let followers: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    for f in &followers {
        let pid = c.nodes[c.idx(*f)].pid().unwrap();
        // fiu-run starts the node as its own child process image (exec), so the pid is the node's.
        for name in ["posix/io/sync/fsync", "posix/io/sync/fdatasync"] {
            let out = Command::new("fiu-ctrl")
                .args(["-f", &ctrl, "-c", &format!("enable name={name}")])
                .arg(pid.to_string())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "fiu-ctrl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    let started = Instant::now();
    let res = c
        .admin(leader)
        .with_timeout(Duration::from_secs(30))
        .put_record("during", "must-not-ack", None)
        .await;
    assert!(
        res.is_err(),
        "a write was acknowledged although no follower could fsync: {res:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // The followers refused to go on without durable storage rather than pretend.
    let deadline = Instant::now() + Duration::from_secs(20);
    for f in &followers {
        let i = c.idx(*f);
        loop {
            let failed = !c.nodes[i].is_running()
                || c.admin(*f)
                    .status()
                    .await
                    .is_ok_and(|s| s.state == "Shutdown");
            if failed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "follower {f} kept running with failing fsync:\n{}",
                c.log_tail(*f)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // With healthy disks again the cluster recovers and nothing acknowledged is lost.
    for f in &followers {
        c.kill(*f);
        c.restart(*f).await;
    }
    c.wait_leader(Duration::from_secs(20)).await;
    assert_eq!(
        get(&c, followers[0], "before").await.as_deref(),
        Some("acknowledged")
    );
    put(&c, followers[1], "after", "ok").await;
}
