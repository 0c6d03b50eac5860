//! Write batching on the leader (src/node/batcher.rs): writes that wait together go into one
//! log entry, and each is applied, deduplicated and answered as if it were an entry of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{counter, get, metrics_of, TestCluster};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use raftkms::metrics::Metrics;
use raftkms::raft::snapshot::SnapshotDir;
use raftkms::raft::state_machine::StateMachine;
use raftkms::registry::{Command, Envelope, Outcome, RegistryError, RequestId};
use raftkms::storage::{open, Identity};

fn env(id: u8, command: Command) -> Envelope {
    Envelope {
        request_id: RequestId([id; 16]),
        issued_at_ms: 1_700_000_000_000 + u64::from(id),
        command,
    }
}

fn put(name: &str, value: &str) -> Command {
    Command::PutRecord {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn entry(index: u64, e: Envelope) -> Entry<raftkms::raft::types::TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(e),
    }
}

fn open_sm(dir: &std::path::Path) -> StateMachine {
    let identity = Identity {
        cluster_id: "batch".into(),
        node_id: 1,
    };
    let data = dir.join("data");
    let db = open(&data, &identity).unwrap();
    StateMachine::open(
        db,
        SnapshotDir::new(&data).unwrap(),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_batch_applies_each_write_as_an_entry_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open_sm(dir.path());
    let batch = env(
        100,
        Command::Batch {
            writes: vec![
                env(1, put("a", "1")),
                // Refused (no such record): changes nothing, the others still apply.
                env(
                    2,
                    Command::DeleteRecord {
                        name: "missing".into(),
                    },
                ),
                env(3, put("b", "2")),
                // The same request id again inside the batch: answered as the first time.
                env(1, put("a", "changed")),
                // A batch inside a batch is refused.
                env(
                    4,
                    Command::Batch {
                        writes: vec![env(5, put("c", "3"))],
                    },
                ),
            ],
        },
    );
    let out = sm.apply(vec![entry(1, batch)]).await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::Batch(vec![
            Outcome::Applied { index: 1 },
            Outcome::Rejected(RegistryError::RecordNotFound),
            Outcome::Applied { index: 1 },
            Outcome::Applied { index: 1 },
            Outcome::Rejected(RegistryError::BatchNotApplicable),
        ])]
    );
    // A retry of a batched write, in an entry of its own, gets the first outcome back.
    let out = sm
        .apply(vec![entry(2, env(3, put("b", "again")))])
        .await
        .unwrap();
    assert_eq!(out, vec![Outcome::Applied { index: 1 }]);
    let check = |sm: &StateMachine| {
        let state = sm.applied_state();
        let s = state.read();
        let records = s.registry.records();
        assert_eq!(records.get("a"), Some(&b"1"[..]));
        assert_eq!(records.get("b"), Some(&b"2"[..]));
        assert_eq!(records.get("c"), None);
        assert_eq!(s.last_applied.map(|l| l.index), Some(2));
    };
    check(&sm);
    // What the batch changed was written to disk with it.
    drop(sm);
    let sm = open_sm(dir.path());
    check(&sm);
}

/// Many writes at once through every node of a real cluster: all acknowledged, each applied once,
/// and the leader proposed some of them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_each_is_applied_once() {
    let mut c = TestCluster::start(3, 29300).await;
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    common::put(&c, leader, "warm-up", "x").await;
    let c = Arc::new(c);
    let mut tasks = Vec::new();
    // Records to delete below, written one at a time.
    for i in 0..64u64 {
        common::put(&c, leader, &format!("d{i}"), "x").await;
    }
    for i in 0..192u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let via = 1 + i % 3;
            let id = uuid::Uuid::new_v4().to_string();
            let admin = c.admin(via);
            if i % 3 == 0 {
                // A delete sent twice at once with one request id: applied once, so both are
                // answered Applied (a second apply would answer RecordNotFound).
                let name = format!("d{}", i / 3);
                let again = c.admin(via);
                let (a, b) = tokio::join!(
                    admin.delete_record_with_id(&name, Some(&id)),
                    again.delete_record_with_id(&name, Some(&id))
                );
                let (a, b) = (a.unwrap(), b.unwrap());
                assert!(matches!(a.outcome, Outcome::Applied { .. }), "{a:?}");
                assert_eq!(a.outcome, b.outcome, "one request id, one outcome");
            } else {
                let r = admin
                    .put_record(&format!("k{i}"), &format!("v{i}"), Some(&id))
                    .await
                    .unwrap();
                assert!(matches!(r.outcome, Outcome::Applied { .. }), "{r:?}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for via in 1..=3 {
        for i in (1..192).step_by(7).filter(|i| i % 3 != 0) {
            assert_eq!(
                get(&c, via, &format!("k{i}")).await.as_deref(),
                Some(format!("v{i}").as_str())
            );
        }
        for i in (0..64).step_by(9) {
            assert_eq!(get(&c, via, &format!("d{i}")).await, None);
        }
    }
    let m = metrics_of(&c, leader).await;
    let entries = counter(&m, "raftkms_write_batch_writes_count");
    let writes = counter(&m, "raftkms_write_batch_writes_sum");
    assert!(
        writes >= 256.0,
        "the leader proposed {writes} writes, fewer than were acknowledged"
    );
    assert!(
        entries < writes,
        "{writes} writes in {entries} entries: none were batched"
    );
}
