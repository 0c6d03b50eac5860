//! A real 3-node cluster: replication through every node, forwarding, idempotent retries,
//! linearizable and stale reads, authentication.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{counter, get, metrics_of, put, TestCluster, ADMIN_TOKEN, SECRET};
use raftkms::registry::Outcome;

/// (reads answered from the read lease, read-index rounds) on `node`.
async fn lease_counters(c: &TestCluster, node: u64) -> (f64, f64) {
    let text = metrics_of(c, node).await;
    (
        counter(&text, "raftkms_read_gate_leased_total"),
        counter(&text, "raftkms_read_gate_rounds_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_every_node_are_applied_on_all() {
    let mut c = TestCluster::start(3, 21000).await;
    for via in 1..=3u64 {
        for k in 0..5 {
            put(&c, via, &format!("via{via}-{k}"), &format!("v{via}{k}")).await;
        }
    }
    for reader in 1..=3u64 {
        for via in 1..=3u64 {
            for k in 0..5 {
                assert_eq!(
                    get(&c, reader, &format!("via{via}-{k}")).await.as_deref(),
                    Some(format!("v{via}{k}").as_str())
                );
            }
        }
    }
    c.wait_converged(Duration::from_secs(10)).await;
    // Followers forwarded their writes to the leader.
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let metrics = metrics_of(&c, follower).await;
    let forwarded = counter(&metrics, "raftkms_forwarded_writes_total");
    assert!(
        forwarded >= 5.0,
        "follower {follower} forwarded {forwarded} writes:\n{metrics}"
    );
    // 45 reads in quick succession: after a confirmation round the leader answers read
    // indexes from its read lease instead of a round for every batch.
    let leader_metrics = metrics_of(&c, leader).await;
    let leased = counter(&leader_metrics, "raftkms_read_gate_leased_total");
    assert!(leased >= 1.0, "leader {leader} leased {leased} reads");
    assert!(metrics.contains("raftkms_raft_term"));
    for n in 1..=3 {
        let api = TestCluster::api_addr(c.base_port, n);
        let ready = reqwest::get(format!("http://{api}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200, "node {n} not ready");
        let health = reqwest::get(format!("http://{api}/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
    }
    assert!(metrics.contains("raftkms_log_append_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_with_the_same_request_id_is_applied_once() {
    let mut c = TestCluster::start(3, 21100).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let first = c
        .admin(follower)
        .put_record("k", "first", Some(&id))
        .await
        .unwrap();
    let Outcome::Applied { index } = first.outcome else {
        panic!("{first:?}")
    };
    put(&c, leader, "k", "second").await;
    // The same request id again (as a retry after a lost reply would be), through another node
    // and with another body: the first outcome comes back and nothing is applied.
    let again = c
        .admin(leader)
        .put_record("k", "third", Some(&id))
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Applied { index });
    for n in 1..=3 {
        assert_eq!(get(&c, n, "k").await.as_deref(), Some("second"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_read_through_another_node_sees_an_acknowledged_write() {
    let mut c = TestCluster::start(3, 21200).await;
    for round in 0..30u64 {
        let writer = round % 3 + 1;
        let reader = (round + 1) % 3 + 1;
        let value = format!("value-{round}");
        put(&c, writer, "register", &value).await;
        // A read may be refused while the cluster elects a leader (a retryable error, never a
        // wrong answer); any read that succeeds must see the acknowledged write.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let read = loop {
            match c.admin(reader).get_record("register", "linearizable").await {
                Ok(r) => break r,
                Err(raftkms::admin::ClientError::Refused {
                    retryable: true, ..
                }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("read via {reader}: {e}"),
            }
        };
        assert_eq!(
            read.value.as_deref(),
            Some(value.as_str()),
            "round {round}: wrote via {writer}, read via {reader}"
        );
    }
    // A stale read answers at once and says where it stands.
    let stale = c.admin(2).get_record("register", "stale").await.unwrap();
    assert_eq!(
        stale.position.consistency,
        raftkms::config::Consistency::Stale
    );
    let applied = stale.position.applied_index.unwrap();
    let commit = stale.position.known_commit_index.unwrap();
    assert!(applied > 0 && commit >= applied, "{stale:?}");
    let _ = c.wait_leader(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_the_cluster_secret_are_rejected_and_change_nothing() {
    let mut c = TestCluster::start(3, 21300).await;
    put(&c, 1, "before", "x").await;
    let before = c.admin(1).status().await.unwrap();
    let client = reqwest::Client::new();
    let raft = TestCluster::raft_addr(c.base_port, 1);
    // A vote request for a huge term would depose the leader if it were accepted.
    let vote = raftkms::raft::types::typ::VoteRequest::new(
        openraft::Vote::new(before.term + 100, 9),
        None,
    );
    let body = raftkms::codec::encode("vote", &vote).unwrap();
    // The admin token is not a peer credential, and the cluster secret is not an admin's.
    let admin_token = format!("Bearer {ADMIN_TOKEN}");
    let peer_secret = format!("Bearer {SECRET}");
    for (vote_auth, admin_auth) in [
        (None, None),
        (
            Some("Bearer wrong-secret-wrong-secret"),
            Some("Bearer wrong-secret-wrong-secret"),
        ),
        (Some(admin_token.as_str()), Some(peer_secret.as_str())),
    ] {
        let mut req = client
            .post(format!("http://{raft}/raft/vote"))
            .header("x-raftkms-cluster", &c.cluster_id)
            .body(body.clone());
        if let Some(a) = vote_auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let mut put = client
            .put(format!("http://{raft}/admin/records/intruder"))
            .header("x-raftkms-cluster", &c.cluster_id)
            .body("x");
        if let Some(a) = admin_auth {
            put = put.header("authorization", a);
        }
        assert_eq!(put.send().await.unwrap().status(), 401);
    }
    // Right secret, wrong cluster id: also refused.
    let resp = client
        .post(format!("http://{raft}/raft/vote"))
        .header("x-raftkms-cluster", "another-cluster")
        .bearer_auth(SECRET)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let after = c.admin(1).status().await.unwrap();
    assert_eq!(
        after.term, before.term,
        "term moved: a rejected vote was processed"
    );
    assert_eq!(get(&c, 2, "intruder").await, None);
    assert_eq!(get(&c, 2, "before").await.as_deref(), Some("x"));
    let _ = c.wait_leader(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_request_voids_the_leaders_read_lease() {
    let mut c = TestCluster::start(3, 21400).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    put(&c, leader, "k", "v").await;
    for _ in 0..20 {
        assert_eq!(get(&c, leader, "k").await.as_deref(), Some("v"));
    }
    let (leased, _) = lease_counters(&c, leader).await;
    assert!(leased >= 1.0, "no read used the lease");

    // A candidate of a higher term whose log is behind: openraft refuses it and nothing changes
    // in Raft, but the leader might have granted such a vote, so its lease must go.
    let status = c.admin(leader).status().await.unwrap();
    let vote =
        raftkms::raft::types::typ::VoteRequest::new(openraft::Vote::new(status.term + 1, 9), None);
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/raft/vote",
            TestCluster::raft_addr(c.base_port, leader)
        ))
        .header("x-raftkms-cluster", &c.cluster_id)
        .bearer_auth(SECRET)
        .body(raftkms::codec::encode("vote", &vote).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (leased_before, rounds_before) = lease_counters(&c, leader).await;
    for _ in 0..20 {
        assert_eq!(get(&c, leader, "k").await.as_deref(), Some("v"));
    }
    let (leased_after, rounds_after) = lease_counters(&c, leader).await;
    if c.admin(leader).status().await.unwrap().term == status.term {
        assert_eq!(leased_after, leased_before, "a fenced lease was used");
        assert!(
            rounds_after >= rounds_before + 20.0,
            "reads skipped their round"
        );
    }
    let _ = c.wait_leader(Duration::from_secs(1)).await;
}
