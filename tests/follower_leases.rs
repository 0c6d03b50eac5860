//! Follower read leases (docs/architecture.md §6a) in a real three-node cluster: followers serve
//! linearizable crypto from their own state (counted), a DisableKey acknowledged through any node
//! binds an Encrypt started afterwards on every node, a paused holder stalls writes for at most
//! the leader's count of its lease and then loses it, and after it resumes it reads everything
//! acknowledged meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{counter, metrics_of, TestCluster};
use raftkms::client::KmsClient;
use serde_json::json;

/// What the leader counts; holders use half of it (200 ms) and renew every sixth of it.
const HOLDER_LEASE_MS: u64 = 400;

async fn cluster(base: u16) -> (TestCluster, impl Fn(u64) -> KmsClient) {
    let mut c = TestCluster::configure(3, base, Default::default(), Default::default());
    c.edit_configs(|cfg| cfg.timing.holder_lease_ms = HOLDER_LEASE_MS);
    let c = c.launch().await;
    let account = c.admin(1).create_account("leases").await.unwrap();
    let cred = c.admin(1).create_credential(account.uin).await.unwrap();
    let (id, key) = (cred.secret_id.clone(), cred.secret_key.expose().to_string());
    let api = move |node: u64| {
        KmsClient::new(
            &TestCluster::api_addr(base, node),
            "ap-guangzhou",
            &id,
            &key,
        )
    };
    (c, api)
}

fn code(r: &Result<serde_json::Value, raftkms::client::KmsError>) -> String {
    match r {
        Ok(_) => "Success".into(),
        Err(e) => e.code().unwrap_or("transport").to_string(),
    }
}

/// A leased cluster on `base` with its leader, a follower, and a key created through `via`
/// (the leader or that follower), once the followers have had time to take their leases.
async fn with_key(
    base: u16,
    alias: &str,
    through_follower: bool,
) -> (TestCluster, impl Fn(u64) -> KmsClient, u64, u64, String) {
    let (mut c, api) = cluster(base).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    tokio::time::sleep(Duration::from_millis(3 * HOLDER_LEASE_MS)).await;
    let via = if through_follower { follower } else { leader };
    let k = api(via)
        .call("CreateKey", json!({"Alias": alias}))
        .await
        .unwrap();
    let key_id = k["KeyId"].as_str().unwrap().to_string();
    (c, api, leader, follower, key_id)
}

async fn holder_reads(c: &TestCluster, id: u64) -> f64 {
    counter(&metrics_of(c, id).await, "raftkms_holder_reads_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acknowledged_disable_binds_every_holder_at_once() {
    let (mut c, api) = cluster(28300).await;
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let followers: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    // Both followers come to hold a lease (they renew every sixth of it).
    tokio::time::sleep(Duration::from_millis(3 * HOLDER_LEASE_MS)).await;
    let before: Vec<f64> = {
        let mut v = Vec::new();
        for f in &followers {
            v.push(holder_reads(&c, *f).await);
        }
        v
    };
    for round in 0..30u64 {
        let k = api(1 + round % 3)
            .call("CreateKey", json!({"Alias": format!("l{round}")}))
            .await
            .unwrap();
        let key_id = k["KeyId"].as_str().unwrap().to_string();
        // Disabled through one node; an Encrypt started afterwards on every node is refused.
        let via = 1 + (round + 1) % 3;
        api(via)
            .call("DisableKey", json!({"KeyId": key_id}))
            .await
            .unwrap();
        for node in 1..=3 {
            let r = api(node)
                .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "eA=="}))
                .await;
            assert_eq!(
                code(&r),
                "ResourceUnavailable.CmkDisabled",
                "round {round}: Encrypt on node {node} after DisableKey through node {via}"
            );
        }
        // Enabled again through another node: every node encrypts.
        api(1 + (round + 2) % 3)
            .call("EnableKey", json!({"KeyId": key_id}))
            .await
            .unwrap();
        for node in 1..=3 {
            let r = api(node)
                .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "eA=="}))
                .await;
            assert_eq!(code(&r), "Success", "round {round}: node {node}");
        }
    }
    // The followers answered from their own state under their leases (not through the leader).
    for (f, b) in followers.iter().zip(before) {
        let after = holder_reads(&c, *f).await;
        eprintln!("follower {f}: {} reads under its lease", after - b);
        assert!(
            after >= b + 40.0,
            "follower {f} served {} reads under its lease",
            after - b
        );
    }
    let m = metrics_of(&c, leader).await;
    let grants = counter(&m, "raftkms_lease_grants_total");
    // Under this write traffic, grants are dated by the acknowledgements of appends the leader
    // sent anyway, not by confirmation rounds of their own (raft/acks.rs).
    let from_acks = counter(&m, "raftkms_lease_grants_from_acks_total");
    eprintln!("leader {leader}: {grants} grants, {from_acks} from acknowledgements");
    assert!(grants > 0.0);
    assert!(
        from_acks > 0.0,
        "no grant was dated by the acknowledgements of appends ({grants} grants)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_holder_stalls_writes_at_most_its_counted_lease_then_catches_up() {
    let (c, api, leader, holder, key_id) = with_key(28400, "paused", false).await;
    let pid = c.nodes[c.idx(holder)].pid().unwrap() as i32;
    // SAFETY: kill(2) on a node process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // Writes through the leader go on: the first waits at most for the leader's count of the
    // holder's lease (holder-lease-ms), later ones do not wait for the paused holder at all.
    let started = Instant::now();
    api(leader)
        .call("DisableKey", json!({"KeyId": key_id}))
        .await
        .unwrap();
    let first = started.elapsed();
    assert!(
        first < Duration::from_millis(HOLDER_LEASE_MS + 1500),
        "the first write after the pause took {first:?}"
    );
    let started = Instant::now();
    for i in 0..5 {
        api(leader)
            .call(
                "UpdateKeyDescription",
                json!({"KeyId": key_id, "Description": format!("d{i}")}),
            )
            .await
            .unwrap();
    }
    let later = started.elapsed();
    eprintln!("with the holder paused: first write {first:?}, 5 more {later:?}");
    assert!(
        later < Duration::from_millis(1500),
        "5 writes with the holder paused took {later:?}"
    );
    // Long past its lease: resumed, the holder sees every acknowledged write.
    tokio::time::sleep(Duration::from_millis(HOLDER_LEASE_MS)).await;
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let r = api(holder)
        .call("Encrypt", json!({"KeyId": key_id, "Plaintext": "eA=="}))
        .await;
    assert_eq!(code(&r), "ResourceUnavailable.CmkDisabled");
    let d = api(holder)
        .call("DescribeKey", json!({"KeyId": key_id}))
        .await
        .unwrap();
    assert_eq!(d["KeyMetadata"]["Description"], "d4");
    // And it holds a lease again and serves from its own state.
    tokio::time::sleep(Duration::from_millis(3 * HOLDER_LEASE_MS)).await;
    let before = holder_reads(&c, holder).await;
    for _ in 0..5 {
        api(holder)
            .call("DescribeKey", json!({"KeyId": key_id}))
            .await
            .unwrap();
    }
    assert!(holder_reads(&c, holder).await >= before + 5.0);
}

/// With leases on, a node re-applies nothing at start before it has learned the commit index
/// again through the gate: a killed leader and a killed follower come back, and every node then
/// answers with every write acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_nodes_come_back_through_the_gate_with_every_acknowledged_write() {
    let (mut c, api, leader, follower, key_id) = with_key(28500, "restarts", true).await;
    for (victim, desc) in [(leader, "after-leader"), (follower, "after-follower")] {
        c.kill(victim);
        let via = (1..=3).find(|i| *i != victim).unwrap();
        // Through the survivors (a new leader is elected when the leader was killed).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = api(via)
                .call(
                    "UpdateKeyDescription",
                    json!({"KeyId": key_id, "Description": desc}),
                )
                .await;
            if r.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no write after killing {victim}: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.restart(victim).await;
        c.wait_converged(Duration::from_secs(20)).await;
        for node in 1..=3 {
            let d = api(node)
                .call("DescribeKey", json!({"KeyId": key_id}))
                .await
                .unwrap();
            assert_eq!(d["KeyMetadata"]["Description"], desc, "node {node}");
        }
    }
}
