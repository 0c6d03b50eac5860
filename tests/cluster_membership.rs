//! Membership: a fourth node joins a cluster holding 100k records and catches up through a
//! snapshot; removing a node leaves the cluster writable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{get, put, TestCluster};
use raftkms::config::{SnapshotConfig, TimingConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_catches_up_through_a_snapshot_and_removal_keeps_the_cluster_writable() {
    // Snapshot often and keep few entries behind it, so the joining node cannot be fed from the log.
    let snapshot = SnapshotConfig {
        logs_since_last: 20,
        max_logs_to_keep: 5,
        chunk_bytes: 1 << 20,
    };
    let mut c = TestCluster::start_with(3, 23000, TimingConfig::default(), snapshot).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    for batch in 0..100 {
        let records: BTreeMap<String, String> = (0..1000)
            .map(|i| {
                (
                    format!("rec-{batch:03}-{i:04}"),
                    format!("value-{batch}-{i}"),
                )
            })
            .collect();
        c.admin(leader).put_records(records).await.unwrap();
    }
    put(&c, 1, "marker", "last").await;
    let digest = c.wait_converged(Duration::from_secs(60)).await;
    let st = c.admin(leader).status().await.unwrap();
    assert!(
        st.snapshot_index.is_some() && st.purged_index.is_some(),
        "leader never snapshotted/purged: {st:?}"
    );
    let d = c.admin(leader).digest().await.unwrap();
    assert_eq!(d.records, 100_001);

    // Node 4 starts empty (no peers: it will be added) and joins through node 2.
    let after = c.join_new_voter(4, 2, Duration::from_secs(300)).await;
    assert!(after.voters.contains(&4), "{after:?}");
    let st4 = c.admin(4).status().await.unwrap();
    assert!(
        st4.snapshot_index.is_some(),
        "node 4 did not install a snapshot: {st4:?}"
    );
    assert_eq!(
        c.wait_converged(Duration::from_secs(60)).await,
        digest,
        "node 4 holds a different state"
    );
    assert_eq!(
        get(&c, 4, "rec-099-0999").await.as_deref(),
        Some("value-99-999")
    );
    assert_eq!(get(&c, 4, "marker").await.as_deref(), Some("last"));

    // Remove a follower that is not node 4; the cluster keeps taking writes and reads.
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let victim = (1..=3).find(|i| *i != leader).unwrap();
    let st = c.admin(leader).remove(victim).await.unwrap();
    assert!(
        !st.voters.contains(&victim) && !st.nodes.contains_key(&victim),
        "{st:?}"
    );
    c.kill(victim);
    let survivor = (1..=4).find(|i| *i != victim && *i != leader).unwrap();
    put(&c, survivor, "after-remove", "ok").await;
    assert_eq!(get(&c, 4, "after-remove").await.as_deref(), Some("ok"));
}
